//! The API's engine calls do not take a blocking-pool thread: with that pool busy (storage
//! reads, file work, a slow database), rosters, mutes and ejections are still answered.

use super::*;
use crate::api::test_state::app_state;
use crate::engine::EngineSettings;
use axum::extract::State;
use extract::Path;

fn state(dir: &std::path::Path) -> AppState {
    app_state(
        Store::open(dir).unwrap(),
        EngineSettings::loopback(1, 45_020),
        Vec::new(),
    )
}

#[test]
fn engine_calls_are_answered_while_the_blocking_pool_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    // One blocking-pool thread, and it is busy for longer than the whole test may take.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let busy_for = Duration::from_secs(4);
    runtime.block_on(async {
        let state = state(dir.path());
        state
            .engine
            .create_conference("4242", crate::conference::Policy::default())
            .await
            .unwrap();
        let (p, _) = state
            .engine
            .add_rtp_leg(
                "4242",
                crate::engine::Joiner {
                    display_name: "Ann".into(),
                    uri: "sip:ann@example.com".into(),
                    role: crate::conference::Role::Attendee,
                    identity: None,
                },
                crate::media::leg::LegSpec::new(
                    crate::media::codec::Codec::Pcmu,
                    "127.0.0.1:9".parse().unwrap(),
                ),
            )
            .await
            .unwrap();
        let _pool = tokio::task::spawn_blocking(move || std::thread::sleep(busy_for));
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();

        let cid = "4242".to_owned();
        let roster = participants::list(State(state.clone()), Path(cid.clone()), None)
            .await
            .unwrap();
        let json = serde_json::to_string(&roster.0).unwrap();
        assert!(json.contains("Ann"), "{json}");
        let pid = p.to_string();
        let muted = participants::act(
            State(state.clone()),
            Path((cid.clone(), pid.clone(), "mute".into())),
        )
        .await
        .unwrap();
        let json = serde_json::to_string(&muted.0).unwrap();
        assert!(json.contains("\"muted\":true"), "{json}");
        let ejected = participants::eject(State(state.clone()), Path((cid, pid)))
            .await
            .unwrap();
        assert_eq!(ejected, StatusCode::NO_CONTENT);

        // Before, each of these waited for the pool's one thread.
        assert!(
            started.elapsed() < busy_for / 2,
            "answered in {:?} with the blocking pool busy",
            started.elapsed()
        );
    });
    // Not waiting for the sleeper.
    runtime.shutdown_background();
}
