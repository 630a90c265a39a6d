//! The dial-in state machine inside an established dialog: session timers and refreshes, the
//! bridge's own BYE, INFO digits, hold, and re-INVITEs.

use super::*;

#[test]
fn session_timers_end_a_stale_call_and_refreshes_keep_it() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    for (call, refresh) in [("st1", false), ("st2", true)] {
        uas.handle(
            t0,
            peer(),
            &invite(
                call,
                &format!("z9hG4bK{call}"),
                "Supported: timer\r\nSession-Expires: 90\r\n",
                OFFER,
            ),
        );
        let (_, actions) = drain(&mut uas);
        let Some(Action::Join(j)) = actions.first() else {
            panic!()
        };
        let p = if refresh { 2 } else { 1 };
        uas.joined(
            t0,
            j.call,
            JoinResult::Joined {
                participant: ParticipantId(p),
                local: "127.0.0.1:1".parse().unwrap(),
            },
        );
        let (sent, _) = drain(&mut uas);
        assert_eq!(sent[0].header("Session-Expires"), Some("90;refresher=uac"));
        let tag = sent[0].to_tag().unwrap().to_owned();
        uas.handle(
            t0,
            peer(),
            &in_dialog("ACK", call, &tag, 1, "z9hG4bKa", "", ""),
        );
        if refresh {
            let update = in_dialog(
                "UPDATE",
                call,
                &tag,
                2,
                "z9hG4bKup",
                "Session-Expires: 90\r\n",
                "",
            );
            uas.handle(t0 + Duration::from_secs(60), peer(), &update);
            assert_eq!(statuses(&drain(&mut uas).0), [200]);
        }
    }
    uas.tick(t0 + Duration::from_secs(95));
    let (sent, actions) = drain(&mut uas);
    // Only the unrefreshed call ends: the caller is BYEd and the participant leaves.
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(1)
        }]
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method(), Some(&Method::Bye));
    assert_eq!(sent[0].call_id(), "st1");
}

#[test]
fn the_bridge_hangs_up_with_a_bye_retransmitted_until_answered() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ok = answered(&mut uas, t0, "h1", 9);
    let tag = ok.to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "h1", &tag, 1, "z9hG4bKa", "", ""),
    );
    uas.hangup(t0, ParticipantId(9));
    let (sent, _) = drain(&mut uas);
    let bye = &sent[0];
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert!(
        matches!(&bye.start, StartLine::Request { uri, .. } if uri == "sip:ann@127.0.0.1:5262")
    );
    assert_eq!(bye.from_tag(), Some(tag.as_str()));
    assert_eq!(bye.to_tag(), Some("fth1"));
    assert_eq!(bye.cseq(), Some((2, Method::Bye)));
    uas.tick(t0 + Duration::from_millis(600));
    assert_eq!(drain(&mut uas).0.len(), 1, "BYE retransmitted");
    // Hanging up twice sends nothing more.
    uas.hangup(t0, ParticipantId(9));
    assert!(drain(&mut uas).0.is_empty());
    let mut ok = bye.response(200, "OK", None);
    ok.push_header("Server", "peer");
    uas.handle(t0, peer(), &ok.to_bytes());
    uas.tick(t0 + Duration::from_secs(40));
    assert!(drain(&mut uas).0.is_empty());
    assert_eq!(uas.state_size(), 0);
}

#[test]
fn info_dtmf_and_hold() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ok = answered(&mut uas, t0, "i1", 4);
    let tag = ok.to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "i1", &tag, 1, "z9hG4bKa", "", ""),
    );
    let relay = in_dialog(
        "INFO",
        "i1",
        &tag,
        2,
        "z9hG4bKi1",
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=160\r\n",
    );
    uas.handle(t0, peer(), &relay);
    let plain = in_dialog(
        "INFO",
        "i1",
        &tag,
        3,
        "z9hG4bKi2",
        "Content-Type: application/dtmf\r\n",
        "#",
    );
    uas.handle(t0, peer(), &plain);
    let odd = in_dialog(
        "INFO",
        "i1",
        &tag,
        4,
        "z9hG4bKi3",
        "Content-Type: text/plain\r\n",
        "hi",
    );
    uas.handle(t0, peer(), &odd);
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200, 200, 415]);
    assert_eq!(
        actions,
        [
            Action::Dtmf {
                participant: ParticipantId(4),
                digit: '5'
            },
            Action::Dtmf {
                participant: ParticipantId(4),
                digit: '#'
            }
        ]
    );
    let hold = format!("{OFFER}a=sendonly\r\n");
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "INVITE",
            "i1",
            &tag,
            5,
            "z9hG4bKh",
            "Content-Type: application/sdp\r\n",
            &hold,
        ),
    );
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert!(String::from_utf8_lossy(&sent[0].body).contains("a=recvonly"));
    assert_eq!(
        actions,
        [Action::Hold {
            participant: ParticipantId(4),
            on: true
        }]
    );
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "INVITE",
            "i1",
            &tag,
            6,
            "z9hG4bKr",
            "Content-Type: application/sdp\r\n",
            OFFER,
        ),
    );
    let (sent, actions) = drain(&mut uas);
    assert!(String::from_utf8_lossy(&sent[0].body).contains("a=sendrecv"));
    assert_eq!(
        actions,
        [Action::Hold {
            participant: ParticipantId(4),
            on: false
        }]
    );
}

#[test]
fn a_reinvite_changes_the_codec() {
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    let ok = answered(&mut uas, t0, "cc1", 12);
    let tag = ok.to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "cc1", &tag, 1, "z9hG4bKa", "", ""),
    );
    let g722 = OFFER.replace("RTP/AVP 0 101", "RTP/AVP 9 101");
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "INVITE",
            "cc1",
            &tag,
            2,
            "z9hG4bKre",
            "Content-Type: application/sdp\r\n",
            &g722,
        ),
    );
    let (sent, actions) = drain(&mut uas);
    assert_eq!(statuses(&sent), [200]);
    assert!(String::from_utf8_lossy(&sent[0].body).contains("a=rtpmap:9 G722/8000"));
    let [Action::Renegotiated { spec, .. }] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(spec.codec, Codec::G722);
    // The same offer again (a session refresh): nothing changes.
    uas.handle(
        t0,
        peer(),
        &in_dialog(
            "INVITE",
            "cc1",
            &tag,
            3,
            "z9hG4bKre2",
            "Content-Type: application/sdp\r\n",
            &g722,
        ),
    );
    let (_, actions) = drain(&mut uas);
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn a_session_interval_of_any_size_is_capped_and_kills_nothing() {
    // u64::MAX seconds once overflowed `Instant + Duration` and ended the SIP task.
    let t0 = Instant::now();
    let mut uas = Uas::new(settings(), counter_random);
    uas.handle(
        t0,
        peer(),
        &invite(
            "huge",
            "z9hG4bKhuge",
            "Supported: timer\r\nSession-Expires: 4294967295\r\n",
            OFFER,
        ),
    );
    let (_, actions) = drain(&mut uas);
    let Some(Action::Join(j)) = actions.first() else {
        panic!("no join: {actions:?}")
    };
    uas.joined(
        t0,
        j.call,
        JoinResult::Joined {
            participant: ParticipantId(1),
            local: "127.0.0.1:1".parse().unwrap(),
        },
    );
    let (sent, _) = drain(&mut uas);
    assert_eq!(
        sent[0].header("Session-Expires"),
        Some(format!("{MAX_SE};refresher=uac").as_str())
    );
    let tag = sent[0].to_tag().unwrap().to_owned();
    uas.handle(
        t0,
        peer(),
        &in_dialog("ACK", "huge", &tag, 1, "z9hG4bKa", "", ""),
    );
    for (cseq, method) in [(2, "UPDATE"), (3, "INVITE")] {
        let request = in_dialog(
            method,
            "huge",
            &tag,
            cseq,
            &format!("z9hG4bKhuge{cseq}"),
            "Session-Expires: 18446744073709551615\r\n",
            "",
        );
        uas.handle(t0 + Duration::from_secs(60), peer(), &request);
        let (sent, _) = drain(&mut uas);
        assert_eq!(statuses(&sent), [200], "{method}");
        assert_eq!(
            sent[0].header("Session-Expires"),
            Some(format!("{MAX_SE};refresher=uac").as_str()),
            "{method}"
        );
    }
    // The capped interval still runs out: the call is ended, not kept forever.
    uas.tick(t0 + Duration::from_secs(60 + u64::from(MAX_SE) + 1));
    let (sent, actions) = drain(&mut uas);
    assert_eq!(
        actions,
        [Action::Leave {
            participant: ParticipantId(1)
        }]
    );
    assert_eq!(sent[0].method(), Some(&Method::Bye));
}
