//! `/readyz` tells a load balancer to stop sending calls when a part of the bridge is down,
//! and `/metrics` counts the panics every part contained.

use super::*;
use crate::api::test_state::app_state;
use crate::engine::EngineSettings;

fn state(dir: &std::path::Path) -> AppState {
    app_state(
        Store::open(dir).unwrap(),
        EngineSettings::loopback(2, 45_000),
        Vec::new(),
    )
}

async fn body(r: Response) -> (StatusCode, String) {
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn readyz_names_a_part_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    assert_eq!(
        body(readyz(State(state.clone())).await).await,
        (StatusCode::OK, "ready".into())
    );
    // The panic counters are there at zero for every part.
    let options = crate::metrics::Options {
        conference_labels: false,
        auth: None,
        placement: None,
    };
    let text = crate::metrics::render(
        &state.engine,
        &options,
        None,
        None,
        &state.api_metrics,
        &[],
        false,
    )
    .await;
    assert!(
        text.contains("confab_panics_total{part=\"mixer\"} 0"),
        "{text}"
    );
    // A mixer thread ends (a bug its containment missed): not ready, and no new conference
    // is placed on it.
    state.engine.end_mixer_thread(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while state.engine.mixers_alive() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        body(readyz(State(state.clone())).await).await,
        (StatusCode::SERVICE_UNAVAILABLE, "mixer down".into())
    );
    for id in ["1001", "1002", "1003", "1004"] {
        state
            .engine
            .create_conference(id, crate::conference::Policy::default())
            .await
            .unwrap();
    }
}
