//! Kamailio's dispatcher table as the nodes keep it, on a throwaway PostgreSQL.

use super::*;

fn node(name: &str, sip: &str) -> NodeAddress {
    NodeAddress {
        node: name.into(),
        sip: sip.into(),
        api: format!("http://{sip}"),
    }
}

/// The rows as `setid destination description`, in order.
fn rows(server: &TestPostgres, db: &str) -> Vec<String> {
    let out = server
        .psql(
            db,
            "SELECT setid || ' ' || destination || ' ' || description FROM dispatcher
             ORDER BY description, id",
        )
        .unwrap();
    out.lines().map(str::to_owned).collect()
}

#[test]
fn each_node_lists_itself_replaces_its_old_row_and_leaves_when_asked() {
    let Some(mut server) = postgres_server() else {
        return;
    };
    let url = server.create_database("dispatch").unwrap();
    let mut a = DispatcherTable::new(&url, 1, &node("a", "127.0.0.2:5060")).unwrap();
    let mut b = DispatcherTable::new(&url, 1, &node("b", "127.0.0.3:5060")).unwrap();
    a.keep(true).unwrap();
    b.keep(true).unwrap();
    // Again: nothing doubles.
    a.keep(true).unwrap();
    assert_eq!(
        rows(&server, "dispatch"),
        ["1 sip:127.0.0.2:5060 a", "1 sip:127.0.0.3:5060 b"]
    );
    // The version row db_postgres checks before it reads the table.
    let version = server
        .psql(
            "dispatch",
            "SELECT table_version FROM version WHERE table_name = 'dispatcher'",
        )
        .unwrap();
    assert_eq!(version.trim(), "4");

    // a starts again elsewhere, in another set: its old row goes.
    let mut moved = DispatcherTable::new(&url, 2, &node("a", "127.0.0.4:5070")).unwrap();
    moved.keep(true).unwrap();
    assert_eq!(
        rows(&server, "dispatch"),
        ["2 sip:127.0.0.4:5070 a", "1 sip:127.0.0.3:5060 b"]
    );
    // A row deleted by hand comes back at the next round.
    server
        .psql("dispatch", "DELETE FROM dispatcher WHERE description = 'b'")
        .unwrap();
    b.keep(true).unwrap();
    assert_eq!(rows(&server, "dispatch").len(), 2);

    // a drains: out of the set; b stays.
    moved.keep(false).unwrap();
    assert_eq!(rows(&server, "dispatch"), ["1 sip:127.0.0.3:5060 b"]);

    // The database goes away: an error, and the next round after it is back works.
    server.stop();
    assert!(moved.keep(true).is_err());
    server.start_again().unwrap();
    moved.keep(true).unwrap();
    assert_eq!(rows(&server, "dispatch").len(), 2);
}

#[test]
fn kamailios_own_schema_is_kept_as_it_is() {
    let Some(server) = postgres_server() else {
        return;
    };
    let url = server.create_database("kamailio").unwrap();
    // The schema Kamailio's package ships, where it is installed; else ours made first, as
    // a second node would find it.
    let shipped = ["standard", "dispatcher"]
        .map(|t| std::fs::read_to_string(format!("/usr/share/kamailio/postgres/{t}-create.sql")));
    match shipped {
        [Ok(standard), Ok(dispatcher)] => {
            server.psql("kamailio", &standard).unwrap();
            server.psql("kamailio", &dispatcher).unwrap();
            server
                .psql(
                    "kamailio",
                    "INSERT INTO dispatcher (setid, destination, description)
                     VALUES (1, 'sip:192.0.2.9:5060', 'by-hand')",
                )
                .unwrap();
        }
        _ => {
            eprintln!("(Kamailio's PostgreSQL schema is not installed: ours only)");
            let mut first =
                DispatcherTable::new(&url, 1, &node("first", "127.0.0.9:5060")).unwrap();
            first.keep(true).unwrap();
        }
    }
    let mut a = DispatcherTable::new(&url, 1, &node("a", "127.0.0.2:5060")).unwrap();
    a.keep(true).unwrap();
    let rows = rows(&server, "kamailio");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.contains(&"1 sip:127.0.0.2:5060 a".to_owned()),
        "{rows:?}"
    );
    let versions = server
        .psql(
            "kamailio",
            "SELECT count(*) FROM version WHERE table_name = 'dispatcher'",
        )
        .unwrap();
    assert_eq!(versions.trim(), "1");
}
