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
