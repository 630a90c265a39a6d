//! A small HTTP/1.1 client (one request per connection), over TCP or TLS (rustls, verifying the
//! server against a CA file or the system's bundle): enough for Confab's and Janus' JSON APIs
//! and Prometheus text, without an async runtime in the generator.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use rustls::pki_types::ServerName;

/// The most of a response we read (a bridge's /metrics with every conference's series fits).
const MAX_RESPONSE: u64 = 64 << 20;

/// Where an HTTP API is: its address, the host as the URL named it (for `Host:` and for the
/// certificate's name), and TLS for `https://`.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `host[:port]` as written in the URL.
    authority: String,
    /// The host alone (no brackets, no port): the name the server's certificate must carry.
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }
}

/// `http://host:port/prefix` split into the endpoint and the path prefix (https:// verified
/// against the system's CA bundle).
pub fn parse_base(url: &str) -> anyhow::Result<(Endpoint, String)> {
    endpoint(url, None)
}

/// `http://` or `https://host:port/prefix`: the endpoint and the path prefix. `ca` (PEM) is
/// what an https:// server's certificate must chain to; without it, the system's bundle.
pub fn endpoint(url: &str, ca: Option<&Path>) -> anyhow::Result<(Endpoint, String)> {
    let (rest, https) = if let Some(r) = url.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, true)
    } else {
        return Err(anyhow!(
            "{url}: only http:// and https:// URLs are supported"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_owned()),
        None => (rest, String::new()),
    };
    let default_port = if https { 443 } else { 80 };
    let (host, port) = split_authority(authority, default_port)
        .ok_or_else(|| anyhow!("{url}: bad host or port"))?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("{url}: bad address"))?
        .next()
        .ok_or_else(|| anyhow!("{url}: no address"))?;
    let tls = if https {
        let config = confab::tls::client_config(ca).context("the API's CA")?;
        let mut config = (*config).clone();
        // One request per connection: HTTP/1.1 is all this client speaks.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        ServerName::try_from(host.clone())
            .map_err(|e| anyhow!("{url}: {host} is no name a certificate can carry: {e}"))?;
        Some(Arc::new(config))
    } else {
        if ca.is_some() {
            return Err(anyhow!("{url}: a CA file is for https:// URLs"));
        }
        None
    };
    Ok((
        Endpoint {
            addr,
            authority: authority.to_owned(),
            host,
            tls,
        },
        path,
    ))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`: the host (without brackets) and the port.
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Some((host.to_owned(), port.parse().ok()?)).filter(|(h, _)| !h.is_empty())
        }
        Some(_) => None,
        None if authority.is_empty() => None,
        None => Some((authority.to_owned(), default_port)),
    }
}

/// Reads the response until the server closes. A TLS peer that closes without `close_notify`
/// (many do after `Connection: close`) has still sent a whole response.
fn read_response(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match stream.take(MAX_RESPONSE).read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// Sends one request; the status and the body.
pub fn request(
    api: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let addr = api.addr;
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        api.authority
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    let raw = match &api.tls {
        None => {
            let mut s = s;
            s.write_all(req.as_bytes())?;
            read_response(&mut s)?
        }
        Some(config) => {
            let name =
                ServerName::try_from(api.host.clone()).map_err(|e| anyhow!("{}: {e}", api.host))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .with_context(|| format!("TLS to {addr}"))?;
            let mut tls = rustls::StreamOwned::new(conn, s);
            tls.write_all(req.as_bytes())
                .and_then(|()| tls.flush())
                .with_context(|| format!("TLS to {addr} ({})", api.host))?;
            read_response(&mut tls).with_context(|| format!("TLS from {addr}"))?
        }
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: no HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: no status"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n || !rest.is_char_boundary(n) {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A JSON request whose status must be 2xx; the parsed body.
pub fn json(
    api: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    token: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let text = body.map(|b| b.to_string());
    let (status, reply) = request(api, method, path, text.as_deref(), token)?;
    if !(200..300).contains(&status) {
        return Err(anyhow!("{method} {path}: {status} {reply}"));
    }
    if reply.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&reply).with_context(|| format!("{method} {path}: not JSON: {reply}"))
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
