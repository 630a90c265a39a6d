//! Nodes on one PostgreSQL behind Kamailio, which reads its dispatcher set from the same
//! database (deploy/kamailio/kamailio.cfg with WITH_DB): the nodes list themselves as they
//! start and take themselves out as they drain; the proxy hashes each meeting to a node, and a
//! node that does not hold the meeting answers 302 with the owner, which the proxy follows.
//! Thirty meetings keep each its callers on one node while a fourth node joins, an owner
//! drains and a node dies; a draining owner keeps taking its meetings' latecomers and gets no
//! new meeting; a dead node's callers who redial are together again on a new owner once its
//! lease ran out; every call's record is in PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use confab_loadtest::postgres::TestPostgres;

use crate::cluster::{metric, postgres};
use crate::support;
use crate::support::kamailio::{Kamailio, calls, finished_ok, live, require_module, wait_total};
use crate::support::server::{Server, free_port, http_raw};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
/// `storage.lease_secs` of every node.
const LEASE: Duration = Duration::from_secs(3);

fn start_node(work: &Path, url: &str, name: &str) -> Server {
    let lease = LEASE.as_secs().to_string();
    let args = [
        "--storage-url",
        url,
        "--storage-node",
        name,
        "--storage-lease-secs",
        &lease,
        "--storage-dispatcher-set",
        "1",
        // SIPp's callers send no RTP: no media timeout while they hold.
        "--media-timeout-secs",
        "120",
    ];
    let sip = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    Server::start_on(&work.join(name), None, sip, &args)
}

/// The nodes in Kamailio's set 1, one name per line.
fn listed(pg: &TestPostgres) -> String {
    pg.psql(
        "dispatch",
        "SELECT description FROM dispatcher WHERE setid = 1 ORDER BY description",
    )
    .unwrap()
}

/// Polls `what` every 200 ms until it holds (at most `within`).
fn wait_until(within: Duration, why: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !what() {
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node (its name) holding each meeting's `want` live participants, failing when a
/// meeting is split or short.
fn owners(nodes: &[(&str, &Server)], meetings: &[&str], want: usize) -> BTreeMap<String, String> {
    let seen: Vec<_> = nodes.iter().map(|(_, n)| live(n, meetings)).collect();
    meetings
        .iter()
        .map(|m| {
            let counts: Vec<usize> = seen.iter().map(|s| s[*m]).collect();
            let on: Vec<usize> = (0..nodes.len()).filter(|i| counts[*i] > 0).collect();
            assert!(
                on.len() == 1 && counts[on[0]] == want,
                "meeting {m}: {counts:?} live on the nodes, {want} wanted on one"
            );
            (m.to_string(), nodes[on[0]].0.to_owned())
        })
        .collect()
}

/// Creates meetings through `through` and waits until every node knows them.
fn create(through: &Server, nodes: &[(&str, &Server)], meetings: &[&str]) {
    for m in meetings {
        let (s, v) = through.call(
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
            nodes.iter().all(|(_, n)| {
                meetings
                    .iter()
                    .all(|m| n.call("GET", &format!("/v1/conferences/{m}"), None).0 == 200)
            })
        },
    );
}

fn count(pg: &TestPostgres, sql: &str) -> usize {
    pg.psql("dispatch", sql).unwrap().trim().parse().unwrap()
}

#[test]
fn nodes_behind_kamailio_keep_every_meeting_on_one_node() {
    if !support::require(&["kamailio", "sipp"]) || !require_module("db_postgres") {
        return;
    }
    let _turn = support::exclusive();
    let Some(pg) = postgres() else {
        return;
    };
    let url = pg.create_database("dispatch").unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut servers: Vec<Server> = NAMES[..3]
        .iter()
        .map(|name| start_node(work.path(), &url, name))
        .collect();
    // Each node lists itself within a renewal (a second here).
    wait_until(
        Duration::from_secs(10),
        "the nodes did not list themselves",
        || listed(&pg) == "a\nb\nc\n",
    );
    let kamailio = Kamailio::start_with(
        work.path(),
        "",
        &["WITH_DB".to_owned(), format!("DBURL=\"{url}\"")],
    );
    // Its first reload and probes.
    std::thread::sleep(Duration::from_secs(3));

    let ids: Vec<String> = (0..30).map(|i| format!("{}", 6100 + 7 * i)).collect();
    let meetings: Vec<&str> = ids.iter().map(String::as_str).collect();
    {
        let nodes: Vec<(&str, &Server)> = NAMES.iter().copied().zip(&servers).collect();
        create(&servers[0], &nodes, &meetings);
    }

    // 1. Two callers per meeting through the proxy: each meeting on one node, the meetings
    //    spread over the nodes.
    let twice: Vec<&str> = meetings.iter().flat_map(|m| [*m, *m]).collect();
    let first = calls(work.path(), kamailio.port, &twice, Duration::from_secs(30));
    let owner = {
        let nodes: Vec<(&str, &Server)> = NAMES.iter().copied().zip(&servers).collect();
        wait_total(&servers.iter().collect::<Vec<_>>(), &meetings, 60);
        owners(&nodes, &meetings, 2)
    };
    let spread: BTreeSet<&String> = owner.values().collect();
    assert!(spread.len() >= 2, "every meeting on one node: {owner:?}");
    let index = |name: &str| NAMES.iter().position(|n| *n == name).unwrap();

    // 2. A WHIP join at a node that does not run the meeting is sent to the owner's API.
    for (i, m) in meetings.iter().enumerate() {
        let owns = index(&owner[*m]);
        let at = (owns + 1 + i % 2) % 3;
        let (status, head, body) = http_raw(
            servers[at].api,
            "POST",
            &format!("/v1/conferences/{m}/whip"),
            Some("v=0\r\n"),
            None,
            &[("Content-Type", "application/sdp")],
        );
        assert_eq!(status, 307, "{head}\n{body}");
        let location = format!(
            "location: http://{}/v1/conferences/{m}/whip",
            servers[owns].api
        );
        assert!(head.contains(&location), "{head}");
    }

    // 3. A fourth node joins mid-run: it lists itself, and the proxy's hash changes.
    servers.push(start_node(work.path(), &url, "d"));
    wait_until(Duration::from_secs(10), "d did not list itself", || {
        listed(&pg) == "a\nb\nc\nd\n"
    });
    // 4. And the owner of the first meeting drains: it leaves the set, keeps its calls.
    let drained = index(&owner[meetings[0]]);
    let (s, _) = servers[drained].call("POST", "/v1/admin/drain", None);
    assert_eq!(s, 202);
    let others: String = NAMES
        .iter()
        .filter(|n| **n != NAMES[drained])
        .map(|n| format!("{n}\n"))
        .collect();
    wait_until(
        Duration::from_secs(10),
        "the drained node is still listed",
        || listed(&pg) == others,
    );
    // The proxy's next reload (every 2 s).
    std::thread::sleep(Duration::from_secs(3));

    // 5. One more caller per meeting: the hash over the new set sends many to nodes that do
    //    not run their meeting (the new node among them); those answer 302 with the owner, the
    //    proxy follows, and every meeting is still whole on its owner, the drained one's too.
    let latecomers = calls(
        work.path(),
        kamailio.port,
        &meetings,
        Duration::from_secs(8),
    );
    {
        let nodes: Vec<(&str, &Server)> = NAMES.iter().copied().zip(&servers).collect();
        wait_total(&servers.iter().collect::<Vec<_>>(), &meetings, 90);
        assert_eq!(owners(&nodes, &meetings, 3), owner, "a meeting moved");
    }
    assert_eq!(metric(&servers[3], "confab_placement_owned_meetings"), 0.0);
    assert!(
        metric(&servers[3], "confab_placement_redirects_total") > 0.0,
        "the new node sent no caller to an owner"
    );
    let log = std::fs::read_to_string(work.path().join("kamailio.log")).unwrap();
    assert!(
        log.contains(&format!("meeting {} runs at sip:", meetings[0])),
        "the proxy did not follow a redirect to the drained owner"
    );

    // 6. New meetings start on the live nodes, not on the draining one.
    let fresh: Vec<String> = (0..6).map(|i| format!("{}", 6900 + i)).collect();
    let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
    {
        let nodes: Vec<(&str, &Server)> = NAMES.iter().copied().zip(&servers).collect();
        create(&servers[0], &nodes, &fresh);
    }
    let new = calls(work.path(), kamailio.port, &fresh, Duration::from_secs(3));
    let seen = wait_total(&servers.iter().collect::<Vec<_>>(), &fresh, 6);
    assert!(
        seen[drained].values().all(|n| *n == 0),
        "a new meeting started on the draining node: {seen:?}"
    );
    finished_ok(new);
    finished_ok(latecomers);
    finished_ok(first);
    wait_total(&servers.iter().collect::<Vec<_>>(), &meetings, 0);
    // Emptied meetings give their leases back after two renewals.
    wait_until(
        Duration::from_secs(10),
        "leases of empty meetings kept",
        || {
            servers
                .iter()
                .map(|s| metric(s, "confab_placement_owned_meetings"))
                .sum::<f64>()
                == 0.0
        },
    );

    // 7. A node dies with calls up: once its lease ran out, its callers who redial are
    //    together again, each meeting on one live node.
    let doomed = calls(work.path(), kamailio.port, &twice, Duration::from_secs(40));
    let owner = {
        let nodes: Vec<(&str, &Server)> = NAMES.iter().copied().zip(&servers).collect();
        wait_total(&servers.iter().collect::<Vec<_>>(), &meetings, 60);
        owners(&nodes, &meetings, 2)
    };
    let victim = (0..4)
        .filter(|i| *i != drained)
        .max_by_key(|i| owner.values().filter(|o| **o == NAMES[*i]).count())
        .unwrap();
    let lost: Vec<&str> = meetings
        .iter()
        .copied()
        .filter(|m| owner[*m] == NAMES[victim])
        .collect();
    assert!(!lost.is_empty(), "{owner:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(servers[victim].pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    std::thread::sleep(LEASE + Duration::from_millis(500));
    let lost_twice: Vec<&str> = lost.iter().flat_map(|m| [*m, *m]).collect();
    let redial = calls(
        work.path(),
        kamailio.port,
        &lost_twice,
        Duration::from_secs(5),
    );
    let alive: Vec<(&str, &Server)> = NAMES
        .iter()
        .copied()
        .zip(&servers)
        .filter(|(n, _)| *n != NAMES[victim])
        .collect();
    let alive_servers: Vec<&Server> = alive.iter().map(|(_, s)| *s).collect();
    wait_total(&alive_servers, &lost, lost_twice.len());
    let taken = owners(&alive, &lost, 2);
    let together = killed.elapsed();
    assert!(
        together < LEASE + Duration::from_secs(10),
        "together again only after {together:?}"
    );
    assert!(taken.values().all(|n| *n != NAMES[drained]), "{taken:?}");
    finished_ok(redial);
    drop(doomed);

    // 8. Records: the dead node's calls closed as node-lost by the nodes that took its
    //    meetings over; every other call of the run closed, under the node that took it.
    wait_until(
        Duration::from_secs(10),
        "the dead node's records are open",
        || {
            count(
                &pg,
                "SELECT count(*) FROM records WHERE reason = 'node-lost'",
            ) == 2 * lost.len()
        },
    );
    let nodes_with_records = count(&pg, "SELECT count(DISTINCT node) FROM records");
    assert!(
        nodes_with_records >= 3,
        "records of {nodes_with_records} nodes"
    );
    assert!(
        count(
            &pg,
            "SELECT count(*) FROM records WHERE left_at IS NOT NULL"
        ) >= 96 + lost.len() * 2
    );
    drop(kamailio);
    drop(servers);
}
