//! The webhook task on a real SQLite store: what a row holds of the receiver, rows an older
//! version stored, and changes the store refused while it was locked or broken.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::webhooks::event::Happening;

/// A path and query that carry tokens, as receivers' URLs often do.
const SECRET_PATH: &str = "/hooks/T0KEN-4f1c?sig=s3cr3t-77";

fn receiver(port: u16) -> (String, Arc<Receiver>) {
    let url = format!("http://127.0.0.1:{port}{SECRET_PATH}");
    let config = WebhookConfig {
        url: url.clone(),
        secret: "a-test-secret-of-thirty-two-bytes-or-more".into(),
        events: vec!["conference.started".into()],
    };
    let r = Receiver::new(&config).unwrap();
    (url, Arc::new(r))
}

fn started(at_ms: i64) -> Occurrence {
    Occurrence {
        at_ms,
        what: Happening::Session {
            conference: Arc::from("4242"),
            started: true,
            peak_participants: 0,
        },
    }
}

/// Another connection to the store's file, as another process would have.
fn other(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("confab.db")).unwrap()
}

fn stored(store: &Store) -> Vec<PendingDelivery> {
    store.pending_deliveries().unwrap()
}

/// Waits up to `within` for `test` to hold of the stored rows.
async fn rows_become(store: &Store, within: Duration, test: impl Fn(&[PendingDelivery]) -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let rows = stored(store);
        if test(&rows) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows as stored: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_row_holds_a_key_of_the_receiver_and_nothing_of_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (url, r) = receiver(9);
    let mut shell = Shell::new(vec![r], None, store.clone());
    shell.take(&started(1));
    let sends = shell.work(now_ms()).await;
    assert_eq!(sends.len(), 1);
    let rows = stored(&store);
    assert_eq!(rows.len(), 1);
    let key = &rows[0].endpoint;
    assert_eq!(*key, receiver_key(&url));
    assert!(key.starts_with("sha256:") && key.len() == 7 + 64, "{key}");
    // Nothing of the URL's path or query anywhere in the database's files.
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        files.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let text = String::from_utf8_lossy(&files);
    assert!(text.contains("conference.started"), "the body is stored");
    for part in ["T0KEN-4f1c", "s3cr3t-77", "/hooks/", "sig="] {
        assert!(!text.contains(part), "{part} is in the database");
    }
}

/// A loopback receiver that answers 200 to one request; the request's bytes.
async fn answering_receiver() -> (u16, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The head, then a body that ends with the JSON's closing brace.
        while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"}")) {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_stored_with_the_plain_url_is_taken_back_under_its_key_and_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (port, got) = answering_receiver().await;
    let (url, r) = receiver(port);
    // As the previous version stored them: the URL whole, for a receiver still configured
    // and for one that is not any more.
    let old = |id: i64, endpoint: &str| PendingDelivery {
        id,
        endpoint: endpoint.into(),
        body: format!(r#"{{"id":"e{id}","type":"conference.started"}}"#),
        created_at: now_ms(),
        first_attempt_at: None,
        attempts: 0,
        next_at: now_ms(),
    };
    store
        .apply_deliveries(&[
            DeliveryChange::Save(old(7, &url)),
            DeliveryChange::Save(old(8, "http://127.0.0.1:9/gone?token=x")),
        ])
        .unwrap();
    let mut shell = Shell::new(vec![Arc::clone(&r)], None, store.clone());
    shell.restore().await;
    assert_eq!(shell.queue.len(), 1);
    // Saved again under the key; the other receiver's row is gone, URL and all.
    let rows = stored(&store);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id, rows[0].endpoint.as_str()), (7, &*r.key));
    assert!(!rows[0].endpoint.contains("T0KEN"), "{}", rows[0].endpoint);
    // And delivered to its receiver, then forgotten.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(shell.run(rx));
    let request = tokio::time::timeout(Duration::from_secs(10), got)
        .await
        .unwrap()
        .unwrap();
    assert!(request.starts_with(&format!("POST {SECRET_PATH} HTTP/1.1")));
    assert!(request.ends_with(r#"{"id":"e7","type":"conference.started"}"#));
    rows_become(&store, Duration::from_secs(5), <[_]>::is_empty).await;
    drop(tx);
}

#[tokio::test]
async fn changes_the_store_refused_are_applied_in_order_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, r) = receiver(9);
    let mut shell = Shell::new(vec![r], None, store.clone());
    shell.take(&started(1));
    let a = shell.work(now_ms()).await.remove(0);
    assert_eq!(stored(&store).len(), 1);
    // The table is gone from under the store (another process renamed it).
    let other = other(dir.path());
    other
        .execute_batch("ALTER TABLE webhook_deliveries RENAME TO away")
        .unwrap();
    shell.take(&started(2));
    let t1 = now_ms();
    let b = shell.work(t1).await.remove(0);
    // `a` is delivered and `b` fails: `a`'s row must go, `b`'s come, rescheduled.
    shell.queue.attempted(t1, a.id, Outcome::Delivered);
    shell.queue.attempted(t1, b.id, Outcome::Failed);
    assert!(shell.work(t1).await.is_empty());
    assert_eq!(shell.unsaved.len(), 2);
    other
        .execute_batch("ALTER TABLE away RENAME TO webhook_deliveries")
        .unwrap();
    assert_eq!(stored(&store).len(), 1, "as it was: {:?}", stored(&store));
    // Nothing new, and the retry is not due: the store is left alone.
    shell.work(t1 + 10).await;
    assert_eq!(stored(&store)[0].id, a.id as i64);
    // Due (2 s after the second failure in a row): what was kept is applied.
    shell.work(t1 + 5_000).await;
    let rows = stored(&store);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].id, rows[0].attempts), (b.id as i64, 1));
    assert_eq!(shell.unsaved.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_changes_are_saved_on_a_timer_when_nothing_new_happens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A receiver that takes the connection and never answers: the attempt stays in
    // progress for its 10 s, and the queue has nothing else to do meanwhile.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_, r) = receiver(listener.local_addr().unwrap().port());
    // Another process holds the database (readers go on: WAL), so the save waits out
    // the store's busy timeout and fails.
    let other = other(dir.path());
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(Shell::new(vec![r], None, store.clone()).run(rx));
    tx.send(started(1)).await.unwrap();
    // A delivery is attempted after its row was tried: the save has failed by now.
    let (_held, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert!(stored(&store).is_empty());
    other.execute_batch("ROLLBACK").unwrap();
    // Saved within the retry's second or so, long before the attempt's end would make the
    // queue save anything new.
    rows_become(&store, Duration::from_secs(6), |rows| rows.len() == 1).await;
    drop(tx);
}

#[tokio::test]
async fn with_no_receiver_configured_any_more_stored_rows_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let row = PendingDelivery {
        id: 3,
        endpoint: format!("http://127.0.0.1:9{SECRET_PATH}"),
        body: "{}".into(),
        created_at: 1,
        first_attempt_at: None,
        attempts: 0,
        next_at: 1,
    };
    store
        .apply_deliveries(&[DeliveryChange::Save(row)])
        .unwrap();
    let (tap, occurrences) = WebhookTap::channel();
    start(&[], store.clone(), &tap, occurrences).unwrap();
    rows_become(&store, Duration::from_secs(5), <[_]>::is_empty).await;
}
