//! The moderation route's gate and the gains' validation (the handlers are exercised end to
//! end in tests/it/api_controls.rs).

use axum::http::Method;

use super::*;

#[test]
fn a_roster_token_moderates_its_own_conference_only() {
    let ok = |m: &Method, path: &str| {
        allows("1234", m, path).map(|r| r.map_err(|e| e.status().as_u16()))
    };
    assert_eq!(
        ok(&Method::GET, "/v1/conferences/1234/moderation"),
        Some(Ok(()))
    );
    assert_eq!(
        ok(&Method::POST, "/v1/conferences/1234/moderation"),
        Some(Ok(()))
    );
    assert_eq!(
        ok(&Method::POST, "/v1/conferences/5678/moderation"),
        Some(Err(403))
    );
    assert_eq!(
        ok(&Method::POST, "/v1/conferences/12345/moderation"),
        Some(Err(403))
    );
    // Anything else is the view's to judge (it refuses writes).
    for (m, path) in [
        (Method::DELETE, "/v1/conferences/1234/moderation"),
        (Method::POST, "/v1/conferences/1234/moderation/"),
        (Method::POST, "/v1/conferences/1234/lock"),
        (Method::POST, "/v1/conferences/1234/participants/p3/mute"),
        (Method::POST, "/v1/conferences/1234/participants/p3/role"),
        (Method::GET, "/v1/conferences/1234/participants"),
    ] {
        assert_eq!(ok(&m, path), None, "{m} {path}");
    }
}

#[test]
fn gains_are_numbers_from_minus_30_to_plus_12_db() {
    use confab_dsp::mix::Gain;
    assert_eq!(gain("input_db", None).ok(), Some(None));
    assert_eq!(gain("input_db", Some(0.0)).ok(), Some(Some(Gain::UNITY)));
    assert_eq!(
        gain("input_db", Some(-30.0)).ok(),
        Some(Some(Gain::from_db(-30.0)))
    );
    assert_eq!(
        gain("input_db", Some(12.0)).ok(),
        Some(Some(Gain::from_db(12.0)))
    );
    for bad in [
        -30.1,
        12.5,
        100.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        let e = gain("output_db", Some(bad))
            .err()
            .map(|e| e.status().as_u16());
        assert_eq!(e, Some(422), "{bad}");
    }
}
