use super::*;

#[test]
fn answers_are_read() {
    let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20012 RTP/AVP 0\r\n";
    assert_eq!(
        answer_media(sdp).unwrap(),
        ("127.0.0.1:20012".parse().unwrap(), Some(0))
    );
    assert!(answer_media("v=0\r\n").is_err());
}

#[test]
fn srtp_keys_are_offered_and_read_from_the_answer() {
    let key: KeyMaterial = std::array::from_fn(|i| i as u8);
    let answer = format!(
        "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20012 RTP/SAVP 0\r\na=crypto:1 {SRTP_SUITE} inline:{}\r\n",
        base64_encode(&key)
    );
    assert_eq!(answer_key(&answer).unwrap(), key);
    for bad in [
        "m=audio 1 RTP/AVP 0\r\n".to_owned(),
        answer.replace(SRTP_SUITE, "AES_CM_128_HMAC_SHA1_32"),
        answer.replace("inline:", "inline:!"),
        format!(
            "a=crypto:1 {SRTP_SUITE} inline:{}\r\n",
            base64_encode(&key[..20])
        ),
    ] {
        assert!(answer_key(&bad).is_err(), "{bad}");
    }
}

#[test]
fn offers_name_the_media_address_and_answers_of_either_family_are_read() {
    let sdp = "v=0\r\nc=IN IP6 2001:db8::7\r\nm=audio 20014 RTP/AVP 9\r\n";
    assert_eq!(
        answer_media(sdp).unwrap(),
        ("[2001:db8::7]:20014".parse().unwrap(), Some(9))
    );
    assert!(answer_media("c=IN IP4 nowhere\r\nm=audio 1 RTP/AVP 0\r\n").is_err());
}
