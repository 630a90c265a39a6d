//! A panic in one conference's tick is contained by its mixer thread: that conference's calls
//! end as `internal-error` (events and records say so), the thread goes on mixing every other
//! conference, and the meeting can be joined again.

use super::command::Reply;
use super::conference::ConferenceCounters;
use super::*;
use crate::conference::{DisconnectReason, Event, Role, State};
use crate::conference::{Joining, ParticipantId, Policy};
use crate::media::codec::Codec;
use crate::media::leg::RtpLeg;
use crate::media::leg::{LegSpec, LegTimers, RELAY_SOURCE};
use crate::media::relay::{RelayPacket, RelayPeer, relay_pair};
use crate::store::RecordEvent;

fn call<T>(mixer: &MixerHandle, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    mixer.commands.send(make(tx)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match rx.try_recv() {
            Ok(answer) => return answer,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("no reply from the mixer thread: {e}"),
        }
    }
}

fn create(mixer: &MixerHandle, id: &str) -> Arc<ConferenceCounters> {
    call(mixer, |reply| Command::CreateConference {
        id: id.into(),
        policy: Policy::default(),
        max_talkers: 3,
        media_timeout: Duration::from_secs(30),
        reply,
    })
    .unwrap()
}

/// A WebRTC-style leg (no socket): the test is its peer.
fn join(mixer: &MixerHandle, conference: &str, id: u64) -> RelayPeer {
    let (port, peer) = relay_pair(Default::default());
    let leg = RtpLeg::relayed(
        ParticipantId(id),
        LegSpec::new(Codec::Pcmu, RELAY_SOURCE),
        port,
        Instant::now(),
        id as u32,
        LegTimers::default(),
    )
    .unwrap();
    call(mixer, |reply| Command::AddLeg {
        conference: conference.into(),
        joining: Joining {
            id: ParticipantId(id),
            display_name: format!("p{id}"),
            uri: String::new(),
            role: Role::Attendee,
            identity: None,
        },
        leg: Box::new(leg),
        reply,
    })
    .unwrap();
    peer
}

/// Sends the peer's packet `n` and takes what the bridge sent it; true if anything came.
fn exchange(peer: &RelayPeer, n: u16) -> bool {
    let mut p = RelayPacket::new(0, n, u32::from(n) * 160, 0xABC);
    p.set_payload(&[0x55; 160]);
    let _ = peer.inbound.try_send(p);
    let mut got = false;
    while peer.outbound.try_recv().is_ok() {
        got = true;
    }
    got
}

#[test]
fn a_panicking_conference_ends_its_calls_and_the_thread_mixes_on() {
    let (events_tx, events) = std::sync::mpsc::sync_channel(1024);
    let (records_tx, records) = std::sync::mpsc::channel();
    let (control, _control_rx) = std::sync::mpsc::sync_channel(16);
    let sinks = super::EventSinks {
        ui: events_tx,
        control,
        control_wanted: Default::default(),
        webhooks: crate::webhooks::WebhookTap::channel().0,
    };
    let mut mixer = MixerHandle::spawn(99, sinks, Some(records_tx)).unwrap();
    let _calm = create(&mixer, "calm");
    let broken = create(&mixer, "broken");
    let calm_peer = join(&mixer, "calm", 1);
    let broken_peer = join(&mixer, "broken", 2);
    for n in 0..10 {
        exchange(&calm_peer, n);
        exchange(&broken_peer, n);
        std::thread::sleep(TICK);
    }

    broken.panic_next_tick.store(true, Ordering::Relaxed);
    // The broken conference's participant is disconnected as internal-error.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ended = false;
    while !ended && Instant::now() < deadline {
        if let Ok(e) = events.recv_timeout(Duration::from_millis(100)) {
            ended = e.conference.as_ref() == "broken"
                && e.event
                    == Event::State {
                        participant: ParticipantId(2),
                        state: State::Disconnected(DisconnectReason::InternalError),
                    };
        }
    }
    assert!(ended, "no internal-error disconnect");
    assert_eq!(mixer.counters.panics.load(Ordering::Relaxed), 1);
    assert!(mixer.alive());

    // The calm conference is still mixed and sent, tick after tick.
    let mut heard = 0;
    for n in 10..40 {
        if exchange(&calm_peer, n) {
            heard += 1;
        }
        std::thread::sleep(TICK);
    }
    assert!(heard >= 20, "calm conference heard {heard} of 30 ticks");
    let roster = call(&mixer, |reply| Command::Roster {
        conference: "calm".into(),
        reply,
    })
    .unwrap();
    assert!(roster[0].state.is_present(), "{roster:?}");

    // The broken meeting keeps its roster as history and can be joined again.
    let roster = call(&mixer, |reply| Command::Roster {
        conference: "broken".into(),
        reply,
    })
    .unwrap();
    assert_eq!(
        roster[0].state,
        State::Disconnected(DisconnectReason::InternalError)
    );
    let again = join(&mixer, "broken", 3);
    let mut heard = 0;
    for n in 0..30 {
        if exchange(&again, n) {
            heard += 1;
        }
        std::thread::sleep(TICK);
    }
    assert!(heard >= 20, "rejoined conference heard {heard} of 30 ticks");

    // The record of the call that ended says why.
    let closed = records.try_iter().find_map(|r| match r {
        RecordEvent::Leg {
            participant: ParticipantId(2),
            open: false,
            facts,
        } => Some(facts),
        _ => None,
    });
    assert_eq!(
        closed.and_then(|f| f.reason),
        Some(DisconnectReason::InternalError)
    );
    mixer.stop();
}
