use super::*;

/// RFC 7616 3.9.1's example (the same request answered with MD5 and with SHA-256).
const RFC7616_MD5: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
    algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

#[test]
fn the_rfc_7616_example_is_answered_with_both_hashes() {
    let md5 = Challenge::parse(RFC7616_MD5).expect("challenge");
    assert_eq!(md5.algorithm, Algorithm::Md5);
    assert!(md5.qop_auth && !md5.stale);
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let answer = md5.answer(
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        cnonce,
        1,
    );
    assert!(
        answer.contains("response=\"8ca523f5e9506fed4657c9700eebdbec\""),
        "{answer}"
    );
    let sha = Challenge::parse(&RFC7616_MD5.replace("algorithm=MD5", "algorithm=SHA-256"))
        .expect("challenge");
    let answer = sha.answer(
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        cnonce,
        1,
    );
    assert!(
        answer.contains(
            "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
        ),
        "{answer}"
    );
    assert!(answer.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));
    assert!(answer.contains("nc=00000001") && answer.contains("qop=auth"));
}

#[test]
fn the_rfc_2617_example_verifies_and_a_wrong_password_does_not() {
    let creds = Credentials::parse(
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
         nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
         opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .expect("credentials");
    assert_eq!(creds.nc, Some(("00000001".to_owned(), 1)));
    assert!(creds.verify("GET", "Circle Of Life"));
    assert!(!creds.verify("GET", "Circle of Life"));
    assert!(!creds.verify("POST", "Circle Of Life"));
}

#[test]
fn our_answer_verifies_for_every_algorithm() {
    for alg in ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"] {
        let ch = Challenge::parse(&format!(
            "Digest realm=\"confab\", nonce=\"abc\", algorithm={alg}, qop=\"auth\""
        ))
        .expect(alg);
        let header = ch.answer("INVITE", "sip:1234@192.0.2.1", "al\"ice", "pw", "cn", 7);
        let creds = Credentials::parse(&header).expect(alg);
        assert_eq!(creds.username, "al\"ice", "quotes survive");
        assert_eq!(creds.nc.as_ref().map(|n| n.1), Some(7));
        assert!(creds.verify("INVITE", "pw"), "{alg}");
        assert!(!creds.verify("INVITE", "pW"), "{alg}");
    }
}

#[test]
fn hostile_or_unanswerable_headers_are_refused() {
    let long = format!("Digest realm=\"{}\", nonce=\"n\"", "r".repeat(600));
    let many = format!(
        "Digest realm=\"r\", nonce=\"n\"{}",
        (0..30).map(|i| format!(", x{i}=1")).collect::<String>()
    );
    for bad in [
        "Basic realm=\"r\"",
        "Digest",
        "Digest realm=\"r\"",
        "Digest realm=\"r\", nonce=\"\"",
        "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
        "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
        "Digest realm=\"r\", nonce=\"n\", realm=\"other\"",
        "Digest realm=\"unterminated, nonce=\"n",
        "Digest realm=\"r\", nonce=\"n\u{7}\"",
        "Digest =x, nonce=\"n\"",
        long.as_str(),
        many.as_str(),
    ] {
        assert_eq!(Challenge::parse(bad), None, "{bad}");
    }
    let creds = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"00\"";
    assert!(Credentials::parse(creds).is_some());
    assert!(
        Credentials::parse(&format!("{creds}, nc=1")).is_none(),
        "nc is 8 hex digits"
    );
    assert!(Credentials::parse(&format!("{creds}, nc=0000000g")).is_none());
    assert!(Credentials::parse(&format!("{creds}, response=\"11\"")).is_none());
    // Without qop nothing verifies: the RFC 2069 form carries no count to stop a replay.
    let bare = Credentials::parse(creds).expect("credentials");
    assert!(!bare.verify("INVITE", "anything"));
}

#[test]
fn comparison_is_exact() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
