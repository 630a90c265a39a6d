//! A throwaway PKI made at test time: a CA and a server certificate it signed, written as PEM
//! files into a temporary folder that goes with the value.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA certificate peers are told to trust.
    pub ca: PathBuf,
    /// The server's certificate (signed by the CA) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    /// A CA named `Confab Test CA`, and a server certificate for `names` (DNS names, or IP
    /// addresses as text).
    pub fn new(names: &[&str]) -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Confab Test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "Confab test server");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        TestPki {
            ca: write("ca.crt", ca_cert.pem()),
            cert: write("server.crt", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            dir,
        }
    }

    /// The folder the files are in (for other files of the same test).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl TestPki {
    /// What Chromium's `--ignore-certificate-errors-spki-list` takes for the server's
    /// certificate: base64 of the SHA-256 of its SubjectPublicKeyInfo.
    pub fn spki_hash(&self) -> String {
        use rcgen::PublicKeyData as _;
        let key = KeyPair::from_pem(&std::fs::read_to_string(&self.key).unwrap()).unwrap();
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key.subject_public_key_info());
        base64(digest.as_ref())
    }
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
