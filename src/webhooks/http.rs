//! One webhook attempt: an HTTP/1.1 POST over TCP, or TLS for `https` (verified against the
//! system's CA bundle), with `Connection: close`. The receiver is a stranger: only the status
//! line and headers are read, at most [`MAX_HEAD`] bytes of them, never the body; a redirect
//! is an answer like any other non-2xx (not followed); the whole attempt has a deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::WebhookUrl;

/// How long one attempt may take, connecting included.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer read: its status line and headers must fit.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// Headers of an answer parsed at most.
const MAX_HEADERS: usize = 64;

/// Why an attempt did not get an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("`{0}` is not a TLS server name")]
    ServerName(String),
    #[error("the answer is not HTTP/1.x: {0}")]
    Malformed(&'static str),
}

/// POSTs `body` as JSON to `url` with `headers` besides the usual; the answer's status.
pub(crate) async fn post(
    url: &WebhookUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, AttemptError> {
    tokio::time::timeout(timeout, attempt(url, tls, headers, body))
        .await
        .map_err(|_| AttemptError::Timeout(timeout))?
}

async fn attempt(
    url: &WebhookUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<u16, AttemptError> {
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port)).await?;
    let _ = tcp.set_nodelay(true);
    let request = request(url, headers, body);
    match (url.tls, tls) {
        (false, _) => exchange(tcp, &request).await,
        (true, None) => Err(AttemptError::Io(std::io::Error::other(
            "https without a CA bundle",
        ))),
        (true, Some(config)) => {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|_| AttemptError::ServerName(url.host.clone()))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await?;
            exchange(stream, &request).await
        }
    }
}

/// The request's bytes: head and body.
fn request(url: &WebhookUrl, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: confab/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends the request and reads the answer's head (never more than [`MAX_HEAD`] bytes).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<u16, AttemptError> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(AttemptError::Malformed("closed before the end of its head"));
        }
        filled += n;
        let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut parsed);
        match response.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                return response.code.ok_or(AttemptError::Malformed("no status"));
            }
            Ok(httparse::Status::Partial) if filled < buf.len() => {}
            Ok(httparse::Status::Partial) => {
                return Err(AttemptError::Malformed("head longer than 8 KiB"));
            }
            Err(_) => return Err(AttemptError::Malformed("unparsable head")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver on loopback that reads the request's head and answers `answer` (or nothing,
    /// holding the connection); what it read.
    async fn receiver(answer: Option<Vec<u8>>) -> (WebhookUrl, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            match answer {
                Some(a) => {
                    let _ = s.write_all(&a).await;
                }
                None => tokio::time::sleep(Duration::from_secs(2)).await,
            }
            String::from_utf8_lossy(&got).into_owned()
        });
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hook?a=1")).unwrap();
        (url, task)
    }

    async fn post_to(answer: Option<Vec<u8>>) -> (Result<u16, AttemptError>, String) {
        let (url, task) = receiver(answer).await;
        let r = post(
            &url,
            None,
            &[("Confab-Signature", "t=1,v1=00")],
            b"{}",
            Duration::from_millis(500),
        )
        .await;
        (r, task.await.unwrap_or_default())
    }

    #[tokio::test]
    async fn the_status_is_read_and_the_request_is_what_was_asked() {
        let (r, seen) = post_to(Some(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ))
        .await;
        assert_eq!(r.unwrap(), 204);
        assert!(seen.starts_with("POST /hook?a=1 HTTP/1.1\r\n"), "{seen}");
        for h in [
            "Host: 127.0.0.1:",
            "Content-Type: application/json",
            "Content-Length: 2",
            "Confab-Signature: t=1,v1=00",
        ] {
            assert!(seen.contains(h), "{h} missing from {seen}");
        }
    }

    #[tokio::test]
    async fn a_redirect_is_an_answer_not_followed() {
        let (r, _) = post_to(Some(
            b"HTTP/1.1 301 Moved\r\nLocation: http://elsewhere/\r\n\r\n".to_vec(),
        ))
        .await;
        assert_eq!(r.unwrap(), 301);
    }

    #[tokio::test]
    async fn hostile_answers_fail_the_attempt_without_reading_on() {
        let endless = [b"HTTP/1.1 200 OK\r\n".to_vec(), vec![b'X'; 64 * 1024]].concat();
        let (r, _) = post_to(Some(endless)).await;
        assert!(matches!(r, Err(AttemptError::Malformed(_))), "{r:?}");
        let (r, _) = post_to(Some(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec())).await;
        assert!(matches!(r, Err(AttemptError::Malformed(_))), "{r:?}");
        let (r, _) = post_to(Some(b"HTTP/1.1 200".to_vec())).await;
        assert!(matches!(r, Err(AttemptError::Malformed(_))), "{r:?}");
        let (r, _) = post_to(None).await;
        assert!(matches!(r, Err(AttemptError::Timeout(_))), "{r:?}");
    }

    #[tokio::test]
    async fn nobody_listening_is_a_connection_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let r = post(&url, None, &[], b"{}", Duration::from_secs(2)).await;
        assert!(matches!(r, Err(AttemptError::Io(_))), "{r:?}");
    }
}
