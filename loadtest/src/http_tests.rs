use super::*;

#[test]
fn urls_of_both_schemes_and_any_host_are_taken() {
    let (e, path) = parse_base("http://127.0.0.1:8080").unwrap();
    assert_eq!(
        (e.addr, path.as_str(), e.is_https()),
        ("127.0.0.1:8080".parse().unwrap(), "", false)
    );
    let (e, path) = parse_base("http://192.0.2.1/janus/").unwrap();
    assert_eq!(
        (e.addr, path.as_str()),
        ("192.0.2.1:80".parse().unwrap(), "/janus")
    );
    let (e, _) = parse_base("http://[2001:db8::1]:8088").unwrap();
    assert_eq!(e.addr, "[2001:db8::1]:8088".parse().unwrap());
    for bad in [
        "ftp://127.0.0.1",
        "http://",
        "http://127.0.0.1:x",
        "http://[::1",
        "http://::1:80",
    ] {
        assert!(parse_base(bad).is_err(), "{bad}");
    }
    // A CA file is for https only.
    assert!(
        endpoint(
            "http://127.0.0.1:8080",
            Some(Path::new("/nonexistent/ca.crt"))
        )
        .is_err()
    );
}

#[test]
fn https_reads_its_ca_file_and_names_it_when_it_cannot() {
    let err = endpoint(
        "https://198.51.100.7:8443",
        Some(Path::new("/nonexistent/ca.crt")),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent/ca.crt"),
        "{err:#}"
    );
    if Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        let (e, _) = parse_base("https://127.0.0.1").unwrap();
        assert_eq!((e.addr.port(), e.is_https()), (443, true));
    }
}

#[test]
fn authorities_are_split() {
    assert_eq!(split_authority("h:1", 80), Some(("h".into(), 1)));
    assert_eq!(split_authority("h", 443), Some(("h".into(), 443)));
    assert_eq!(split_authority("[::1]", 80), Some(("::1".into(), 80)));
    assert_eq!(split_authority(":80", 80), None);
    assert_eq!(split_authority("[::1]x", 80), None);
}

#[test]
fn chunked_bodies_never_split_a_character() {
    assert_eq!(dechunk("3\r\nabc\r\n0\r\n\r\n"), "abc");
    assert_eq!(dechunk("1\r\né\r\n0\r\n\r\n"), "");
}
