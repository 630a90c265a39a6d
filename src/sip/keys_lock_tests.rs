//! A leader's keypad lock is stored as the operator's is: a restart (which starts the stored
//! conferences with their stored lock) and the other nodes keep it. An attendee's `*5` is
//! refused and stores nothing.

use super::*;
use crate::conference::{Policy, Role};
use crate::engine::{EngineSettings, Joiner};
use crate::media::codec::Codec;
use crate::media::leg::LegSpec;
use crate::sip::prompts::PromptBook;
use crate::store::{Store, StoredConference};

async fn joined(engine: &Engine, meeting: &str, role: Role) -> ParticipantId {
    let joiner = Joiner {
        display_name: "Ann".into(),
        uri: "sip:ann@example.com".into(),
        role,
        identity: None,
    };
    let spec = LegSpec::new(Codec::Pcmu, "127.0.0.1:9".parse().unwrap());
    engine.add_rtp_leg(meeting, joiner, spec).await.unwrap().0
}

fn stored_lock(store: &Store, meeting: &str) -> bool {
    store.conference(meeting).unwrap().unwrap().locked
}

#[tokio::test]
async fn a_leaders_keypad_lock_is_stored_and_an_attendees_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let engine = Engine::start(EngineSettings::loopback(1, 45_060)).unwrap();
    let prompts = PromptBook::embedded(&["en".to_owned()]).unwrap();
    let prompts = prompts.get("en");
    store
        .save_conference(&StoredConference {
            id: "4100".into(),
            ..StoredConference::default()
        })
        .unwrap();
    engine
        .create_conference("4100", Policy::default())
        .await
        .unwrap();
    let attendee = joined(&engine, "4100", Role::Attendee).await;
    let leader = joined(&engine, "4100", Role::Leader).await;

    // An attendee may not lock: nothing changes, nothing to store.
    let kept = carry_out(&engine, prompts, "4100", attendee, KeyAction::Lock).await;
    assert_eq!(kept.unwrap(), Kept::Nothing);
    assert!(!engine.policy("4100").await.unwrap().locked);

    // The leader locks, then unlocks; each is kept in the store.
    for locked in [true, false] {
        let kept = carry_out(&engine, prompts, "4100", leader, KeyAction::Lock).await;
        assert_eq!(kept.unwrap(), Kept::Lock(locked));
        assert_eq!(engine.policy("4100").await.unwrap().locked, locked);
        keep_lock(store.clone(), "4100", locked).await;
        assert_eq!(stored_lock(&store, "4100"), locked);
    }

    // A conference the store does not have (the attendant's lobby) is left alone.
    assert!(!store.set_locked("9999", true).unwrap());
    keep_lock(store.clone(), "9999", true).await;
    assert!(store.conference("9999").unwrap().is_none());
}
