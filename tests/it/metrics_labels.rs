//! `metrics.conference_labels`: off, `/metrics` names no meeting; on, each conference has its
//! series. An API served in-process on 127.0.0.1 (AppState built as `confab serve` builds it).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use confab::conference::Policy;
use support::server::http_raw;

fn scrape_with(labels: bool) -> String {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Arc::new(support::engine(Duration::from_secs(30)));
    let events = engine.broadcast_events().unwrap();
    engine
        .create_conference("8081", Policy::default())
        .wait()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = confab::store::Store::open(data.path()).unwrap();
    // The event hub starts a task: build the state inside the runtime.
    let _inside = runtime.enter();
    let state = confab::api::AppState::new(
        Arc::clone(&engine),
        None,
        store,
        events.subscribe(),
        None,
        3,
        vec![confab::media::codec::Codec::Pcmu],
    )
    .with_conference_labels(labels);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, task) = runtime
        .block_on(confab::api::serve(
            "127.0.0.1:0".parse().unwrap(),
            state,
            None,
            async {
                let _ = stopped.await;
            },
        ))
        .unwrap();
    // The conference reaches its mixer thread's snapshot within a few ticks.
    let mut text = String::new();
    for _ in 0..50 {
        text = http_raw(addr, "GET", "/metrics", None, None, &[]).2;
        if text.contains("confab_conferences 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(text.contains("confab_conferences 1"), "{text}");
    let _ = stop.send(());
    let _ = runtime.block_on(task);
    text
}

#[test]
fn conference_ids_are_labels_only_when_configured() {
    let _turn = support::exclusive();
    let off = scrape_with(false);
    assert!(!off.contains("8081"), "{off}");
    assert!(!off.contains("conference=\""), "{off}");
    let on = scrape_with(true);
    assert!(
        on.contains("confab_conference_participants{conference=\"8081\"} 0"),
        "{on}"
    );
    assert!(
        on.contains("confab_conference_mix_rate_hertz{conference=\"8081\"}"),
        "{on}"
    );
}

#[test]
fn confab_serve_takes_the_setting_from_its_flag() {
    let _turn = support::exclusive();
    for (flag, labelled) in [("false", false), ("true", true)] {
        let data = tempfile::tempdir().unwrap();
        let server = support::server::Server::start(
            data.path(),
            None,
            &["--metrics-conference-labels", flag],
        );
        let (s, v) = server.call("POST", "/v1/conferences", Some(r#"{"id":"8082"}"#));
        assert_eq!(s, 201, "{v}");
        let (_, _, text) = http_raw(server.api, "GET", "/metrics", None, None, &[]);
        assert_eq!(text.contains("8082"), labelled, "{flag}: {text}");
        drop(server);
    }
}
