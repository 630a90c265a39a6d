//! What only PostgreSQL has: several nodes on one database, a database that goes away.

use super::*;

#[test]
fn on_postgresql_a_node_closes_only_its_own_open_records() {
    let Some(server) = postgres_server() else {
        return;
    };
    let config = postgres_config(server.create_database("nodes").unwrap());
    let a = Store::connect(&config, "node-a").unwrap();
    let writer = a.record_writer().unwrap();
    writer
        .sender
        .send(RecordEvent::Open {
            participant: ParticipantId(1),
            record: Box::new(record("1234", 1, 10)),
        })
        .unwrap();
    writer.flush();
    let open = |store: &Store| {
        let all = store.records(&RecordFilter {
            limit: 10,
            ..RecordFilter::default()
        });
        all.unwrap().iter().filter(|r| r.left_at.is_none()).count()
    };
    // Another node starting on the same database leaves node-a's call open.
    let b = Store::connect(&config, "node-b").unwrap();
    assert_eq!(open(&b), 1);
    // node-a starting again (it died) closes it.
    drop((writer, a));
    let a = Store::connect(&config, "node-a").unwrap();
    assert_eq!(open(&a), 0);
    let all = a.records(&RecordFilter {
        limit: 10,
        ..RecordFilter::default()
    });
    assert_eq!(all.unwrap()[0].reason.as_deref(), Some("abandoned"));
}

#[test]
fn on_postgresql_nodes_starting_together_migrate_once() {
    let Some(server) = postgres_server() else {
        return;
    };
    let config = postgres_config(server.create_database("together").unwrap());
    let nodes: Vec<_> = (0..4)
        .map(|i| {
            let config = config.clone();
            std::thread::spawn(move || Store::connect(&config, &format!("node-{i}")).map(drop))
        })
        .collect();
    for node in nodes {
        node.join().unwrap().unwrap();
    }
    let versions = server
        .psql(
            "together",
            "SELECT count(*), max(version) FROM schema_version",
        )
        .unwrap();
    let n = postgres::MIGRATIONS.len();
    assert_eq!(versions.trim(), format!("{n}|{n}"));
}

#[test]
fn on_postgresql_records_wait_out_a_database_that_went_away() {
    let Some(mut server) = postgres_server() else {
        return;
    };
    let config = postgres_config(server.create_database("away").unwrap());
    let store = Store::connect(&config, "node-a").unwrap();
    let writer = store.record_writer_with(impatient()).unwrap();
    one_call(&writer, 1);
    writer.flush();
    server.stop();
    assert!(!store.healthy());
    let errors = STORAGE_ERRORS.load(std::sync::atomic::Ordering::Relaxed);
    one_call(&writer, 2);
    one_call(&writer, 3);
    writer.flush();
    assert!(STORAGE_ERRORS.load(std::sync::atomic::Ordering::Relaxed) > errors);
    server.start_again().unwrap();
    // Back: the store's connections are made again, and what was kept is written.
    let closed = closed_records(&store, 3);
    assert_eq!(closed.len(), 3, "{closed:?}");
    // Healthy again within seconds (a connection that broke with the server may take one
    // failed query to be made again; on a loaded machine the first look can come before).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !store.healthy() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(store.healthy());
}

#[test]
fn a_postgresql_that_cannot_be_reached_is_a_clear_error_without_the_password() {
    let config = postgres_config("postgres://confab:hunter2@127.0.0.1:1/confab".into());
    let e = Store::connect(&config, "node-a").unwrap_err().to_string();
    assert!(e.contains("127.0.0.1:1/confab"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let config = postgres_config("postgres://confab@[not-a-host/confab".into());
    let e = Store::connect(&config, "node-a").unwrap_err().to_string();
    assert!(e.contains("storage.url"), "{e}");
}

#[test]
fn on_postgresql_a_meeting_taken_over_closes_the_lost_nodes_calls_in_it() {
    let Some(server) = postgres_server() else {
        return;
    };
    let config = postgres_config(server.create_database("lost").unwrap());
    let a = Store::connect(&config, "node-a").unwrap();
    let writer = a.record_writer().unwrap();
    for (p, meeting) in [(1, "1234"), (2, "5678")] {
        writer
            .sender
            .send(RecordEvent::Open {
                participant: ParticipantId(p),
                record: Box::new(record(meeting, p, 10)),
            })
            .unwrap();
    }
    writer.flush();
    let at = |name: &str| NodeAddress {
        node: name.into(),
        sip: "192.0.2.1:5060".into(),
        api: "http://192.0.2.1:8080".into(),
    };
    a.claim("1234", &at("node-a"), Some(0), 10_000).unwrap();
    let b = Store::connect(&config, "node-b").unwrap();
    let open = || {
        let all = b.records(&RecordFilter {
            limit: 10,
            ..RecordFilter::default()
        });
        let mut open: Vec<String> = all
            .unwrap()
            .into_iter()
            .filter(|r| r.left_at.is_none())
            .map(|r| r.conference)
            .collect();
        open.sort();
        open
    };
    // While node-a's lease lasts, a claim by node-b changes nothing.
    b.claim("1234", &at("node-b"), Some(9_999), 10_000).unwrap();
    assert_eq!(open(), ["1234", "5678"]);
    // Run out: node-b takes the meeting, and node-a's call in it (only that one) is closed.
    assert_eq!(
        b.claim("1234", &at("node-b"), Some(10_000), 10_000)
            .unwrap()
            .owner
            .node,
        "node-b"
    );
    assert_eq!(open(), ["5678"]);
    let lost = b
        .records(&RecordFilter {
            conference: Some("1234".into()),
            limit: 10,
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(lost[0].reason.as_deref(), Some("node-lost"));
    assert_eq!(lost[0].left_at, Some(10_000));
}
