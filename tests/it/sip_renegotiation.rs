//! Offer/answer that does not happen in the INVITE: an offerless INVITE (our offer in the 200,
//! the caller's answer in the ACK) and a re-INVITE that changes the codec and the address. In
//! both, audio flows both ways afterwards, measured on what test endpoints decode.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use confab::conference::{Policy, Role};
use confab::engine::Joiner;
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use support::Endpoint;
use support::clients::{RawUa, SipBridge, answer_port};

fn sdp(e: &Endpoint, pt: u8, name: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na=rtcp-mux\r\n",
        e.addr().port()
    )
}

fn with_talker(bridge: &SipBridge, meeting: &str) -> (Endpoint, SocketAddr) {
    bridge
        .engine
        .create_conference(meeting, Policy::default())
        .wait()
        .unwrap();
    let talker = Endpoint::new(Codec::Opus, 440.0, -20.0, 1);
    let joiner = Joiner {
        display_name: "talker".into(),
        uri: "sip:talker@test".into(),
        role: Role::Attendee,
        identity: None,
    };
    let (_, addr) = bridge
        .engine
        .add_rtp_leg(meeting, joiner, LegSpec::new(Codec::Opus, talker.addr()))
        .wait()
        .unwrap();
    (talker, addr)
}

#[test]
fn an_offerless_invite_is_answered_in_the_ack() {
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    let (mut talker, talker_addr) = with_talker(&bridge, "8100");
    let mut caller = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 2);
    let mut ua = RawUa::new(bridge.sip_addr(), "offerless1");
    let answer = sdp(&caller, 0, "PCMU");
    let (code, offer) = ua.invite_with("8100", "", |_| answer.clone());
    assert_eq!(code, 200);
    assert!(offer.contains("RTP/AVP"), "{offer}");
    let media: SocketAddr = format!("127.0.0.1:{}", answer_port(&offer))
        .parse()
        .unwrap();
    support::run(
        &mut [(&mut talker, talker_addr), (&mut caller, media)],
        Duration::from_secs(2),
        |_| {},
    );
    assert!(
        caller.level_of(440.0, 1.0) > -22.0,
        "caller hears {}",
        caller.level_of(440.0, 1.0)
    );
    assert!(
        talker.level_of(660.0, 1.0) > -22.0,
        "talker hears {}",
        talker.level_of(660.0, 1.0)
    );
    assert_eq!(ua.request("BYE", None, ""), 200);
}

#[test]
fn a_reinvite_moves_the_leg_to_another_codec_and_address() {
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    let (mut talker, talker_addr) = with_talker(&bridge, "8200");
    let mut pcmu = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 3);
    let mut ua = RawUa::new(bridge.sip_addr(), "reinvite1");
    let (code, answer) = ua.invite("8200", &sdp(&pcmu, 0, "PCMU"));
    assert_eq!(code, 200);
    let media: SocketAddr = format!("127.0.0.1:{}", answer_port(&answer))
        .parse()
        .unwrap();
    support::run(
        &mut [(&mut talker, talker_addr), (&mut pcmu, media)],
        Duration::from_millis(1500),
        |_| {},
    );
    assert!(pcmu.level_of(440.0, 0.5) > -22.0);
    // Now G.722 from another port, with another tone.
    let mut g722 = Endpoint::new(Codec::G722, 880.0, -20.0, 4);
    let status = ua.request("INVITE", Some("application/sdp"), &sdp(&g722, 9, "G722"));
    assert_eq!(status, 200);
    // Generous: the new settings reach the mixer through the SIP shell's blocking pool, and
    // the new stream's jitter buffer fills again; the level is measured over the last second.
    support::run(
        &mut [(&mut talker, talker_addr), (&mut g722, media)],
        Duration::from_secs(4),
        |_| {},
    );
    assert!(
        g722.level_of(440.0, 1.0) > -22.0,
        "G.722 leg hears {}",
        g722.level_of(440.0, 1.0)
    );
    assert!(
        talker.level_of(880.0, 1.0) > -22.0,
        "talker hears {}",
        talker.level_of(880.0, 1.0)
    );
    assert!(
        talker.level_of(660.0, 0.5) < -40.0,
        "the old PCMU stream is still heard"
    );
}

#[test]
fn a_caller_on_hold_is_not_mixed_and_resumes() {
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    let (mut talker, talker_addr) = with_talker(&bridge, "8300");
    let mut caller = Endpoint::new(Codec::Pcmu, 660.0, -20.0, 5);
    let mut ua = RawUa::new(bridge.sip_addr(), "hold1");
    let offer = sdp(&caller, 0, "PCMU");
    let (code, answer) = ua.invite("8300", &offer);
    assert_eq!(code, 200);
    let media: SocketAddr = format!("127.0.0.1:{}", answer_port(&answer))
        .parse()
        .unwrap();
    let run = |talker: &mut Endpoint, caller: &mut Endpoint, ms| {
        support::run(
            &mut [(talker, talker_addr), (caller, media)],
            Duration::from_millis(ms),
            |_| {},
        );
    };
    run(&mut talker, &mut caller, 1500);
    assert!(talker.level_of(660.0, 0.5) > -22.0);
    let on_hold = |bridge: &SipBridge| {
        bridge
            .engine
            .roster("8300")
            .wait()
            .unwrap()
            .iter()
            .any(|p| p.uri.contains("sip:raw@") && p.on_hold)
    };
    // Hold: the caller still sends (music, say) but is not mixed.
    let hold = offer.replace("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=sendonly\r\n");
    assert_eq!(ua.request("INVITE", Some("application/sdp"), &hold), 200);
    run(&mut talker, &mut caller, 1500);
    assert!(on_hold(&bridge));
    assert!(
        talker.level_of(660.0, 0.5) < -50.0,
        "held caller still mixed"
    );
    // Resume.
    assert_eq!(ua.request("INVITE", Some("application/sdp"), &offer), 200);
    run(&mut talker, &mut caller, 1500);
    assert!(!on_hold(&bridge));
    assert!(
        talker.level_of(660.0, 0.5) > -22.0,
        "resumed caller not heard"
    );
}
