//! Three nodes on one PostgreSQL behind Kamailio, which reads its dispatcher set from the same
//! database (deploy/kamailio/kamailio.cfg with WITH_DB): the nodes list themselves as they
//! start and take themselves out as they drain; the proxy hashes each meeting to a node, and a
//! node that does not hold the meeting answers 302 with the owner, which the proxy follows.
//! Every meeting's callers end up together on one node, through a drain that changes the hash;
//! a draining owner keeps taking its meetings' latecomers and gets no new meeting; every
//! call's record is in PostgreSQL under the node that took it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::postgres;
use crate::support;
use crate::support::kamailio::{Kamailio, calls, finished_ok, live, require_module, wait_total};
use crate::support::server::{Server, free_port, http_raw};

/// Polls `what` every 200 ms until it holds (at most `within`).
fn wait_until(within: Duration, why: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !what() {
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of a metric's samples in a node's `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let (_, _, text) = http_raw(server.api, "GET", "/metrics", None, None, &[]);
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The node (index) holding each meeting's `want` live participants, failing when a meeting
/// is split or short.
fn owners(nodes: &[Server], meetings: &[&str], want: usize) -> BTreeMap<String, usize> {
    let seen: Vec<_> = nodes.iter().map(|n| live(n, meetings)).collect();
    meetings
        .iter()
        .map(|m| {
            let counts: Vec<usize> = seen.iter().map(|s| s[*m]).collect();
            let on: Vec<usize> = (0..nodes.len()).filter(|i| counts[*i] > 0).collect();
            assert!(
                on.len() == 1 && counts[on[0]] == want,
                "meeting {m}: {counts:?} live on the three nodes, {want} wanted on one"
            );
            (m.to_string(), on[0])
        })
        .collect()
}

#[test]
fn three_nodes_behind_kamailio_keep_each_meeting_together() {
    if !support::require(&["kamailio", "sipp"]) || !require_module("db_postgres") {
        return;
    }
    let _turn = support::exclusive();
    let Some(pg) = postgres() else {
        return;
    };
    let url = pg.create_database("dispatch").unwrap();
    let work = tempfile::tempdir().unwrap();
    let nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let args = [
                "--storage-url",
                &url,
                "--storage-node",
                name,
                "--storage-lease-secs",
                "3",
                "--storage-dispatcher-set",
                "1",
            ];
            let sip = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            Server::start_on(&work.path().join(name), None, sip, &args)
        })
        .collect();
    // Each node lists itself within a renewal (a second here).
    let listed = || {
        pg.psql(
            "dispatch",
            "SELECT description FROM dispatcher WHERE setid = 1 ORDER BY description",
        )
        .unwrap()
    };
    wait_until(
        Duration::from_secs(10),
        "the nodes did not list themselves",
        || listed() == "a\nb\nc\n",
    );
    let kamailio = Kamailio::start_with(
        work.path(),
        "",
        &["WITH_DB".to_owned(), format!("DBURL=\"{url}\"")],
    );
    // Its first reload and probes.
    std::thread::sleep(Duration::from_secs(3));

    // Meetings created through one node; every node learns of them within a renewal.
    let ids: Vec<String> = (0..6).map(|i| format!("{}", 6100 + 13 * i)).collect();
    let meetings: Vec<&str> = ids.iter().map(String::as_str).collect();
    for m in &meetings {
        let (s, v) = nodes[0].call(
            "POST",
            "/v1/conferences",
            Some(&format!(r#"{{"id":"{m}"}}"#)),
        );
        assert_eq!(s, 201, "{v}");
    }
    wait_until(
        Duration::from_secs(10),
        "a node does not know the meetings",
        || {
            nodes.iter().all(|n| {
                meetings
                    .iter()
                    .all(|m| n.call("GET", &format!("/v1/conferences/{m}"), None).0 == 200)
            })
        },
    );

    // 1. Two callers per meeting through the proxy: each meeting on one node.
    let twice: Vec<&str> = meetings.iter().flat_map(|m| [*m, *m]).collect();
    let first = calls(work.path(), kamailio.port, &twice, Duration::from_secs(25));
    wait_total(&nodes.iter().collect::<Vec<_>>(), &meetings, 12);
    let owner = owners(&nodes, &meetings, 2);

    // 2. The owner of the first meeting drains: it leaves the proxy's set, keeps its calls.
    let drained = owner[meetings[0]];
    let (s, _) = nodes[drained].call("POST", "/v1/admin/drain", None);
    assert_eq!(s, 202);
    let others: String = ["a", "b", "c"]
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != drained)
        .map(|(_, n)| format!("{n}\n"))
        .collect();
    wait_until(
        Duration::from_secs(10),
        "the drained node is still listed",
        || listed() == others,
    );
    // The proxy's next reload (every 2 s).
    std::thread::sleep(Duration::from_secs(3));

    // 3. One more caller per meeting: the set changed, so the proxy's hash sends some to
    //    nodes that do not hold their meeting; those answer 302 with the owner, the proxy
    //    follows, and every meeting is still on its one node, the drained one's included.
    let redirects_before: f64 = nodes
        .iter()
        .map(|n| metric(n, "confab_placement_redirects_total"))
        .sum();
    let latecomers = calls(
        work.path(),
        kamailio.port,
        &meetings,
        Duration::from_secs(8),
    );
    wait_total(&nodes.iter().collect::<Vec<_>>(), &meetings, 18);
    assert_eq!(owners(&nodes, &meetings, 3), owner, "a meeting moved");
    let redirects: f64 = nodes
        .iter()
        .map(|n| metric(n, "confab_placement_redirects_total"))
        .sum();
    assert!(
        redirects > redirects_before,
        "the drained node's meeting reached it through a redirect"
    );
    let log = std::fs::read_to_string(work.path().join("kamailio.log")).unwrap();
    assert!(
        log.contains(&format!("meeting {} runs at sip:", meetings[0])),
        "the proxy did not follow a redirect to the drained owner:\n{log}"
    );

    // 4. A new meeting does not start on the draining node.
    let (s, v) = nodes[0].call("POST", "/v1/conferences", Some(r#"{"id":"6999"}"#));
    assert_eq!(s, 201, "{v}");
    wait_until(Duration::from_secs(10), "a node does not know 6999", || {
        nodes
            .iter()
            .all(|n| n.call("GET", "/v1/conferences/6999", None).0 == 200)
    });
    let new = calls(
        work.path(),
        kamailio.port,
        &["6999"],
        Duration::from_secs(3),
    );
    let seen = wait_total(&nodes.iter().collect::<Vec<_>>(), &["6999"], 1);
    assert_eq!(
        seen[drained]["6999"], 0,
        "a new meeting started on the draining node"
    );
    finished_ok(new);
    finished_ok(latecomers);
    finished_ok(first);

    // 5. Every call's record is in PostgreSQL, closed, under the node that took it.
    wait_until(Duration::from_secs(10), "records missing", || {
        pg.psql(
            "dispatch",
            "SELECT count(*) FROM records WHERE left_at IS NOT NULL",
        )
        .unwrap()
        .trim()
            == "19"
    });
    let by_node = pg
        .psql(
            "dispatch",
            "SELECT node || ' ' || count(*) FROM records GROUP BY node ORDER BY node",
        )
        .unwrap();
    for i in owner.values().collect::<std::collections::BTreeSet<_>>() {
        let name = ["a", "b", "c"][*i];
        assert!(
            by_node.lines().any(|l| l.starts_with(&format!("{name} "))),
            "no records of {name}: {by_node}"
        );
    }
    drop(kamailio);
    drop(nodes);
}
