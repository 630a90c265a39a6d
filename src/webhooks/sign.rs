//! The `Confab-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">`,
//! keyed with the webhook's `secret`. The timestamp is the attempt's, so a receiver can refuse
//! a request replayed later (README, "Webhooks", says how to check it).

use aws_lc_rs::hmac;

/// The header's name.
pub(crate) const HEADER: &str = "Confab-Signature";

/// The header's value for `body` sent at `t` (Unix seconds).
pub(crate) fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(body.len() + 24);
    signed.extend_from_slice(t.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    format!("t={t},v1={}", hex(&hmac_sha256(secret, &signed)))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2 (a published vector).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The header against OpenSSL's HMAC of the same `<t>.<body>`.
    #[test]
    fn the_header_matches_openssl() {
        use std::io::Write;
        let body = br#"{"id":"0f3a","type":"participant.joined","conference":"4242"}"#;
        let (secret, t) = ("s3cret-\u{e9}t\u{e9}", 1_765_000_000);
        let header = signature(secret.as_bytes(), t, body);
        let Ok(mut child) = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-hmac", secret])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            assert!(std::env::var_os("CI").is_none(), "openssl is missing");
            eprintln!("SKIP: openssl is not installed");
            return;
        };
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{t}.").as_bytes()).unwrap();
        stdin.write_all(body).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        // `HMAC-SHA2-256(stdin)= <hex>` (the label varies between versions).
        let theirs = text.trim().rsplit(' ').next().unwrap();
        assert_eq!(header, format!("t={t},v1={theirs}"));
    }
}
