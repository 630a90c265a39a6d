//! The webhook URL reader (`config::WebhookUrl::parse`): what it accepts goes into an HTTP
//! request line and a `Host` header, so it must hold nothing that could end or add a header,
//! and reading back what a request is built from gives the same URL.
//!
//! Input: the URL as text (bytes that are not UTF-8 are taken lossily).
#![no_main]

use confab::config::WebhookUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(url) = WebhookUrl::parse(&text) else {
        return;
    };
    assert!(!url.host.is_empty(), "no host: {text:?}");
    assert!(url.port > 0, "port 0: {text:?}");
    assert!(url.path.starts_with('/'), "path {:?}: {text:?}", url.path);
    let host = url.host_header();
    for part in [&url.path, &host] {
        assert!(
            part.bytes().all(|b| b.is_ascii_graphic()),
            "a request would carry {part:?}: {text:?}"
        );
    }
    assert!(!host.contains(['/', '?', '#', '@']), "host header {host:?}: {text:?}");
    let scheme = if url.tls { "https" } else { "http" };
    let again = WebhookUrl::parse(&format!("{scheme}://{host}{}", url.path));
    assert_eq!(again.as_ref(), Ok(&url), "read back differently: {text:?}");
});
