//! A small HTTPS client for the bridge's API (blocking rustls over a std socket, HTTP written
//! by hand), that verifies the server against a given CA: `server::http_raw` over TLS, and one
//! HTTP/2 GET with frames written here, to see what ALPN's `h2` really speaks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A client that trusts only the CA in `ca` (PEM) and offers `alpn`.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A finished TLS handshake with `addr` (verified as its IP address), or why it failed.
pub fn connect(addr: SocketAddr, ca: &Path, alpn: &[&[u8]]) -> std::io::Result<Tls> {
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(client_config(ca, alpn), name)
        .map_err(std::io::Error::other)?;
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One HTTP/1.1 request over HTTPS (Connection: close): status, header block, body.
pub fn https_raw(
    addr: SocketAddr,
    ca: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut tls = connect(addr, ca, &[b"http/1.1"]).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    tls.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // The server may close without close_notify once the answer is sent.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        super::server::dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

/// The status and JSON body of a request over HTTPS (`Null` when there is none).
pub fn https(
    addr: SocketAddr,
    ca: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let (status, _, text) = https_raw(addr, ca, method, path, body, token, &[]);
    let json = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, json)
}

/// What an HTTP/2 GET got back: the protocol ALPN chose, the response's header block
/// (HPACK, undecoded) and its body.
pub struct H2Reply {
    pub alpn: Option<Vec<u8>>,
    pub header_block: Vec<u8>,
    pub body: Vec<u8>,
}

/// GET `path` over HTTP/2 on stream 1, offering only `h2` in ALPN. The request's header block
/// uses only HPACK's static table and literals without Huffman coding (RFC 7541), so no
/// encoder is needed; the server's SETTINGS are acknowledged, other frames skipped.
pub fn h2_get(addr: SocketAddr, ca: &Path, path: &str) -> H2Reply {
    let mut tls = connect(addr, ca, &[b"h2"]).unwrap();
    let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
    let authority = addr.to_string();
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https (static table 2 and 7)
    for (name_index, value) in [(4u8, path), (1u8, authority.as_str())] {
        // Literal without indexing, name from the static table (:path 4, :authority 1).
        block.push(name_index);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // our SETTINGS: all defaults
    out.extend(frame(0x1, 0x4 | 0x1, 1, &block)); // HEADERS, END_HEADERS | END_STREAM
    tls.write_all(&out).unwrap();
    tls.flush().unwrap();
    let (mut header_block, mut body) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut head = [0u8; 9];
        tls.read_exact(&mut head).unwrap();
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        tls.read_exact(&mut payload).unwrap();
        match (kind, stream) {
            (0x4, 0) if flags & 0x1 == 0 => {
                tls.write_all(&frame(0x4, 0x1, 0, &[])).unwrap(); // SETTINGS ACK
            }
            (0x1, 1) => header_block.extend_from_slice(&payload),
            (0x0, 1) => body.extend_from_slice(&payload),
            _ => {}
        }
        if stream == 1 && flags & 0x1 != 0 {
            break; // END_STREAM
        }
    }
    H2Reply {
        alpn,
        header_block,
        body,
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}
