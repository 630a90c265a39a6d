//! One meeting over two nodes (SATELLITES.md, the first step): a satellite node's conference
//! dials the owner's meeting, and the call between them is the trunk. The owner's talkers reach
//! the satellite's listeners through it, a talker at the satellite reaches the owner's
//! participants through it, and nobody hears themselves come back over the hop. What the hop
//! adds to mouth-to-ear delay is measured (and printed) against a listener at the owner.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab::media::codec::Codec;
use serde_json::json;

use crate::support;
use crate::support::Endpoint;
use crate::support::server::Server;

fn join(server: &Server, cid: &str, e: &Endpoint, who: &str) -> SocketAddr {
    server.join_endpoint(cid, e, (0, "PCMU/8000"), who).1
}

/// The states of a conference's participants, by display name.
fn states(server: &Server, cid: &str) -> Vec<(String, String)> {
    let (s, v) = server.call("GET", &format!("/v1/conferences/{cid}/participants"), None);
    assert_eq!(s, 200, "{v}");
    v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["display_name"].as_str().unwrap_or_default().to_owned(),
                p["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn median(mut d: Vec<Duration>) -> Duration {
    assert!(!d.is_empty(), "no tone onset was heard");
    d.sort();
    d[d.len() / 2]
}

#[test]
fn a_satellite_node_hears_the_owners_talkers_and_is_heard_back_over_one_trunk() {
    let _turn = support::exclusive();
    let (dir_owner, dir_satellite) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let owner = Server::start(dir_owner.path(), None, &[]);
    let satellite = Server::start(dir_satellite.path(), None, &[]);
    for (server, id) in [(&owner, "5200"), (&satellite, "5201")] {
        let (s, v) = server.call(
            "POST",
            "/v1/conferences",
            Some(&format!(r#"{{"id":"{id}"}}"#)),
        );
        assert_eq!(s, 201, "{v}");
    }
    // The trunk: the satellite's conference dials the owner's meeting.
    let dial = json!({ "dial": format!("sip:5200@{}", owner.sip), "display_name": "trunk" });
    let (s, v) = satellite.call(
        "POST",
        "/v1/conferences/5201/participants",
        Some(&dial.to_string()),
    );
    assert_eq!(s, 201, "{v}");
    assert!(
        support::wait_for(Duration::from_secs(5), || {
            states(&satellite, "5201") == [("trunk".to_owned(), "connected".to_owned())]
                && states(&owner, "5200").len() == 1
                && states(&owner, "5200")[0].1 == "connected"
        }),
        "the trunk did not connect: {:?} / {:?}",
        states(&satellite, "5201"),
        states(&owner, "5200")
    );

    // Ann talks at the owner in bursts (400 ms on, 400 ms off); Olga listens there; Lee
    // listens at the satellite; Sam, at the satellite, is silent at first.
    let mut ann = Endpoint::new(Codec::Pcmu, 440.0, -20.0, 1);
    ann.bursts = Some((20, 20));
    let mut olga = Endpoint::new(Codec::Pcmu, 660.0, -90.0, 2);
    let mut sam = Endpoint::new(Codec::Pcmu, 1000.0, -90.0, 3);
    let mut lee = Endpoint::new(Codec::Pcmu, 660.0, -90.0, 4);
    let to_ann = join(&owner, "5200", &ann, "Ann");
    let to_olga = join(&owner, "5200", &olga, "Olga");
    let to_sam = join(&satellite, "5201", &sam, "Sam");
    let to_lee = join(&satellite, "5201", &lee, "Lee");
    let start = Instant::now();
    let round =
        |ann: &mut Endpoint, olga: &mut Endpoint, sam: &mut Endpoint, lee: &mut Endpoint, secs| {
            support::run(
                &mut [(ann, to_ann), (olga, to_olga), (sam, to_sam), (lee, to_lee)],
                Duration::from_secs(secs),
                |_| {},
            )
        };
    round(&mut ann, &mut olga, &mut sam, &mut lee, 4);

    // What the hop adds: Ann's onsets at Lee (owner, trunk, satellite) against at Olga.
    let since = start + Duration::from_secs(1);
    let direct = median(olga.onset_delays(&ann, since));
    let hopped = median(lee.onset_delays(&ann, since));
    eprintln!(
        "mouth-to-ear: at the owner {direct:?}, at the satellite {hopped:?}, the hop {:?}",
        hopped.saturating_sub(direct)
    );
    assert!(
        hopped > direct,
        "the satellite heard Ann no later than the owner did"
    );

    // Sam talks too (a steady 1 kHz).
    sam.tone_dbov = -20.0;
    round(&mut ann, &mut olga, &mut sam, &mut lee, 4);
    // Over the trunk both ways: Lee hears Ann, Olga and Ann hear Sam (Ann's bursts are on
    // half the time and a steady tone beside them; -40 dBov is well above the -90 of
    // nothing).
    let heard = |e: &Endpoint, hz: f32| e.level_of(hz, 3.0);
    assert!(
        heard(&lee, 440.0) > -40.0,
        "Lee: Ann at {} dBov",
        heard(&lee, 440.0)
    );
    assert!(
        heard(&lee, 1000.0) > -40.0,
        "Lee: Sam at {} dBov",
        heard(&lee, 1000.0)
    );
    assert!(
        heard(&olga, 1000.0) > -40.0,
        "Olga: Sam at {} dBov",
        heard(&olga, 1000.0)
    );
    assert!(
        heard(&ann, 1000.0) > -40.0,
        "Ann: Sam at {} dBov",
        heard(&ann, 1000.0)
    );
    // Mix-minus holds across the hop: nobody's own voice comes back through the other node.
    assert!(
        heard(&ann, 440.0) < -60.0,
        "Ann hears herself at {} dBov",
        heard(&ann, 440.0)
    );
    assert!(
        heard(&sam, 1000.0) < -60.0,
        "Sam hears himself at {} dBov",
        heard(&sam, 1000.0)
    );
    drop((owner, satellite));
}
