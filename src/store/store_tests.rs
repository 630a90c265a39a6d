//! Storage tests on real databases: each scenario runs on SQLite in a temporary directory and
//! on PostgreSQL (a throwaway server on loopback, a fresh database per scenario); the tests of
//! one database's own failures follow the scenarios.

use super::*;
use crate::conference::ParticipantId;
use confab_loadtest::postgres::{PostgresUnavailable, TestPostgres};

/// The store under a scenario: `open` opens it (again: the same database).
struct Subject<'a> {
    open: &'a dyn Fn() -> Store,
    postgres: bool,
}

type Scenario = fn(&Subject<'_>);

fn on_sqlite(scenario: Scenario) {
    let dir = tempfile::tempdir().unwrap();
    scenario(&Subject {
        open: &|| Store::open(dir.path()).unwrap(),
        postgres: false,
    });
}

/// A throwaway PostgreSQL server, or `None` (and SKIP) where none is installed outside CI.
fn postgres_server() -> Option<TestPostgres> {
    match TestPostgres::start() {
        Ok(server) => Some(server),
        Err(PostgresUnavailable::NotInstalled)
            if std::env::var_os("CONFAB_REQUIRE_POSTGRES").is_none() =>
        {
            eprintln!("SKIP: PostgreSQL is not installed");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn postgres_config(url: String) -> crate::config::StorageConfig {
    crate::config::StorageConfig {
        url: Some(url),
        ..crate::config::StorageConfig::default()
    }
}

fn on_postgres(scenarios: &[(&str, Scenario)]) {
    let Some(server) = postgres_server() else {
        return;
    };
    for (i, (name, scenario)) in scenarios.iter().enumerate() {
        eprintln!("PostgreSQL: {name}");
        let config = postgres_config(server.create_database(&format!("s{i}")).unwrap());
        scenario(&Subject {
            open: &|| Store::connect(&config, "node-a").unwrap(),
            postgres: true,
        });
    }
}

/// Declares each scenario as a SQLite test, and one test that runs them all on PostgreSQL.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $scenario() {
                    super::on_sqlite(super::$scenario)
                }
            )*
        }

        #[test]
        fn every_scenario_on_postgresql() {
            on_postgres(&[$((stringify!($scenario), $scenario as Scenario)),*]);
        }
    };
}

on_both!(
    conferences_survive_a_reopen,
    a_lock_and_settings_are_written_apart_and_never_bring_a_deleted_conference_back,
    ten_thousand_legs_give_ten_thousand_rows,
    records_left_open_by_a_crash_are_closed_as_abandoned,
    a_record_the_database_refuses_does_not_hold_back_the_others,
    old_closed_records_are_pruned_and_open_ones_kept,
    a_legs_facts_become_its_row_stamped_when_they_happened,
    an_unknown_srtp_policy_is_read_as_required,
    pending_deliveries_survive_a_reopen_as_last_saved,
    a_thousand_deliveries_are_saved_in_one_batch,
);

#[path = "webhook_deliveries_tests.rs"]
mod webhook_deliveries;
use webhook_deliveries::{
    a_thousand_deliveries_are_saved_in_one_batch, pending_deliveries_survive_a_reopen_as_last_saved,
};

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
        entry_exit: crate::conference::roster::EntryExit::Tones,
        srtp: Some(crate::config::SrtpPolicy::Required),
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

fn conferences_survive_a_reopen(db: &Subject<'_>) {
    let store = (db.open)();
    store.save_conference(&conference("1234")).unwrap();
    let mut other = conference("5678");
    other.passcode = None;
    other.attendees.clear();
    other.created_at += 1;
    other.entry_exit = crate::conference::roster::EntryExit::Off;
    other.srtp = None;
    store.save_conference(&other).unwrap();
    drop(store);
    let store = (db.open)();
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

fn a_lock_and_settings_are_written_apart_and_never_bring_a_deleted_conference_back(
    db: &Subject<'_>,
) {
    let store = (db.open)();
    let mut c = conference("4321");
    c.passcode = Some("1111".into());
    store.save_conference(&c).unwrap();
    // A PATCH of the passcode meanwhile is kept: the lock writes its column only.
    let mut patched = c.clone();
    patched.passcode = Some("2222".into());
    store.save_conference(&patched).unwrap();
    assert!(store.set_locked("4321", true).unwrap());
    let stored = store.conference("4321").unwrap().unwrap();
    assert!(stored.locked);
    assert_eq!(stored.passcode.as_deref(), Some("2222"));
    // A PATCH that does not set the lock, read before the lock was made: the lock stays.
    let mut read_before = patched.clone();
    read_before.max_participants = 7;
    assert!(store.update_settings(&read_before).unwrap());
    let stored = store.conference("4321").unwrap().unwrap();
    assert!(stored.locked);
    assert_eq!(stored.max_participants, 7);
    assert!(store.set_locked("4321", false).unwrap());
    assert!(!store.conference("4321").unwrap().unwrap().locked);
    // Deleted: a late keypad lock does not make it again.
    assert!(store.delete_conference("4321").unwrap());
    assert!(!store.set_locked("4321", true).unwrap());
    assert!(!store.update_settings(&read_before).unwrap());
    assert_eq!(store.conference("4321").unwrap(), None);
}

fn ten_thousand_legs_give_ten_thousand_rows(db: &Subject<'_>) {
    let store = (db.open)();
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

fn records_left_open_by_a_crash_are_closed_as_abandoned(db: &Subject<'_>) {
    let store = (db.open)();
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
    let store = (db.open)();
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

fn impatient() -> records::Patience {
    records::Patience {
        busy: std::time::Duration::from_millis(20),
        retry: std::time::Duration::from_millis(50),
        max_retry: std::time::Duration::from_millis(200),
    }
}

/// Polls until the store lists `n` closed records (or five seconds pass).
fn closed_records(store: &Store, n: usize) -> Vec<Record> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let all = store
            .records(&RecordFilter {
                limit: 1000,
                ..RecordFilter::default()
            })
            .unwrap_or_default();
        let closed: Vec<Record> = all.into_iter().filter(|r| r.left_at.is_some()).collect();
        if closed.len() >= n || std::time::Instant::now() > deadline {
            return closed;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn one_call(writer: &records::RecordWriter, p: u64) {
    writer
        .sender
        .send(RecordEvent::Open {
            participant: ParticipantId(p),
            record: Box::new(record("1234", p, 10)),
        })
        .unwrap();
    writer
        .sender
        .send(RecordEvent::Close {
            participant: ParticipantId(p),
            record: Box::new(Record {
                left_at: Some(20),
                reason: Some("hangup".into()),
                ..record("1234", p, 10)
            }),
        })
        .unwrap();
}

#[test]
fn records_wait_out_a_locked_database_and_are_written_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writer = store.record_writer_with(impatient()).unwrap();
    // Another process holds the database.
    let path = store.sqlite.as_ref().unwrap().path().to_owned();
    let other = rusqlite::Connection::open(path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let errors = STORAGE_ERRORS.load(std::sync::atomic::Ordering::Relaxed);
    one_call(&writer, 1);
    one_call(&writer, 2);
    // The flush answers after a failed attempt instead of hanging.
    writer.flush();
    assert!(STORAGE_ERRORS.load(std::sync::atomic::Ordering::Relaxed) > errors);
    other.execute_batch("ROLLBACK").unwrap();
    // Released: what was kept is written, each record opened and closed once.
    let closed = closed_records(&store, 2);
    assert_eq!(closed.len(), 2, "{closed:?}");
    assert!(closed.iter().all(|r| r.reason.as_deref() == Some("hangup")));
}

#[test]
fn records_wait_out_a_full_disk_and_are_written_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writer = store.record_writer_with(impatient()).unwrap();
    // The writer's disk is full: its database may not grow by a page.
    let pages: i64 = (store.sqlite.as_ref().unwrap())
        .with(|c| c.query_row("PRAGMA page_count", [], |r| r.get(0)))
        .unwrap();
    writer
        .sender
        .send(RecordEvent::Sql(format!("PRAGMA max_page_count = {pages}")))
        .unwrap();
    let errors = STORAGE_ERRORS.load(std::sync::atomic::Ordering::Relaxed);
    // More than any free room in the pages it has.
    for p in 1..=500 {
        one_call(&writer, p);
    }
    writer.flush();
    assert!(STORAGE_ERRORS.load(std::sync::atomic::Ordering::Relaxed) > errors);
    // The writer takes what has come in batches; a first small batch (a busy machine) may
    // fit in the free room of the pages there are, and is written. Not all of them.
    let written = closed_records(&store, 0).len();
    assert!(written < 500, "{written} of 500 written on a full disk");
    // Space comes back: every call's record is written.
    writer
        .sender
        .send(RecordEvent::Sql("PRAGMA max_page_count = 1000000".into()))
        .unwrap();
    let closed = closed_records(&store, 500);
    assert_eq!(closed.len(), 500);
}

fn a_record_the_database_refuses_does_not_hold_back_the_others(db: &Subject<'_>) {
    let store = (db.open)();
    let writer = store.record_writer_with(impatient()).unwrap();
    // One record the database will never take (a constraint, not the disk or a lock).
    let trigger = if db.postgres {
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.participant = 'p666' THEN RAISE EXCEPTION 'refused'; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION refuse()"
    } else {
        "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.participant = 'p666'
         BEGIN SELECT RAISE(ABORT, 'refused'); END"
    };
    writer
        .sender
        .send(RecordEvent::Sql(trigger.into()))
        .unwrap();
    one_call(&writer, 1);
    one_call(&writer, 666);
    one_call(&writer, 2);
    writer.flush();
    let closed = closed_records(&store, 2);
    let mut who: Vec<_> = closed.iter().map(|r| r.participant.clone()).collect();
    who.sort();
    assert_eq!(who, ["p1", "p2"]);
}

fn old_closed_records_are_pruned_and_open_ones_kept(db: &Subject<'_>) {
    let store = (db.open)();
    let writer = store.record_writer().unwrap();
    // Two calls long ago (one still open), one recent.
    for (p, joined) in [(1u64, 1_000i64), (3, 5_000_000)] {
        writer
            .sender
            .send(RecordEvent::Close {
                participant: ParticipantId(p),
                record: Box::new(Record {
                    left_at: Some(joined + 10),
                    reason: Some("hangup".into()),
                    ..record("1234", p, joined)
                }),
            })
            .unwrap();
    }
    writer
        .sender
        .send(RecordEvent::Open {
            participant: ParticipantId(2),
            record: Box::new(record("1234", 2, 2_000)),
        })
        .unwrap();
    writer.flush();
    assert_eq!(store.prune_records(1_000_000).unwrap(), 1);
    let mut left: Vec<_> = store
        .records(&RecordFilter {
            limit: 10,
            ..RecordFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.participant)
        .collect();
    left.sort();
    assert_eq!(left, ["p2", "p3"]);
}

fn a_legs_facts_become_its_row_stamped_when_they_happened(db: &Subject<'_>) {
    use crate::conference::{DisconnectReason, Role};
    use crate::media::codec::Codec;
    use crate::media::leg::LegStats;
    use std::time::{Duration, Instant, SystemTime};

    let store = (db.open)();
    let writer = store.record_writer().unwrap();
    let now = Instant::now();
    let wall_now = unix_ms(SystemTime::now());
    let mut facts = LegFacts {
        conference: "4321".into(),
        display_name: "Bea".into(),
        uri: "sip:bea@x".into(),
        role: Role::Leader,
        stats: Some(LegStats {
            codec: Some(Codec::G722),
            srtp: true,
            packets_in: 900,
            packets_out: 950,
            packets_lost: 12,
            mos: 4.1,
            ..LegStats::default()
        }),
        reason: None,
        sip_status: None,
        // Joined ten minutes before the writer heard of it.
        at: now.checked_sub(Duration::from_secs(600)).unwrap(),
        origin: None,
    };
    let p = ParticipantId(7);
    let send = |open, facts: &LegFacts| {
        writer
            .sender
            .send(RecordEvent::Leg {
                participant: p,
                open,
                facts: Box::new(facts.clone()),
            })
            .unwrap();
    };
    send(true, &facts);
    facts.at = now;
    facts.reason = Some(DisconnectReason::Hangup);
    send(false, &facts);
    writer.flush();
    let all = RecordFilter {
        limit: 10,
        ..RecordFilter::default()
    };
    let rows = store.records(&all).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (
            r.conference.as_str(),
            r.participant.as_str(),
            r.role.as_str()
        ),
        ("4321", p.to_string().as_str(), "leader")
    );
    assert_eq!(
        (r.transport.as_str(), r.codec.as_deref()),
        ("srtp", Some("G722"))
    );
    assert_eq!(
        (r.packets_in, r.packets_out, r.packets_lost),
        (900, 950, 12)
    );
    assert_eq!(r.reason.as_deref(), Some("hangup"));
    let joined_ago = wall_now - r.joined_at;
    assert!((599_000..=601_000).contains(&joined_ago), "{joined_ago} ms");
    let left = r.left_at.unwrap();
    assert!((left - wall_now).abs() <= 1_000, "{left} vs {wall_now}");
}

/// A data directory written before `entry_exit` was stored (schema version 1) opens, keeps
/// its conferences, and gives them `off`.
#[test]
fn a_version_one_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("confab.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (1);",
        )
        .unwrap();
        conn.execute_batch(sqlite::MIGRATIONS[0]).unwrap();
        conn.execute(
            "INSERT INTO conferences (id, name, access, attendees, locked, max_participants,
             wait_for_leader, created_at) VALUES ('4321', 'Old', 'anonymous', '', 0, 0, 1, 5)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let old = store.conference("4321").unwrap().unwrap();
    assert_eq!(old.entry_exit, crate::conference::roster::EntryExit::Off);
    assert_eq!(old.srtp, None, "the bridge's policy until one is set");
    assert!(old.wait_for_leader);
    let mut now = old.clone();
    now.entry_exit = crate::conference::roster::EntryExit::Tones;
    now.srtp = Some(crate::config::SrtpPolicy::Off);
    store.save_conference(&now).unwrap();
    assert_eq!(store.conference("4321").unwrap(), Some(now));
}

/// An `srtp` this version does not know (a newer one wrote it) is read as the strictest.
fn an_unknown_srtp_policy_is_read_as_required(db: &Subject<'_>) {
    let store = (db.open)();
    store.save_conference(&conference("2468")).unwrap();
    let writer = store.record_writer().unwrap();
    writer
        .sender
        .send(RecordEvent::Sql(
            "UPDATE conferences SET srtp = 'dtls-maybe'".into(),
        ))
        .unwrap();
    writer.flush();
    let read = store.conference("2468").unwrap().unwrap();
    assert_eq!(read.srtp, Some(crate::config::SrtpPolicy::Required));
}

#[path = "placement_tests.rs"]
mod placement;

#[path = "postgres_tests.rs"]
mod postgres_only;

#[path = "dispatcher_tests.rs"]
mod dispatcher;

#[path = "record_kinds_tests.rs"]
mod record_kinds;
