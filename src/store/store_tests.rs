//! Storage tests on real SQLite files in temporary directories.

use super::*;
use crate::conference::ParticipantId;

fn conference(id: &str) -> StoredConference {
    StoredConference {
        id: id.into(),
        name: format!("Meeting {id}"),
        access: Access::Closed,
        passcode: Some("4242".into()),
        leader_pin: Some("9999".into()),
        attendees: vec!["sip:a@x".into(), "sip:b@y".into()],
        locked: true,
        max_participants: 12,
        wait_for_leader: true,
        max_talkers: Some(4),
        created_at: 1_700_000_000_000,
    }
}

fn record(conference: &str, p: u64, joined_at: i64) -> Record {
    Record {
        conference: conference.into(),
        participant: format!("p{p}"),
        display_name: "Ann".into(),
        uri: "sip:ann@x".into(),
        role: "attendee".into(),
        transport: "rtp".into(),
        codec: Some("PCMU".into()),
        joined_at,
        ..Record::default()
    }
}

#[test]
fn conferences_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save_conference(&conference("1234")).unwrap();
    let mut other = conference("5678");
    other.passcode = None;
    other.attendees.clear();
    other.created_at += 1;
    store.save_conference(&other).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.conferences().unwrap(),
        vec![conference("1234"), other.clone()]
    );
    assert_eq!(store.conference("5678").unwrap(), Some(other));
    assert!(store.delete_conference("1234").unwrap());
    assert!(!store.delete_conference("1234").unwrap());
    assert_eq!(store.conferences().unwrap().len(), 1);
    assert!(store.healthy());
}

#[test]
fn ten_thousand_legs_give_ten_thousand_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writer = store.record_writer().unwrap();
    for p in 0..10_000u64 {
        let r = record("1234", p, 1_000 + p as i64);
        writer
            .sender
            .send(RecordEvent::Open {
                participant: ParticipantId(p),
                record: Box::new(r.clone()),
            })
            .unwrap();
        writer
            .sender
            .send(RecordEvent::Close {
                participant: ParticipantId(p),
                record: Box::new(Record {
                    left_at: Some(5_000 + p as i64),
                    reason: Some("hangup".into()),
                    packets_in: 500,
                    mos: Some(4.3),
                    ..r
                }),
            })
            .unwrap();
    }
    writer.flush();
    let all = store
        .records(&RecordFilter {
            limit: 20_000,
            ..RecordFilter::default()
        })
        .unwrap();
    // Every leg that ended has its closed row (a page holds at most 10,000).
    assert_eq!(all.len(), 10_000);
    assert!(
        all.iter()
            .all(|r| r.reason.as_deref() == Some("hangup") && r.packets_in == 500)
    );
    let page = store
        .records(&RecordFilter {
            conference: Some("1234".into()),
            since: Some(1_000 + 9_990),
            limit: 5,
            offset: 2,
            ..RecordFilter::default()
        })
        .unwrap();
    // Newest first: joined at 10999, 10998 skipped, then 10997..10993.
    assert_eq!(
        page.iter().map(|r| r.joined_at).collect::<Vec<_>>(),
        [10_997, 10_996, 10_995, 10_994, 10_993]
    );
    let none = store
        .records(&RecordFilter {
            conference: Some("9999".into()),
            limit: 10,
            ..RecordFilter::default()
        })
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn records_left_open_by_a_crash_are_closed_as_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writer = store.record_writer().unwrap();
    writer
        .sender
        .send(RecordEvent::Open {
            participant: ParticipantId(1),
            record: Box::new(record("1234", 1, 10)),
        })
        .unwrap();
    // A refused join: a closed row without an open one.
    writer
        .sender
        .send(RecordEvent::Close {
            participant: ParticipantId(2),
            record: Box::new(Record {
                left_at: Some(11),
                reason: Some("locked".into()),
                ..record("1234", 2, 11)
            }),
        })
        .unwrap();
    writer.flush();
    drop((writer, store));
    let store = Store::open(dir.path()).unwrap();
    let all = store
        .records(&RecordFilter {
            limit: 10,
            ..RecordFilter::default()
        })
        .unwrap();
    let reasons: Vec<_> = all
        .iter()
        .map(|r| r.reason.clone().unwrap_or_default())
        .collect();
    assert_eq!(reasons, ["locked", "abandoned"]);
    assert!(all.iter().all(|r| r.left_at.is_some()));
}

#[test]
fn a_corrupt_or_unwritable_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("confab.db"), vec![0x42; 8192]).unwrap();
    let e = Store::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("confab.db"), "{e}");
    // A data directory that is a file.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let e = Store::open(&file).unwrap_err().to_string();
    assert!(e.contains("plain-file"), "{e}");
}
