//! A caller one node's attendant hands to the node that runs its meeting: the REFER's target
//! carries a pass (a join token under the cluster's shared secret, in the Request-URI's
//! `confab-pass`). The node it reaches lets it straight in, as the leader it proved to be,
//! greeted in the language it chose, without asking for the passcode again. A pass under
//! another secret, for another meeting, expired or long-lived, and a WHIP join token, are
//! ignored: that caller meets the attendant.

use crate::support;
use support::audio::found;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confab::conference::{Admission, Policy, Role, State};
use confab::media::codec::Codec;
use confab::sip::prompts::{Prompt, PromptBook};
use confab::sip::server::LOBBY;
use confab::webrtc::token::{Claims, TokenSigner};
use support::clients::{RawUa, SipBridge, answer_port};

const MEETING: &str = "7310";
const SECRET: &str = "the same on every node";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A pass for `meeting` as another node's attendant makes one, under `secret` (`is_pass`
/// false: a WHIP join token instead).
fn token(secret: &str, meeting: &str, exp: u64, is_pass: bool) -> String {
    TokenSigner::new(Some(secret)).unwrap().sign(&Claims {
        cid: meeting.into(),
        name: String::new(),
        role: "leader".into(),
        exp,
        identity: None,
        language: Some("de".into()),
        pass: is_pass,
    })
}

fn pass(secret: &str, meeting: &str, exp: u64) -> String {
    token(secret, meeting, exp, true)
}

/// Calls `MEETING` with `pass` in the Request-URI, sending silence and keeping what it hears
/// for `listen`; the status and the audio heard (8 kHz).
fn call_with_pass(
    bridge: &SipBridge,
    call_id: &str,
    pass: &str,
    listen: Duration,
) -> (u16, Vec<i16>) {
    let mut caller = support::Endpoint::new(Codec::Pcmu, 440.0, -120.0, 23);
    let mut ua = RawUa::new(bridge.sip_addr(), call_id);
    ua.uri_params = format!(";confab-pass={pass}");
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        caller.addr().port()
    );
    let (code, answer) = ua.invite(MEETING, &offer);
    if code != 200 {
        return (code, Vec::new());
    }
    let media: std::net::SocketAddr = format!("127.0.0.1:{}", answer_port(&answer))
        .parse()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < listen {
        caller.send_frame(media);
        caller.receive();
        let _ = ua.poll(Duration::from_millis(20));
    }
    caller.receive();
    (code, std::mem::take(&mut caller.heard))
}

#[test]
fn a_handed_caller_enters_as_its_pass_says_and_a_bad_pass_meets_the_attendant() {
    let _turn = support::exclusive();
    let signer = Arc::new(TokenSigner::new(Some(SECRET)).unwrap());
    let bridge = SipBridge::with_attendant(|a| {
        a.prompts = Arc::new(PromptBook::embedded(&["en".to_owned(), "de".to_owned()]).unwrap());
        a.hand_off = Some(Arc::clone(&signer));
    });
    bridge
        .engine
        .create_conference_with(
            MEETING,
            Policy::default(),
            Admission {
                passcode: Some("4242".into()),
                leader_pin: Some("9999".into()),
                ..Admission::default()
            },
        )
        .wait()
        .unwrap();

    // A valid pass: in the meeting at once, a leader, and greeted in German (alone there).
    let greeting = confab::sip::prompts::Prompts::embedded_language("de")
        .unwrap()
        .audio(Prompt::FirstParticipant)
        .len();
    let listen = Duration::from_millis(1500)
        + Duration::from_secs_f64(greeting as f64 / f64::from(confab::media::codec::MIX_RATE));
    let valid = pass(SECRET, MEETING, now() + 60);
    let (code, heard) = call_with_pass(&bridge, "handoff-ok", &valid, listen);
    assert_eq!(code, 200);
    let me = bridge
        .participant(MEETING, "raw")
        .expect("not in the meeting");
    assert_eq!(me.role, Role::Leader);
    assert_eq!(me.state, State::Connected);
    assert!(bridge.participant(LOBBY, "raw").is_none(), "asked again");
    let german = found(&heard, 0, "de", Prompt::FirstParticipant);
    let english = found(&heard, 0, "en", Prompt::FirstParticipant);
    eprintln!("greeting: de r = {german:.2}, en r = {english:.2}");
    assert!(
        german > 0.6 && german > english,
        "not greeted in German: de {german:.2}, en {english:.2}"
    );

    // Under another secret, for another meeting, or expired: the attendant asks as usual.
    let present = |conference: &str| -> Vec<confab::conference::ParticipantId> {
        let roster = bridge.engine.roster(conference).wait().unwrap();
        roster
            .into_iter()
            .filter(|p| p.state.is_present())
            .map(|p| p.id)
            .collect()
    };
    for (n, (call_id, bad)) in [
        (
            "handoff-secret",
            pass("another secret", MEETING, now() + 60),
        ),
        ("handoff-meeting", pass(SECRET, "7311", now() + 60)),
        (
            "handoff-expired",
            pass(SECRET, MEETING, now().saturating_sub(1)),
        ),
        ("handoff-forever", pass(SECRET, MEETING, now() + 86_400)),
        (
            "handoff-join-token",
            token(SECRET, MEETING, now() + 30, false),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (code, _) = call_with_pass(&bridge, call_id, &bad, Duration::from_millis(300));
        assert_eq!(code, 200, "{call_id}");
        assert_eq!(
            present(LOBBY).len(),
            n + 1,
            "{call_id}: not at the attendant"
        );
        assert!(
            present(MEETING).iter().all(|p| *p == me.id),
            "{call_id}: let into the meeting"
        );
    }
}
