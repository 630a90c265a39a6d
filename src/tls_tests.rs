//! The PEM loaders' errors, and certificate checks proven by real handshakes in memory: a
//! client that trusts the test CA accepts the server, one that does not (or that asked for
//! another name) refuses it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::*;
use crate::testing::pki::pki;

/// Runs a whole handshake between the two in memory; the error is the first side's.
fn handshake(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    name: &str,
) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut c = rustls::ClientConnection::new(client, name)?;
    let mut s = rustls::ServerConnection::new(server)?;
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.read_tls(&mut wire.as_slice()).unwrap();
        s.process_new_packets()?;
        let mut wire = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        c.read_tls(&mut wire.as_slice()).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn a_client_that_trusts_the_ca_accepts_the_server_by_name_and_by_address() {
    let p = pki(&["sip.confab.test", "127.0.0.1"]);
    let server = server_config(&p.cert, &p.key, &[]).unwrap();
    let client = client_config(Some(&p.ca)).unwrap();
    handshake(Arc::clone(&client), Arc::clone(&server), "sip.confab.test").unwrap();
    handshake(client, server, "127.0.0.1").unwrap();
}

#[test]
fn a_server_of_another_ca_or_name_is_refused() {
    let ours = pki(&["sip.confab.test"]);
    let impostor = pki(&["sip.confab.test"]);
    let client = client_config(Some(&ours.ca)).unwrap();
    let other_ca = server_config(&impostor.cert, &impostor.key, &[]).unwrap();
    let e = handshake(Arc::clone(&client), other_ca, "sip.confab.test").unwrap_err();
    assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e:?}");
    let server = server_config(&ours.cert, &ours.key, &[]).unwrap();
    let e = handshake(client, server, "other.confab.test").unwrap_err();
    assert!(
        matches!(
            e,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            ) | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        ),
        "{e:?}"
    );
}

#[test]
fn unusable_files_are_named_with_what_is_wrong() {
    let p = pki(&["sip.confab.test"]);
    let missing = Path::new("/nonexistent/confab.crt");
    let e = server_config(missing, &p.key, &[]).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/confab.crt: "), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not PEM at all\n").unwrap();
    let e = server_config(&empty, &p.key, &[]).unwrap_err().to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = server_config(&p.cert, &empty, &[]).unwrap_err().to_string();
    assert!(e.contains("no usable private key"), "{e}");
    let e = client_config(Some(&empty)).unwrap_err().to_string();
    assert!(e.contains("empty.pem"), "{e}");

    // A key that is not the certificate's.
    let other = pki(&["sip.confab.test"]);
    let e = server_config(&p.cert, &other.key, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not go with its key"), "{e}");
}
