//! `entry_exit: names` with real phones: Bob calls the attendant, keys the meeting, is asked
//! for his name and says it (his phone sends a 700 Hz tone); Ann, already in
//! the meeting, hears that name and "has joined the conference" when he enters, and the name and
//! "has left the conference" when he hangs up.
//!
//! What Ann heard is proven on baresip's own decoding: each phrase, brought from the mixing rate
//! to the phone's, must have a normalized cross-correlation peak near 1 in what she recorded,
//! a prompt never played to her stays low, and Bob's tone (his name) is there before each
//! phrase although Bob is muted by then.

use crate::support;
use support::audio;
use support::wait_for;

use std::path::Path;
use std::time::Duration;

use confab::conference::roster::EntryExit;
use confab::conference::{Admission, Policy, State};
use confab::media::codec::MIX_RATE;
use confab::mixer::Control;
use confab::sip::prompts::{Prompt, Prompts};
use confab::sip::server::LOBBY;
use confab_dsp::signal::tone_level_dbov;
use support::clients::{Baresip, BaresipOptions, SipBridge};

const MEETING: &str = "8383";
/// Bob's "name".
const NAME_HZ: f32 = 700.0;
/// Heard: the phrase's correlation peak at least this (the keypad's prompts measure 0.99).
const HEARD: f64 = 0.8;
/// A prompt never played stays under this.
const NOT_HEARD: f64 = 0.4;

fn phone(bridge: &SipBridge, root: &Path, name: &str, target: &str, tone_hz: f32) -> Baresip {
    Baresip::dial(
        root,
        BaresipOptions {
            name,
            codec: "pcmu",
            srtp: false,
            tone_hz,
            target: format!("sip:{target}@{}", bridge.sip_addr()),
            seconds: 90,
            interactive: true,
        },
    )
}

fn keys(b: &mut Baresip, digits: &str) {
    b.type_command(&format!("/sndcode {digits}"));
    std::thread::sleep(Duration::from_millis(250 * digits.len() as u64 + 500));
}

/// Samples `b` has decoded so far.
fn recorded(b: &Baresip) -> usize {
    audio::heard_so_far(&b.dir).map_or(0, |(_, h)| h.len())
}

/// Waits (bounded) until `b` has heard `prompt` after its first `from` samples; where it
/// starts (samples from `from`) and its peak.
fn wait_to_hear(b: &Baresip, prompt: Prompt, from: usize) -> Option<(u32, usize, f64)> {
    let prompts = Prompts::embedded().unwrap();
    let mut found = None;
    wait_for(Duration::from_secs(25), || {
        let Some((rate, heard)) = audio::heard_so_far(&b.dir) else {
            return false;
        };
        if heard.len() <= from {
            return false;
        }
        let template = audio::decimate(&prompts.audio(prompt), MIX_RATE, rate);
        let m = audio::find(&template, &heard[from..]);
        found = Some((rate, m.at, m.peak));
        m.peak >= HEARD
    });
    found
}

/// The level of Bob's tone (his name) in the second that ends 0.2 s before `phrase`.
fn name_before(heard: &[i16], rate: u32, phrase: usize) -> f32 {
    let (second, gap) = (rate as usize, rate as usize / 5);
    let end = phrase.saturating_sub(gap);
    tone_level_dbov(&heard[end.saturating_sub(second)..end], rate, NAME_HZ)
}

#[test]
fn a_callers_recorded_name_is_said_when_it_enters_and_leaves() {
    if !support::require(&["baresip", "sox"]) {
        return;
    }
    let _turn = support::exclusive();
    let bridge = SipBridge::start();
    let policy = Policy {
        entry_exit: EntryExit::Names,
        ..Policy::default()
    };
    bridge
        .engine
        .create_conference_with(MEETING, policy, Admission::default())
        .wait()
        .unwrap();
    let root = tempfile::tempdir().unwrap();

    // Ann dials the meeting straight (no attendant, no name): she listens.
    let ann = phone(&bridge, root.path(), "ann", MEETING, 300.0);
    let joined = wait_for(Duration::from_secs(10), || {
        bridge
            .participant(MEETING, "ann")
            .is_some_and(|p| p.state == State::Connected && p.media_ready)
    });
    assert!(joined, "ann did not join:\n{}", ann.log());

    // Bob comes through the attendant and is asked for his name.
    let mut bob = phone(&bridge, root.path(), "bob", "conference", NAME_HZ);
    let in_lobby = wait_for(Duration::from_secs(10), || {
        bridge
            .participant(LOBBY, "bob")
            .is_some_and(|p| p.media_ready)
    });
    assert!(in_lobby, "bob never reached the attendant:\n{}", bob.log());
    std::thread::sleep(Duration::from_millis(500));
    keys(&mut bob, "8383#");
    let asked = wait_to_hear(&bob, Prompt::SayName, 0);
    eprintln!("bob was asked for his name: {asked:?}");
    assert!(asked.is_some_and(|(_, _, peak)| peak >= HEARD), "{asked:?}");

    // He enters; he is muted at once, so that what Ann hears of his tone is the name.
    let before = recorded(&ann);
    let entered = wait_for(Duration::from_secs(20), || {
        bridge
            .participant(MEETING, "bob")
            .is_some_and(|p| p.state == State::Connected)
    });
    assert!(entered, "bob did not enter:\n{}", bob.log());
    let bob_id = bridge.participant(MEETING, "bob").unwrap().id;
    bridge
        .engine
        .control(MEETING, Control::Mute(bob_id, true))
        .wait()
        .unwrap();
    let joined = wait_to_hear(&ann, Prompt::HasJoined, before);
    let (rate, heard) = audio::heard_so_far(&ann.dir).unwrap();
    let (_, at, peak) = joined.unwrap();
    // The second before the phrase is the end of the name: Bob's tone, though he is muted.
    let phrase = before + at;
    let name_level = name_before(&heard, rate, phrase);
    eprintln!(
        "ann heard \"has joined\" (peak {peak:.3}) {:.2} s after bob entered; his name before \
         it at {name_level:.1} dBov",
        at as f64 / f64::from(rate)
    );
    assert!(peak >= HEARD, "{joined:?}");
    assert!(name_level > -35.0, "the name at {name_level:.1} dBov");

    // Bob hangs up: his name and "has left".
    let before = recorded(&ann);
    bob.type_command("/quit");
    bob.wait(Duration::from_secs(10));
    let left = wait_to_hear(&ann, Prompt::HasLeft, before);
    let (rate, heard) = audio::heard_so_far(&ann.dir).unwrap();
    let (_, at, peak) = left.unwrap();
    let phrase = before + at;
    let name_level = name_before(&heard, rate, phrase);
    // A prompt never played to Ann is not found (the negative control).
    let template = audio::decimate(
        &Prompts::embedded().unwrap().audio(Prompt::Muted),
        MIX_RATE,
        rate,
    );
    let control = audio::find_anywhere(&template, &heard[before..]).peak;
    eprintln!(
        "ann heard \"has left\" (peak {peak:.3}), the name before it at {name_level:.1} dBov; \
         control {control:.3}"
    );
    assert!(peak >= HEARD, "{left:?}");
    assert!(name_level > -35.0, "the name at {name_level:.1} dBov");
    assert!(control < NOT_HEARD, "{control:.3}");
}
