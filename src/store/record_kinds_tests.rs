//! Where each leg comes from, the per-user filter and conference sessions, on both databases;
//! and an old SQLite database taking the new columns.

use super::*;

on_both!(
    a_legs_origin_is_kept_with_its_record,
    records_are_filtered_by_participant_uri,
    conference_sessions_are_recorded_from_start_to_end,
    a_session_left_open_is_closed_as_abandoned,
    an_unanswered_dial_out_shows_where_it_was_sent,
);

fn all() -> RecordFilter {
    RecordFilter {
        limit: 100,
        ..RecordFilter::default()
    }
}

fn a_legs_origin_is_kept_with_its_record(db: &Subject<'_>) {
    use crate::conference::{DisconnectReason, Role};
    use std::time::Instant;

    let store = (db.open)();
    let writer = store.record_writer().unwrap();
    let hostile = format!("Evil\r\nX-Injected: 1\u{7}{}", "é".repeat(300));
    let origin = Origin::new(Some(&hostile), Some("192.0.2.7:5062".parse().unwrap()));
    let mut facts = LegFacts {
        conference: "4321".into(),
        display_name: "Bea".into(),
        uri: "sip:bea@x".into(),
        role: Role::Attendee,
        stats: None,
        reason: None,
        sip_status: None,
        at: Instant::now(),
        origin: Some(std::sync::Arc::new(origin)),
    };
    let send = |open, facts: &LegFacts| {
        writer
            .sender
            .send(RecordEvent::Leg {
                participant: ParticipantId(3),
                open,
                facts: Box::new(facts.clone()),
            })
            .unwrap();
    };
    send(true, &facts);
    writer.flush();
    let open = store.records(&all()).unwrap();
    assert_eq!(open[0].remote.as_deref(), Some("192.0.2.7:5062"));
    // Closed without the origin (the leg was already gone): the row keeps what it had.
    facts.origin = None;
    facts.reason = Some(DisconnectReason::Hangup);
    send(false, &facts);
    // A leg of unknown origin has none.
    writer
        .sender
        .send(RecordEvent::Open {
            participant: ParticipantId(4),
            record: Box::new(record("4321", 4, 1)),
        })
        .unwrap();
    writer.flush();
    let rows = store.records(&all()).unwrap();
    let kept = rows.iter().find(|r| r.reason.is_some()).unwrap();
    let ua = kept.user_agent.as_deref().unwrap();
    assert!(ua.starts_with("EvilX-Injected: 1é"), "{ua}");
    assert!(
        ua.len() <= MAX_USER_AGENT && ua.len() > MAX_USER_AGENT - 2,
        "{}",
        ua.len()
    );
    assert!(!ua.chars().any(char::is_control));
    assert_eq!(kept.remote.as_deref(), Some("192.0.2.7:5062"));
    let unknown = rows.iter().find(|r| r.participant == "p4").unwrap();
    assert_eq!((&unknown.user_agent, &unknown.remote), (&None, &None));
}

fn an_unanswered_dial_out_shows_where_it_was_sent(db: &Subject<'_>) {
    use crate::conference::{DisconnectReason, Role};

    let store = (db.open)();
    let writer = store.record_writer().unwrap();
    let p = ParticipantId(9);
    writer
        .sender
        .send(RecordEvent::Origin {
            participant: p,
            origin: Box::new(Origin::new(
                None,
                Some("198.51.100.4:5060".parse().unwrap()),
            )),
        })
        .unwrap();
    // Busy: it ends without a leg (and so without an origin of its own).
    writer
        .sender
        .send(RecordEvent::Leg {
            participant: p,
            open: false,
            facts: Box::new(LegFacts {
                conference: "4321".into(),
                display_name: "Bob".into(),
                uri: "sip:bob@198.51.100.4".into(),
                role: Role::Attendee,
                stats: None,
                reason: Some(DisconnectReason::Busy),
                sip_status: Some(486),
                at: std::time::Instant::now(),
                origin: None,
            }),
        })
        .unwrap();
    writer.flush();
    let rows = store.records(&all()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].remote.as_deref(), Some("198.51.100.4:5060"));
    assert_eq!(
        (rows[0].user_agent.as_deref(), rows[0].sip_status),
        (None, Some(486))
    );
}

fn records_are_filtered_by_participant_uri(db: &Subject<'_>) {
    let store = (db.open)();
    let writer = store.record_writer().unwrap();
    for (p, uri) in [
        (1, "sip:ann@x"),
        (2, "sip:bob@x"),
        (3, "sip:ann@x"),
        (4, "sip:ANN@x"),
    ] {
        writer
            .sender
            .send(RecordEvent::Open {
                participant: ParticipantId(p),
                record: Box::new(Record {
                    uri: uri.into(),
                    ..record(if p == 3 { "5678" } else { "1234" }, p, p as i64)
                }),
            })
            .unwrap();
    }
    writer.flush();
    let of = |uri: &str, conference: Option<&str>| {
        store
            .records(&RecordFilter {
                uri: Some(uri.into()),
                conference: conference.map(str::to_owned),
                ..all()
            })
            .unwrap()
            .into_iter()
            .map(|r| r.participant)
            .collect::<Vec<_>>()
    };
    // Exactly the URI, newest first; with other filters.
    assert_eq!(of("sip:ann@x", None), ["p3", "p1"]);
    assert_eq!(of("sip:ann@x", Some("1234")), ["p1"]);
    assert_eq!(of("sip:nobody@x", None), Vec::<String>::new());
}

fn session(conference: &str, started: bool, peak: usize) -> RecordEvent {
    RecordEvent::Conference(Box::new(ConferenceFacts {
        conference: conference.into(),
        started,
        peak_participants: peak,
        at: std::time::Instant::now(),
    }))
}

fn conference_sessions_are_recorded_from_start_to_end(db: &Subject<'_>) {
    let store = (db.open)();
    let writer = store.record_writer().unwrap();
    let before = unix_ms(std::time::SystemTime::now());
    writer.sender.send(session("1234", true, 0)).unwrap();
    writer.sender.send(session("5678", true, 0)).unwrap();
    writer.flush();
    let running = store.conference_records(&all()).unwrap();
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|r| r.ended_at.is_none()
        && r.reason.is_none()
        && r.peak_participants.is_none()
        && r.started_at >= before));
    writer.sender.send(session("1234", false, 3)).unwrap();
    // Started again after its end: a second session.
    writer.sender.send(session("1234", true, 0)).unwrap();
    writer.flush();
    let of_1234 = store
        .conference_records(&RecordFilter {
            conference: Some("1234".into()),
            ..all()
        })
        .unwrap();
    assert_eq!(of_1234.len(), 2, "{of_1234:?}");
    // Newest first: the running one, then the one that ended.
    let (now, ended) = (&of_1234[0], &of_1234[1]);
    assert!(now.ended_at.is_none());
    assert_eq!(ended.reason.as_deref(), Some("ended"));
    assert_eq!(ended.peak_participants, Some(3));
    assert!(ended.ended_at.unwrap() >= ended.started_at);
    let node = if db.postgres { "node-a" } else { "" };
    assert!(of_1234.iter().all(|r| r.node == node), "{of_1234:?}");
    // Paged and by time like the legs' records.
    let page = store
        .conference_records(&RecordFilter {
            since: Some(before),
            limit: 1,
            offset: 1,
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(page.len(), 1);
    // The legs' records are not among them, nor they among the legs'.
    assert!(store.records(&all()).unwrap().is_empty());
    // Pruned once ended and old; running ones are kept.
    assert_eq!(store.prune_records(i64::MAX).unwrap(), 1);
    assert_eq!(store.conference_records(&all()).unwrap().len(), 2);
}

fn a_session_left_open_is_closed_as_abandoned(db: &Subject<'_>) {
    let store = (db.open)();
    let writer = store.record_writer().unwrap();
    writer.sender.send(session("1234", true, 0)).unwrap();
    writer.flush();
    drop((writer, store));
    let store = (db.open)();
    let rows = store.conference_records(&all()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].reason.as_deref(), Some("abandoned"));
    assert!(rows[0].ended_at.is_some());
}

/// A data directory of the schema before origins and sessions (version 4) opens, its records
/// kept with no origin, and takes both.
#[test]
fn a_version_four_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("confab.db")).unwrap();
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL);")
            .unwrap();
        for (i, sql) in sqlite::MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_version VALUES (?1)", [i as i64 + 1])
                .unwrap();
        }
        conn.execute(
            "INSERT INTO records (conference, participant, display_name, uri, role, transport,
             srtp, joined_at, left_at) VALUES ('4321', 'p1', 'Old', 'sip:old@x', 'attendee',
             'rtp', 0, 5, 6)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let old = store.records(&all()).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!((&old[0].user_agent, &old[0].remote), (&None, &None));
    let writer = store.record_writer().unwrap();
    writer.sender.send(session("4321", true, 0)).unwrap();
    writer.flush();
    assert_eq!(store.conference_records(&all()).unwrap().len(), 1);
}

/// A PostgreSQL database of the schema before origins and sessions (version 2) is migrated
/// by the first node that connects, its records kept with no origin.
#[test]
fn on_postgresql_a_version_two_database_is_migrated() {
    let Some(server) = postgres_server() else {
        return;
    };
    let url = server.create_database("v2").unwrap();
    let old = format!(
        "CREATE TABLE schema_version (version BIGINT NOT NULL);
         INSERT INTO schema_version VALUES (1), (2);
         {} {}
         INSERT INTO records (node, conference, participant, display_name, uri, role, transport,
           srtp, joined_at, left_at) VALUES ('node-a', '4321', 'p1', 'Old', 'sip:old@x',
           'attendee', 'rtp', false, 5, 6);",
        postgres::MIGRATIONS[0],
        postgres::MIGRATIONS[1]
    );
    server.psql("v2", &old).unwrap();
    let store = Store::connect(&postgres_config(url), "node-a").unwrap();
    let rows = store.records(&all()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0].user_agent, &rows[0].remote), (&None, &None));
    let writer = store.record_writer().unwrap();
    writer.sender.send(session("4321", true, 0)).unwrap();
    writer.flush();
    assert_eq!(store.conference_records(&all()).unwrap().len(), 1);
}
