//! HTTP digest authentication as SIP uses it (RFC 3261 22, RFC 7616 with RFC 8760's SHA-256):
//! reading challenges and credentials, and computing responses. Pure functions; the inbound
//! gate (nonces, replay, failure limits) is `auth.rs`, the dial-out side answers challenges in
//! `dialout.rs`.
//!
//! Only `qop=auth` is spoken: it binds the response to a client nonce and a count, so a
//! captured response cannot be replayed with another count. `auth-int` and `userhash` are not
//! offered, and credentials without `qop` are refused.

use std::fmt::Write as _;

use md5::Digest as _;

/// Longest challenge or credentials header value read.
const MAX_VALUE: usize = 2048;
/// Most parameters in one.
const MAX_PARAMS: usize = 24;
/// Longest single parameter value.
const MAX_PARAM: usize = 512;

/// The hash of a challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub(crate) fn name(self, sess: bool) -> &'static str {
        match (self, sess) {
            (Algorithm::Md5, false) => "MD5",
            (Algorithm::Md5, true) => "MD5-sess",
            (Algorithm::Sha256, false) => "SHA-256",
            (Algorithm::Sha256, true) => "SHA-256-sess",
        }
    }

    /// The algorithm and whether it is a `-sess` variant; none for what we do not speak.
    fn parse(name: &str) -> Option<(Algorithm, bool)> {
        [Algorithm::Md5, Algorithm::Sha256]
            .into_iter()
            .flat_map(|a| [(a, false), (a, true)])
            .find(|(a, sess)| a.name(*sess).eq_ignore_ascii_case(name))
    }

    /// Lower-case hex of the hash of `data`.
    fn hex(self, data: &str) -> String {
        let mut out = String::with_capacity(64);
        match self {
            Algorithm::Md5 => {
                for b in md5::Md5::digest(data.as_bytes()) {
                    let _ = write!(out, "{b:02x}");
                }
            }
            Algorithm::Sha256 => {
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data.as_bytes());
                for b in d.as_ref() {
                    let _ = write!(out, "{b:02x}");
                }
            }
        }
        out
    }
}

/// A `WWW-Authenticate` or `Proxy-Authenticate` digest challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) realm: String,
    pub(crate) nonce: String,
    pub(crate) opaque: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) sess: bool,
    /// The server offered `qop=auth` (else the RFC 2069 form is answered).
    pub(crate) qop_auth: bool,
    /// The nonce was stale: the last credentials were right but need a fresh nonce.
    pub(crate) stale: bool,
}

/// An `Authorization` or `Proxy-Authorization` header's digest credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) realm: String,
    pub(crate) nonce: String,
    pub(crate) uri: String,
    pub(crate) response: String,
    pub(crate) algorithm: Algorithm,
    pub(crate) sess: bool,
    pub(crate) cnonce: Option<String>,
    /// The nonce count, as sent (8 hex digits) and as a number.
    pub(crate) nc: Option<(String, u32)>,
    pub(crate) qop: Option<String>,
}

/// A digest header's parameters, unquoted; none when it is not a well-formed `Digest` value
/// within the bounds above (duplicate parameters included: a second `response=` must not be
/// able to change what was checked).
fn params(value: &str) -> Option<Vec<(String, String)>> {
    if value.len() > MAX_VALUE {
        return None;
    }
    let value = value.trim_start();
    let (scheme, mut rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            break;
        }
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => val.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c if c.is_control() => return None,
                    c => val.push(c),
                }
            }
            (val, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        if val.len() > MAX_PARAM || out.len() >= MAX_PARAMS || out.iter().any(|(n, _)| *n == name) {
            return None;
        }
        out.push((name, val));
        rest = remaining;
    }
    Some(out)
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Challenge {
    /// A challenge we can answer; none for another scheme, algorithm or a malformed one.
    pub(crate) fn parse(value: &str) -> Option<Challenge> {
        let p = params(value)?;
        let (algorithm, sess) = match get(&p, "algorithm") {
            None => (Algorithm::Md5, false),
            Some(a) => Algorithm::parse(a)?,
        };
        let qop = get(&p, "qop");
        let qop_auth = qop.is_some_and(|q| q.split(',').any(|o| o.trim() == "auth"));
        if qop.is_some() && !qop_auth {
            // Only auth-int offered: we do not sign bodies.
            return None;
        }
        Some(Challenge {
            realm: get(&p, "realm")?.to_owned(),
            nonce: get(&p, "nonce").filter(|n| !n.is_empty())?.to_owned(),
            opaque: get(&p, "opaque").map(str::to_owned),
            algorithm,
            sess,
            qop_auth,
            stale: get(&p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The header value answering this challenge for `method` on `uri`; `cnonce` is fresh and
    /// unpredictable, `nc` counts the requests made with this nonce (from 1).
    pub(crate) fn answer(
        &self,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let nc_hex = format!("{nc:08x}");
        let qop = self.qop_auth.then_some("auth");
        let response = response(
            self.algorithm,
            self.sess,
            Secret {
                username,
                realm: &self.realm,
                password,
            },
            &self.nonce,
            qop.map(|q| (cnonce, nc_hex.as_str(), q)),
            method,
            uri,
        );
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            self.algorithm.name(self.sess),
        );
        if qop.is_some() {
            let _ = write!(v, ", cnonce=\"{}\", qop=auth, nc={nc_hex}", quote(cnonce));
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(v, ", opaque=\"{}\"", quote(opaque));
        }
        v
    }
}

impl Credentials {
    pub(crate) fn parse(value: &str) -> Option<Credentials> {
        let p = params(value)?;
        let (algorithm, sess) = match get(&p, "algorithm") {
            None => (Algorithm::Md5, false),
            Some(a) => Algorithm::parse(a)?,
        };
        let nc = match get(&p, "nc") {
            None => None,
            Some(n) if n.len() == 8 => Some((n.to_owned(), u32::from_str_radix(n, 16).ok()?)),
            Some(_) => return None,
        };
        Some(Credentials {
            username: get(&p, "username")?.to_owned(),
            realm: get(&p, "realm")?.to_owned(),
            nonce: get(&p, "nonce")?.to_owned(),
            uri: get(&p, "uri")?.to_owned(),
            response: get(&p, "response")?.to_ascii_lowercase(),
            algorithm,
            sess,
            cnonce: get(&p, "cnonce").map(str::to_owned),
            nc,
            qop: get(&p, "qop").map(str::to_owned),
        })
    }

    /// Whether these credentials are `password`'s answer for `method` (qop=auth only).
    pub(crate) fn verify(&self, method: &str, password: &str) -> bool {
        let (Some(cnonce), Some((nc, _)), Some("auth")) =
            (&self.cnonce, &self.nc, self.qop.as_deref())
        else {
            return false;
        };
        let expected = response(
            self.algorithm,
            self.sess,
            Secret {
                username: &self.username,
                realm: &self.realm,
                password,
            },
            &self.nonce,
            Some((cnonce, nc, "auth")),
            method,
            &self.uri,
        );
        constant_time_eq(expected.as_bytes(), self.response.as_bytes())
    }
}

struct Secret<'a> {
    username: &'a str,
    realm: &'a str,
    password: &'a str,
}

/// RFC 7616 3.4.1: the `response` value. `qop` is (cnonce, nc, qop) when one was chosen.
fn response(
    algorithm: Algorithm,
    sess: bool,
    secret: Secret<'_>,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let mut ha1 = algorithm.hex(&format!(
        "{}:{}:{}",
        secret.username, secret.realm, secret.password
    ));
    if sess {
        let cnonce = qop.map_or("", |(c, _, _)| c);
        ha1 = algorithm.hex(&format!("{ha1}:{nonce}:{cnonce}"));
    }
    let ha2 = algorithm.hex(&format!("{method}:{uri}"));
    match qop {
        Some((cnonce, nc, qop)) => {
            algorithm.hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
        }
        None => algorithm.hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// A value inside a quoted string: quotes and backslashes escaped.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Compares without stopping at the first difference, so timing tells nothing of a secret.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
