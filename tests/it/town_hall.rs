//! A town hall over real UDP: 1,000 listeners and 2 talkers in one conference. Encodes per tick
//! are talkers + shared groups, not one per listener, and the listeners hear both talkers.

use crate::support;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use confab::conference::{Policy, Role};
use confab::engine::{Engine, EngineSettings, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use support::Endpoint;

const LISTENERS: usize = 1000;

#[test]
fn a_thousand_listeners_cost_one_shared_encode() {
    let _turn = support::exclusive();
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = probe.local_addr().unwrap().port().clamp(20000, 50000);
    drop(probe);
    let engine = Engine::start(EngineSettings {
        mixer_threads: 1,
        max_talkers: 3,
        media_bind: IpAddr::from([127, 0, 0, 1]),
        rtp_port_min: base,
        rtp_port_max: base + 2 * (LISTENERS as u16 + 200),
        media_timeout: Duration::from_secs(60),
        leg_timers: Default::default(),
        records: None,
    })
    .unwrap();
    let counters = engine
        .create_conference("42", Policy::default())
        .wait()
        .unwrap();

    // Listeners share a few receiving sockets (50 legs each, so a tick's burst fits a socket's
    // buffer); each leg latches to its socket from one packet.
    let sockets: Vec<UdpSocket> = (0..LISTENERS / 50)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let spec = |remote: SocketAddr| LegSpec::new(Codec::Pcmu, remote);
    let mut bridge_ports = HashSet::new();
    for i in 0..LISTENERS {
        let joiner = Joiner {
            display_name: format!("listener {i}"),
            uri: format!("sip:l{i}@test"),
            role: Role::Attendee,
            identity: None,
        };
        let listeners = &sockets[i % sockets.len()];
        let (_, addr) = engine
            .add_rtp_leg("42", joiner, spec(listeners.local_addr().unwrap()))
            .wait()
            .unwrap();
        let mut hello = vec![0x80, 0, 0, 1, 0, 0, 0, 160];
        hello.extend_from_slice(&(10_000 + i as u32).to_be_bytes());
        hello.extend_from_slice(&[0xFF; 160]);
        listeners.send_to(&hello, addr).unwrap();
        bridge_ports.insert(addr.port());
    }
    let mut a = Endpoint::new(Codec::Pcmu, 500.0, -20.0, 1);
    let mut b = Endpoint::new(Codec::Pcmu, 1200.0, -20.0, 2);
    let joiner = |n: &str| Joiner {
        display_name: n.into(),
        uri: format!("sip:{n}@test"),
        role: Role::Leader,
        identity: None,
    };
    let (_, a_addr) = engine
        .add_rtp_leg("42", joiner("a"), spec(a.addr()))
        .wait()
        .unwrap();
    let (_, b_addr) = engine
        .add_rtp_leg("42", joiner("b"), spec(b.addr()))
        .wait()
        .unwrap();

    // Record what one listener leg (the first) sends, and which legs send at all.
    let watched = *bridge_ports.iter().min().unwrap();
    let mut heard_from = HashSet::new();
    let mut watched_payload = Vec::new();
    let drain = |heard_from: &mut HashSet<u16>, watched_payload: &mut Vec<u8>| {
        let mut buf = [0u8; 2048];
        for listeners in &sockets {
            while let Ok((n, from)) = listeners.recv_from(&mut buf) {
                // RTCP reports come on the same port (rtcp-mux): not audio.
                if n >= 2 && (192..=223).contains(&buf[1]) {
                    continue;
                }
                heard_from.insert(from.port());
                let cc = usize::from(buf[0] & 0x0F);
                if from.port() == watched && n > 12 + 4 * cc {
                    watched_payload.extend_from_slice(&buf[12 + 4 * cc..n]);
                }
            }
        }
    };
    let mut at_start = None;
    support::run(
        &mut [(&mut a, a_addr), (&mut b, b_addr)],
        Duration::from_secs(4),
        |tick| {
            drain(&mut heard_from, &mut watched_payload);
            if tick == 100 {
                heard_from.clear();
                watched_payload.clear();
                at_start = Some((
                    counters.ticks.load(Ordering::Relaxed),
                    counters.encodes_shared.load(Ordering::Relaxed),
                    counters.encodes_own.load(Ordering::Relaxed),
                ));
            }
        },
    );
    drain(&mut heard_from, &mut watched_payload);
    let (t0, s0, o0) = at_start.unwrap();
    let ticks = counters.ticks.load(Ordering::Relaxed) - t0;
    let shared = counters.encodes_shared.load(Ordering::Relaxed) - s0;
    let own = counters.encodes_own.load(Ordering::Relaxed) - o0;
    assert!(ticks > 50, "only {ticks} ticks");
    // One shared PCMU group plus the two talkers' own mixes, per tick.
    let per_tick = (shared + own) as f64 / ticks as f64;
    assert!(
        (2.9..=3.1).contains(&per_tick),
        "{shared} shared + {own} own encodes in {ticks} ticks"
    );
    assert!(
        ((shared as f64 / ticks as f64) - 1.0).abs() < 0.05,
        "shared {shared} in {ticks} ticks"
    );

    assert_eq!(heard_from.len(), LISTENERS, "listener legs that sent audio");
    let mut pcm = vec![0i16; watched_payload.len()];
    audio_codec::Decoder::decode_into(
        &mut audio_codec::pcmu::PcmuDecoder::new(),
        &watched_payload,
        &mut pcm,
    )
    .unwrap();
    // The first talker's tone and the second's, at their level, in what a listener hears.
    for f in [500.0, 1200.0] {
        let level = confab_dsp::signal::tone_level_dbov(&pcm, 8000, f);
        assert!(
            (level + 20.0).abs() < 1.0,
            "listener hears {f} Hz at {level:.2} dBov"
        );
    }
    let late: u64 = engine
        .mixer_counters()
        .iter()
        .map(|c| c.late_ticks.load(Ordering::Relaxed))
        .sum();
    eprintln!(
        "late ticks: {late}; last tick {} µs",
        engine.mixer_counters()[0]
            .last_tick_us
            .load(Ordering::Relaxed)
    );
}
