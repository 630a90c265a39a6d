//! A conference tick in steady state allocates nothing: a counting global allocator watches
//! `ConferenceMedia::tick` with three talkers (PCMU, G.722, Opus: a 48 kHz mix; or three phones:
//! an 8 kHz mix) and twenty listeners whose packets arrive over real UDP sockets on 127.0.0.1,
//! the mix recorded from the first measured tick (so the spoken notice that it is being
//! recorded plays in the ticks measured, to every leg). Time is stepped explicitly.
//!
//! The allocator is the whole test binary's, and other tests allocate: it counts only once
//! armed, and only the test's own process arms it. The test runs itself again as a process of
//! its own that runs nothing else (`counted_in_a_process_of_its_own`), and checks its verdict.
#![allow(unsafe_code)] // the GlobalAlloc impl below only forwards to the system allocator

use crate::support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use confab::conference::roster::EntryExit;
use confab::conference::{Joining, ParticipantId, Policy, Role};
use confab::media::codec::Codec;
use confab::media::leg::{LegSpec, LegTimers, RtpLeg};
use confab::media::ports::PortPool;
use confab::media::relay::{RelayPacket, relay_pair};
use confab::mixer::conference::ConferenceMedia;
use confab::mixer::helper::{LegHelper, PARALLEL_LEGS};
use support::Endpoint;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Blocks given back, counted like `ALLOCATIONS`: a leg that leaves is freed between ticks, not
/// in one (its buffers are large enough to go back to the kernel, a system call each).
static FREES: AtomicUsize = AtomicUsize::new(0);
/// Set only in the process of its own that `a_steady_tick_allocates_nothing` starts.
static ARMED: AtomicBool = AtomicBool::new(false);

fn count() {
    if ARMED.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every method forwards to `System` unchanged; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            FREES.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Tells the test run by `a_steady_tick_allocates_nothing` that it is in its own process.
const CHILD: &str = "CONFAB_IT_MIXER_ALLOC_CHILD";

#[test]
fn a_steady_tick_allocates_nothing() {
    // Nothing real-time here (time is stepped), but its 20 ms ticks of three codecs would
    // slow a real-time test beside it.
    let _turn = support::exclusive();
    // This very executable, even if a build has replaced its file since it started (the
    // target directory is shared): /proc/self/exe still names what is running.
    let out = std::process::Command::new("/proc/self/exe")
        .args([
            "mixer_alloc::counted_in_a_process_of_its_own",
            "--exact",
            "--include-ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the counted run failed or did not run:\n{stdout}\n{stderr}"
    );
}

/// The allocation counts, in a process that runs this test alone (started by
/// `a_steady_tick_allocates_nothing`); run any other way, it only says so.
#[test]
#[ignore = "run by a_steady_tick_allocates_nothing in a process of its own"]
fn counted_in_a_process_of_its_own() {
    if std::env::var_os(CHILD).is_none() {
        eprintln!(
            "SKIP: counts allocations only in a process of its own (see a_steady_tick_allocates_nothing)"
        );
        return;
    }
    ARMED.store(true, Ordering::SeqCst);
    const MIXED: [Codec; 3] = [Codec::Pcmu, Codec::G722, Codec::Opus];
    steady_ticks_allocate_nothing(MIXED, 20, None);
    steady_ticks_allocate_nothing([Codec::Pcmu; 3], 20, None);
    // Enough legs that half of them go to the helper thread in both per-leg phases; the
    // counting allocator sees that thread too.
    let helper = LegHelper::spawn(0).unwrap();
    steady_ticks_allocate_nothing(MIXED, PARALLEL_LEGS + 20, Some(helper));
    music_and_tones_allocate_nothing();
}

/// Attendees waiting for the leader hear music on hold (each its own encode, from its own
/// place in the music), then the leader comes (the enter tone) and one leaves (the exit tone):
/// none of those ticks allocates. The tick in which the leader connects is not counted: the
/// roster's release of those waiting collects them (a roster matter, not the sounds').
fn music_and_tones_allocate_nothing() {
    let (min, max) = support::free_port_range();
    let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), min, max + 20);
    let t0 = Instant::now();
    let policy = Policy {
        wait_for_leader: true,
        hold_music: true,
        entry_exit: EntryExit::Tones,
        ..Policy::default()
    };
    let mut conference = ConferenceMedia::new("m".into(), policy, 3, Duration::from_secs(30));
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let add = |conference: &mut ConferenceMedia, id: u64, role: Role| {
        let (socket, rtcp, lease) = pool.bind(false).unwrap();
        let spec = LegSpec::new(Codec::Pcmu, sink.local_addr().unwrap());
        let leg = RtpLeg::new(
            ParticipantId(id),
            spec,
            (socket, rtcp),
            lease,
            t0,
            id as u32,
            LegTimers::default(),
        )
        .unwrap();
        let to = leg.local_addr().unwrap();
        let joining = Joining {
            id: ParticipantId(id),
            display_name: String::new(),
            uri: String::new(),
            role,
            identity: None,
        };
        conference.add_leg(joining, leg, t0).unwrap();
        // One packet makes the leg's media ready.
        let mut hello = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, id as u8];
        hello.extend_from_slice(&[0xFF; 160]);
        sink.send_to(&hello, to).unwrap();
    };
    for id in 1..=3 {
        add(&mut conference, id, Role::Attendee);
    }
    sink.set_nonblocking(true).unwrap();
    let mut tick = 0u64;
    // The roster's events of a tick are kept (as the mixer thread sends them on), so that
    // dropping them is not counted as the tick's.
    let mut events = Vec::with_capacity(64);
    // Allocations and frees in the ticks; between them, what the mixer thread does there
    // (`settle`, uncounted).
    let mut run = |conference: &mut ConferenceMedia, ticks: u64| {
        let (mut made, mut freed) = (0, 0);
        for _ in 0..ticks {
            let now = t0 + Duration::from_millis(20 * tick);
            tick += 1;
            let before = (
                ALLOCATIONS.load(Ordering::SeqCst),
                FREES.load(Ordering::SeqCst),
            );
            conference.tick(now, |e| {
                if events.len() < events.capacity() {
                    events.push(e);
                }
            });
            made += ALLOCATIONS.load(Ordering::SeqCst) - before.0;
            freed += FREES.load(Ordering::SeqCst) - before.1;
            conference.settle();
            events.clear();
            let mut buf = [0u8; 2048];
            while sink.recv(&mut buf).is_ok() {}
        }
        (made, freed)
    };
    let connected = |c: &ConferenceMedia, id: u64| {
        c.roster.participant(ParticipantId(id)).unwrap().state
            == confab::conference::State::Connected
    };
    run(&mut conference, 50);
    let own = conference.counters.encodes_own.load(Ordering::Relaxed);
    let (waiting, _) = run(&mut conference, 100);
    // Every waiting leg had its own encode of the music each tick.
    let music_encodes = conference.counters.encodes_own.load(Ordering::Relaxed) - own;
    assert_eq!(music_encodes, 300, "music encodes in 100 ticks");
    assert!(!connected(&conference, 1));
    assert_eq!(waiting, 0, "allocations in 100 ticks of music on hold");

    add(&mut conference, 4, Role::Leader);
    let mut waited = 0;
    while !connected(&conference, 4) {
        run(&mut conference, 1);
        waited += 1;
        assert!(waited < 10, "the leader did not connect");
    }
    // The enter tone lasts about 0.4 s: these ticks mix it.
    let (entering, _) = run(&mut conference, 15);
    assert!(connected(&conference, 1));
    assert_eq!(entering, 0, "allocations in 15 ticks of the enter tone");
    run(&mut conference, 30);
    conference
        .roster
        .disconnect(
            ParticipantId(2),
            confab::conference::DisconnectReason::Hangup,
        )
        .unwrap();
    let frees_before = FREES.load(Ordering::SeqCst);
    let (leaving, freed) = run(&mut conference, 15);
    assert_eq!(conference.leg_count(), 3);
    assert_eq!(leaving, 0, "allocations in 15 ticks of the exit tone");
    // The leg that left was freed, by `settle`, between ticks (its jitter buffer, codec state
    // and sockets are dozens of blocks).
    assert_eq!(freed, 0, "frees in the 15 ticks in which a leg left");
    let frees = FREES.load(Ordering::SeqCst) - frees_before;
    assert!(
        frees >= 10,
        "{frees} blocks freed between those ticks: the leg was not freed"
    );
}

fn steady_ticks_allocate_nothing(
    talking: [Codec; 3],
    listeners: usize,
    mut helper: Option<LegHelper>,
) {
    let (min, max) = support::free_port_range();
    let pool = PortPool::new(
        IpAddr::from([127, 0, 0, 1]),
        min,
        max + 2 * listeners as u16 + 20,
    );
    let t0 = Instant::now();
    let mut conference =
        ConferenceMedia::new("a".into(), Policy::default(), 3, Duration::from_secs(30));
    let mut talkers = Vec::new();
    let mut targets = Vec::new();
    let mut next_id = 1;
    let mut add = |conference: &mut ConferenceMedia, codec: Codec, remote| {
        let (socket, rtcp, lease) = pool.bind(false).unwrap();
        let spec = LegSpec::new(codec, remote);
        let id = ParticipantId(next_id);
        next_id += 1;
        let leg = RtpLeg::new(
            id,
            spec,
            (socket, rtcp),
            lease,
            t0,
            1000 + id.0 as u32,
            LegTimers::default(),
        )
        .unwrap();
        let local = leg.local_addr().unwrap();
        let joining = Joining {
            id,
            display_name: String::new(),
            uri: String::new(),
            role: Role::Attendee,
            identity: None,
        };
        conference.add_leg(joining, leg, t0).unwrap();
        local
    };
    for (codec, f) in talking.into_iter().zip([440.0, 660.0, 880.0]) {
        let e = Endpoint::new(codec, f, -20.0, f as u32);
        targets.push(add(&mut conference, codec, e.addr()));
        talkers.push(e);
    }
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..listeners {
        let to = add(&mut conference, Codec::Pcmu, sink.local_addr().unwrap());
        // One packet from the sink makes the listener's media ready (and latches it there).
        let mut hello = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        hello.extend_from_slice(&[0xFF; 160]);
        sink.send_to(&hello, to).unwrap();
    }
    sink.set_nonblocking(true).unwrap();
    // A WebRTC leg: its packets come and go through the driver's relay, not a socket.
    let (port, relay) = relay_pair(Default::default());
    let webrtc = ParticipantId(1000);
    let leg = RtpLeg::relayed(
        webrtc,
        LegSpec::new(Codec::Pcmu, confab::media::leg::RELAY_SOURCE),
        port,
        t0,
        77,
        LegTimers::default(),
    )
    .unwrap();
    let joining = Joining {
        id: webrtc,
        display_name: String::new(),
        uri: String::new(),
        role: Role::Attendee,
        identity: None,
    };
    conference.add_leg(joining, leg, t0).unwrap();
    // The first talker is heard 6 dB down (its input gain: the mix and its mix-minus).
    conference
        .leg_mut(ParticipantId(1))
        .unwrap()
        .set_talk_gain(confab_dsp::mix::Gain::from_db(-6.0));
    let widest = talking.iter().map(|c| c.rate().hz()).max().unwrap();
    assert_eq!(conference.mix_rate().hz(), widest, "{talking:?}");
    let mut relayed_out = 0;
    // Recorded from the first measured tick: each tick's mix is copied into the recording's
    // queue (by value; the queue was allocated when it was made), and the spoken notice that a
    // recording starts with is said to every leg (each its own encode while it plays) and into
    // the recording, inside the ticks measured.
    let (tap, recorded) = confab::recording::RecordingTap::unwritten(1024);
    let mut tap = Some(tap);
    let mut own_encodes = [0u64; 2];

    let mut measured = 0;
    let jitter = confab::mixer::stats::JitterHistogram::default();
    for tick in 0..400u32 {
        for (e, to) in talkers.iter_mut().zip(&targets) {
            e.send_frame(*to);
        }
        let mut silence = RelayPacket::new(0, tick as u16, 160 * tick, 0x5151);
        silence.set_payload(&[0xFF; 160]);
        relay.inbound.try_send(silence).unwrap();
        let now = t0 + Duration::from_millis(20 * u64::from(tick));
        if tick == 200 {
            assert!(conference.set_recording(tap.take()).is_none());
        }
        let own = conference.counters.encodes_own.load(Ordering::Relaxed);
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        conference.tick_with(now, helper.as_mut(), |_| {});
        // The mixer thread's look at the legs' jitter (a second apart) is as steady.
        if tick.is_multiple_of(50) {
            conference.sample_jitter(&jitter);
        }
        let made = ALLOCATIONS.load(Ordering::SeqCst) - before;
        if tick >= 200 {
            measured += made;
            // The first 80 ticks of the recording (the notice is said for about 2 s) and the
            // last 80, when it is over.
            let own = conference.counters.encodes_own.load(Ordering::Relaxed) - own;
            match tick {
                200..280 => own_encodes[0] += own,
                320.. => own_encodes[1] += own,
                _ => {}
            }
        }
        for e in &mut talkers {
            e.receive();
        }
        let mut buf = [0u8; 2048];
        while sink.recv(&mut buf).is_ok() {}
        while relay.outbound.try_recv().is_ok() {
            relayed_out += 1;
        }
    }
    // The relayed leg heard the mix every tick (all but the first few) and was heard from.
    assert!(relayed_out > 390, "{relayed_out} packets to the WebRTC leg");
    let stats = conference.leg_stats(webrtc).unwrap();
    assert!(stats.packets_in >= 399 && stats.webrtc, "{stats:?}");
    assert_eq!(measured, 0, "allocations in 200 steady ticks");
    assert_eq!(recorded.frames(), 200, "frames recorded in 200 ticks");
    // The notice was said in the ticks measured: every listener had its own encode then.
    eprintln!("own encodes while the notice is said and after: {own_encodes:?}");
    assert!(
        own_encodes[0] >= own_encodes[1] + 80 * listeners as u64,
        "{own_encodes:?}"
    );
    // Every leg that sent (talkers, listeners' one packet, the WebRTC leg) was looked at.
    let (counts, overflow, _) = jitter.read();
    let looks: u64 = counts.iter().sum::<u64>() + overflow;
    assert!(
        looks >= 7 * (listeners as u64 + 4),
        "{looks} looks at the legs' jitter"
    );
    let split = conference.counters.split_ticks.load(Ordering::Relaxed);
    if helper.is_some() {
        assert!(
            split >= 399,
            "the helper took half the legs in {split} ticks"
        );
    } else {
        assert_eq!(split, 0);
    }
    // And the conference was really mixing: each talker hears the other two (440 Hz 6 dB
    // down).
    for (e, others) in talkers
        .iter()
        .zip([[660.0, 880.0], [440.0, 880.0], [440.0, 660.0]])
    {
        for f in others {
            let level = e.level_of(f, 1.0);
            let expected = if f == 440.0 { -26.0 } else { -20.0 };
            assert!(
                (level - expected).abs() < 1.0,
                "{:?} hears {f} Hz at {level:.2}",
                e.codec
            );
        }
    }
}
