//! The sockets SIP is served on: UDP and TCP on one address (and port, where it can), TLS on
//! its own. Bound once at start; a restarted serving task takes them again.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};

use super::UasSettings;

#[derive(Clone)]
pub(crate) struct Listeners {
    pub(super) udp: Arc<UdpSocket>,
    pub(super) tcp: Arc<TcpListener>,
    pub(super) tls: Option<(Arc<TcpListener>, tokio_rustls::TlsAcceptor)>,
}

impl Listeners {
    /// Binds UDP on `settings.local` and TCP on the same address, on the same port where it
    /// can (port 0 picks one); TLS on `settings.tls.listen`. The settings then name the
    /// addresses bound.
    pub(super) async fn bind(settings: &mut UasSettings) -> std::io::Result<Listeners> {
        let udp = UdpSocket::bind(settings.local).await?;
        let udp_addr = udp.local_addr()?;
        let tcp = match TcpListener::bind(udp_addr).await {
            Ok(l) => l,
            Err(_) if settings.local.port() == 0 => {
                TcpListener::bind(SocketAddr::new(udp_addr.ip(), 0)).await?
            }
            Err(e) => return Err(e),
        };
        settings.local = udp_addr;
        let tls = match &mut settings.tls {
            Some(tls) => {
                let listener = TcpListener::bind(tls.listen).await?;
                tls.listen = listener.local_addr()?;
                Some((
                    Arc::new(listener),
                    tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config)),
                ))
            }
            None => None,
        };
        Ok(Listeners {
            udp: Arc::new(udp),
            tcp: Arc::new(tcp),
            tls,
        })
    }
}
