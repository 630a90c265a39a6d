//! Cost of one mixer tick against conference size: `cargo bench --bench mixer`.
//! Three talkers (PCMU, G.722, Opus: a 48 kHz mix; or three PCMU phones: an 8 kHz mix) and N
//! PCMU listeners on real loopback sockets; a tick includes reading, decoding, detection,
//! mixing, the encodes and one send per leg.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use confab::conference::{Joining, ParticipantId, Policy, Role};
use confab::media::codec::{Codec, LegEncoder, MIX_FRAME, MIX_RATE, WIDEST_MIX};
use confab::media::leg::{LegSpec, LegTimers, RtpLeg};
use confab::media::ports::PortPool;
use confab::media::rtp::{self, Outgoing};
use confab::mixer::conference::ConferenceMedia;
use confab_dsp::opus::OpusSettings;

/// Pre-encoded RTP packets of a tone, sent round-robin by a talker.
struct Talker {
    socket: UdpSocket,
    to: SocketAddr,
    packets: Vec<Vec<u8>>,
    next: usize,
}

fn talker(codec: Codec, pt: u8, freq: f32, to: SocketAddr, socket: UdpSocket) -> Talker {
    let mut enc = LegEncoder::new(codec, 20, OpusSettings::default(), WIDEST_MIX)
        .unwrap_or_else(|e| panic!("{e}"));
    let tone = confab_dsp::signal::sine(MIX_RATE, freq, -20.0, MIX_FRAME * 50);
    let mut packets = Vec::new();
    let mut payload = [0u8; 1500];
    for (i, frame) in tone.chunks_exact(MIX_FRAME).enumerate() {
        enc.push_frame(frame);
        if let Some(n) = enc.pull_packet(&mut payload) {
            let mut buf = vec![0u8; 1600];
            let header = Outgoing {
                payload_type: pt,
                marker: false,
                sequence: i as u16,
                timestamp: (i as u32) * enc.packet_ticks(),
                ssrc: 7 + u32::from(pt),
                csrcs: &[],
                csrc_levels: None,
            };
            let len = rtp::write(&mut buf, header, &payload[..n]).unwrap_or(0);
            buf.truncate(len);
            packets.push(buf);
        }
    }
    Talker {
        socket,
        to,
        packets,
        next: 0,
    }
}

/// The talkers of the wideband meeting and of the phones' meeting: (codec, payload type, tone).
const MIXED: [(Codec, u8, f32); 3] = [
    (Codec::Pcmu, 0, 440.0),
    (Codec::G722, 9, 660.0),
    (Codec::Opus, 111, 880.0),
];
const PHONES: [(Codec, u8, f32); 3] = [
    (Codec::Pcmu, 0, 440.0),
    (Codec::Pcmu, 0, 660.0),
    (Codec::Pcmu, 0, 880.0),
];

fn setup(
    talking: &[(Codec, u8, f32)],
    listeners: usize,
    base: u16,
) -> (ConferenceMedia, Vec<Talker>, UdpSocket, Instant) {
    let pool = PortPool::new(
        IpAddr::from([127, 0, 0, 1]),
        base,
        base + 2 * (listeners as u16 + 10),
    );
    let t0 = Instant::now();
    let mut conference = ConferenceMedia::new(
        "bench".into(),
        Policy::default(),
        3,
        Duration::from_secs(3600),
    );
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let mut id = 0u64;
    let mut add = |conference: &mut ConferenceMedia, codec: Codec, pt: u8, remote: SocketAddr| {
        id += 1;
        let (socket, rtcp, lease) = pool.bind(false).unwrap_or_else(|e| panic!("{e}"));
        let spec = LegSpec {
            payload_type: pt,
            ..LegSpec::new(codec, remote)
        };
        let leg = RtpLeg::new(
            ParticipantId(id),
            spec,
            (socket, rtcp),
            lease,
            t0,
            id as u32,
            LegTimers::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let local = leg.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let joining = Joining {
            id: ParticipantId(id),
            display_name: String::new(),
            uri: String::new(),
            role: Role::Attendee,
            identity: None,
        };
        conference
            .add_leg(joining, leg, t0)
            .unwrap_or_else(|e| panic!("{e}"));
        local
    };
    let mut talkers = Vec::new();
    for &(codec, pt, f) in talking {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let _ = socket.set_nonblocking(true);
        let local = socket.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let to = add(&mut conference, codec, pt, local);
        talkers.push(talker(codec, pt, f, to, socket));
    }
    for _ in 0..listeners {
        let to = add(
            &mut conference,
            Codec::Pcmu,
            0,
            sink.local_addr().unwrap_or_else(|e| panic!("{e}")),
        );
        let mut hello = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        hello.extend_from_slice(&[0xFF; 160]);
        let _ = sink.send_to(&hello, to);
    }
    let _ = sink.set_nonblocking(true);
    (conference, talkers, sink, t0)
}

fn tick_cost(c: &mut Criterion) {
    let mut base = 30000;
    for (name, talking, sizes) in [
        ("mixer_tick_3_talkers", &MIXED, &[10usize, 100, 1000][..]),
        ("mixer_tick_3_phones", &PHONES, &[10usize, 100][..]),
    ] {
        tick_group(c, name, talking, sizes, &mut base);
    }
}

fn tick_group(
    c: &mut Criterion,
    name: &str,
    talking: &[(Codec, u8, f32)],
    sizes: &[usize],
    base: &mut u16,
) {
    let mut g = c.benchmark_group(name);
    g.sample_size(20);
    for &listeners in sizes {
        let (mut conference, mut talkers, sink, t0) = setup(talking, listeners, *base);
        *base += 2 * (listeners as u16 + 20);
        let mut tick = 0u64;
        g.bench_with_input(
            BenchmarkId::from_parameter(listeners + 3),
            &listeners,
            |b, _| {
                b.iter(|| {
                    for t in &mut talkers {
                        let _ = t.socket.send_to(&t.packets[t.next], t.to);
                        t.next = (t.next + 1) % t.packets.len();
                    }
                    tick += 1;
                    conference.tick(t0 + Duration::from_millis(20 * tick), |_| {});
                    let mut buf = [0u8; 2048];
                    while sink.recv(&mut buf).is_ok() {}
                    for t in &talkers {
                        while t.socket.recv(&mut buf).is_ok() {}
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, tick_cost);
criterion_main!(benches);
