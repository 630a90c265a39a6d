//! The demand: "a full event broadcast loses no hang-up". 40 SIP calls are up in a
//! conference; the engine's UI broadcast is flooded (participants joining, talkers in bursts
//! raising speaking events, thousands of mute and deaf toggles) until a subscriber that never
//! reads is more than two whole buffers behind. Meanwhile the SIP shell is held (every worker of
//! its runtime blocked; an OPTIONS proves it answers nothing): every caller is ejected, and more
//! than a buffer of events follows the last ejection, so a shell reading the broadcast would find
//! none of them when it went on (checked with a subscriber made when the shell stopped). Released,
//! the shell sends every caller exactly one BYE, from the control stream alone; each dialog is
//! then gone (an UPDATE in it is answered 481), the control stream dropped nothing, and the idle
//! subscriber is told `Lagged` at the end.
//!
//! Raw UDP callers (no RTP; the media timeout is 30 s), under 10 s of real time. Every loop is
//! bounded; the threads it starts stop and are joined, and the shell is released, when it ends,
//! pass or fail.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use confab::conference::{DisconnectReason, Event, ParticipantId, Policy, Role, State};
use confab::engine::{Engine, Joiner};
use confab::media::codec::Codec;
use confab::media::leg::LegSpec;
use confab::mixer::Control;
use confab::mixer::conference::ConferenceEvent;
use support::Endpoint;
use support::clients::{RawUa, SipBridge};

/// The calls held and ejected.
const CALLS: usize = 40;
/// Talkers in the other conference, speaking in bursts all along.
const TALKERS: usize = 6;
/// `Engine::broadcast_events`' channel: a subscriber this far behind has lost events.
const UI_CAPACITY: usize = 4096;
/// How far behind the idle subscriber must be before the ejects: more than two whole buffers.
const LAG_BEFORE_EJECT: usize = 3 * UI_CAPACITY;

const MEETING: &str = "7100";
const NOISE: &str = "7200";

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The other conference's traffic: talkers sending 200 ms bursts of tone (speaking on, off,
/// dominant speaker) and, once `toggling`, mute and deaf toggles of those talkers as fast as
/// the engine takes them. Stopped and joined on drop.
struct Noise {
    stop: Arc<AtomicBool>,
    toggling: Arc<AtomicBool>,
    toggles: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// The UI events by kind, as a second subscriber that does read (as fast as it can) sees them,
/// with what it lost itself.
#[derive(Debug, Default)]
struct Tally {
    kinds: BTreeMap<&'static str, u64>,
    lagged: u64,
}

fn kind(event: &Event) -> &'static str {
    match event {
        Event::State {
            state: State::Disconnected(DisconnectReason::Ejected),
            ..
        } => "ejected",
        Event::State { .. } => "state",
        Event::Muted { .. } => "muted",
        Event::Deaf { .. } => "deaf",
        Event::Speaking { .. } => "speaking",
        Event::DominantSpeaker { .. } => "dominant",
        _ => "other",
    }
}

impl Noise {
    fn start(
        engine: &Arc<Engine>,
        mut reader: tokio::sync::broadcast::Receiver<ConferenceEvent>,
        tally: &Arc<Mutex<Tally>>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let toggling = Arc::new(AtomicBool::new(false));
        let toggles = Arc::new(AtomicU64::new(0));
        // Made first: a failure from here on stops and joins what was started.
        let mut noise = Noise {
            stop: Arc::clone(&stop),
            toggling: Arc::clone(&toggling),
            toggles: Arc::clone(&toggles),
            threads: Vec::new(),
        };
        let counter = {
            let (stop, tally) = (Arc::clone(&stop), Arc::clone(tally));
            std::thread::spawn(move || {
                use tokio::sync::broadcast::error::TryRecvError;
                let limit = Instant::now() + Duration::from_secs(120);
                // After the stop, what was sent before it is read too.
                let mut stopping = false;
                while Instant::now() < limit {
                    match reader.try_recv() {
                        Ok(e) => {
                            *tally
                                .lock()
                                .unwrap()
                                .kinds
                                .entry(kind(&e.event))
                                .or_default() += 1
                        }
                        Err(TryRecvError::Lagged(n)) => tally.lock().unwrap().lagged += n,
                        Err(TryRecvError::Empty) if stopping => return,
                        Err(TryRecvError::Empty) => {
                            stopping = stop.load(Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(TryRecvError::Closed) => return,
                    }
                }
            })
        };
        noise.threads.push(counter);
        let (ids_tx, ids_rx) = std::sync::mpsc::channel();
        let talkers = {
            let (engine, stop) = (Arc::clone(engine), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut talkers: Vec<(Endpoint, std::net::SocketAddr)> = (0..TALKERS)
                    .map(|i| {
                        let mut e = Endpoint::new(
                            Codec::Pcmu,
                            300.0 + 100.0 * i as f32,
                            -20.0,
                            100 + i as u32,
                        );
                        e.bursts = Some((20, 20 + i as u64));
                        let (id, to) = engine
                            .add_rtp_leg(
                                NOISE,
                                Joiner {
                                    display_name: format!("talker {i}"),
                                    uri: format!("sip:talker{i}@test"),
                                    role: Role::Attendee,
                                    identity: None,
                                },
                                LegSpec::new(Codec::Pcmu, e.addr()),
                            )
                            .wait()
                            .unwrap();
                        ids_tx.send(id).unwrap();
                        (e, to)
                    })
                    .collect();
                drop(ids_tx);
                let mut deadline = Instant::now();
                // Bounded: the test stops it; 120 s is far past any run of it.
                let limit = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < limit {
                    for (e, to) in &mut talkers {
                        e.send_frame(*to);
                        e.receive();
                        e.heard.clear();
                        e.sent_at.clear();
                        e.heard_at.clear();
                    }
                    deadline += Duration::from_millis(20);
                    if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
        };
        noise.threads.push(talkers);
        let ids: Vec<ParticipantId> = ids_rx.iter().collect();
        assert_eq!(ids.len(), TALKERS, "the talkers did not all join");
        let toggler = {
            let (engine, stop, toggling, toggles) = (
                Arc::clone(engine),
                Arc::clone(&stop),
                Arc::clone(&toggling),
                Arc::clone(&toggles),
            );
            std::thread::spawn(move || {
                let limit = Instant::now() + Duration::from_secs(120);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < limit {
                    if !toggling.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    // Each a change (so each an event): per talker, mute on, off, deaf on, off.
                    let p = ids[n as usize % ids.len()];
                    let control = match (n as usize / ids.len()) % 4 {
                        0 => Control::Mute(p, true),
                        1 => Control::Mute(p, false),
                        2 => Control::Deaf(p, true),
                        _ => Control::Deaf(p, false),
                    };
                    engine.control(NOISE, control).wait().unwrap();
                    toggles.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        };
        noise.threads.push(toggler);
        noise
    }
}

impl Noise {
    /// Stops the threads; whether they all ran to the end without a panic.
    fn stop(&mut self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).all(|t| t.join().is_ok())
    }
}

impl Drop for Noise {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The SIP shell taking no events: every worker of the bridge's runtime held by a task that
/// blocks until released, so the shell's task cannot run (a consumer stalled as long as we
/// like). Released on drop, before the bridge is stopped.
struct Stall {
    release: Vec<std::sync::mpsc::Sender<()>>,
    since: Instant,
}

impl Stall {
    fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let workers = runtime.metrics().num_workers();
        let (started_tx, started) = std::sync::mpsc::channel();
        let mut stall = Stall {
            release: Vec::new(),
            since: Instant::now(),
        };
        for _ in 0..workers {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            stall.release.push(tx);
            let started = started_tx.clone();
            runtime.spawn(async move {
                let _ = started.send(());
                // Blocks the worker on purpose; ends when the sender is dropped.
                let _ = rx.recv();
            });
        }
        for i in 0..workers {
            started
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("runtime worker {i} of {workers} was not held"));
        }
        stall.since = Instant::now();
        stall
    }

    /// Lets the runtime go on; how long it was held.
    fn release(&mut self) -> Duration {
        self.release.clear();
        self.since.elapsed()
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.release.clear();
    }
}

fn call_id(msg: &str) -> Option<&str> {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .map(str::trim)
}

fn via_branch(msg: &str) -> Option<&str> {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix("Via: "))
        .and_then(|v| v.split(";branch=").nth(1))
        .map(|b| b.split(';').next().unwrap_or(b))
}

#[test]
fn a_full_event_broadcast_loses_no_hang_up() {
    let _turn = support::exclusive();
    // Room for the calls and the talkers; all 40 INVITEs come from one address, quickly.
    let bridge = SipBridge::configured(64, |s| s.invites_per_second = 1000);
    let engine = Arc::clone(&bridge.engine);
    engine
        .create_conference(MEETING, Policy::default())
        .wait()
        .unwrap();
    engine
        .create_conference(NOISE, Policy::default())
        .wait()
        .unwrap();
    // Subscribed first and never read until the end.
    let mut ui = bridge.events.subscribe();

    // The calls, each its own dialog from its own socket.
    let mut calls: Vec<RawUa> = (0..CALLS)
        .map(|i| {
            let mut ua = RawUa::new(bridge.sip_addr(), &format!("ctl-path-{i}"));
            let (code, answer) = ua.invite(MEETING, SDP);
            assert_eq!(code, 200, "call {i}: {answer}");
            ua
        })
        .collect();
    let callers: Vec<ParticipantId> = engine
        .roster(MEETING)
        .wait()
        .unwrap()
        .into_iter()
        .filter(|p| !matches!(p.state, State::Disconnected(_)))
        .map(|p| p.id)
        .collect();
    assert_eq!(callers.len(), CALLS, "{:?}", engine.roster(MEETING).wait());

    // More joining, and speaking; then the callers' own mute and deaf toggles until the idle
    // subscriber is more than two buffers behind (bounded in count and time).
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut noise = Noise::start(&engine, bridge.events.subscribe(), &tally);
    // From here the shell takes no event until released. `shell_view` is what a shell reading
    // the UI broadcast (as before the control stream) would find when it went on.
    let mut stall = Stall::start(&bridge.runtime);
    let mut shell_view = bridge.events.subscribe();
    let flood_start = Instant::now();
    let mut toggles = 0usize;
    while ui.len() <= LAG_BEFORE_EJECT {
        assert!(
            toggles < 20 * LAG_BEFORE_EJECT && flood_start.elapsed() < Duration::from_secs(60),
            "the UI broadcast has only {} events after {toggles} toggles",
            ui.len()
        );
        let p = callers[(toggles / 2) % CALLS];
        let on = toggles.is_multiple_of(2);
        let control = if (toggles / 2) % 5 == 4 {
            Control::Deaf(p, on)
        } else {
            Control::Mute(p, on)
        };
        engine.control(MEETING, control).wait().unwrap();
        toggles += 1;
    }
    // And the talkers have been heard speaking (bounded wait; they began with the flood).
    let speaking = || {
        tally
            .lock()
            .unwrap()
            .kinds
            .get("speaking")
            .copied()
            .unwrap_or(0)
    };
    assert!(
        support::wait_for(Duration::from_secs(10), || speaking() >= TALKERS as u64),
        "speaking events: {}",
        speaking()
    );
    let behind_before_eject = ui.len();
    println!(
        "flood: {toggles} toggles of the callers in {:.1} s; the idle subscriber is {behind_before_eject} \
         events behind a {UI_CAPACITY}-event buffer",
        flood_start.elapsed().as_secs_f64()
    );

    // Every caller ejected, then more than a whole buffer of events after the last ejection
    // (the talkers' toggles in the other conference), all while the shell is stalled: a
    // broadcast reader resuming now would find no ejection left.
    noise.toggling.store(true, Ordering::Relaxed);
    for &p in &callers {
        engine.control(MEETING, Control::Eject(p)).wait().unwrap();
    }
    let after_ejects = shell_view.len();
    let after_start = Instant::now();
    while shell_view.len() <= after_ejects + UI_CAPACITY + 1024 {
        assert!(
            after_start.elapsed() < Duration::from_secs(30),
            "only {} events after the ejections",
            shell_view.len() - after_ejects
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let after_ejects = shell_view.len() - after_ejects;
    // The shell really is held: an OPTIONS gets no answer now, and one once it is released.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let options = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe\r\n\
         From: <sip:probe@{me}>;tag=p\r\nTo: <sip:{sip}>\r\nCall-ID: probe\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        sip = bridge.sip_addr(),
        me = probe.local_addr().unwrap()
    );
    probe
        .send_to(options.as_bytes(), bridge.sip_addr())
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        probe.recv(&mut buf).is_err(),
        "the shell answered while held"
    );
    let stalled_for = stall.release();
    let eject_start = Instant::now();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = probe
        .recv(&mut buf)
        .expect("no answer to OPTIONS after the release");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // Each caller gets its BYE (answered 200 by `RawUa::recv`); retransmissions would share
    // its branch. Bounded: at most 10 messages, or 5 s of silence, per call.
    let mut byes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut byes_received = 0usize;
    for (i, ua) in calls.iter().enumerate() {
        let own = format!("ctl-path-{i}");
        for _ in 0..10 {
            let Some(msg) = ua.recv() else { break };
            if !msg.starts_with("BYE ") {
                continue;
            }
            assert_eq!(
                call_id(&msg),
                Some(own.as_str()),
                "a BYE for another call: {msg}"
            );
            byes_received += 1;
            let branch = via_branch(&msg).unwrap_or_default().to_owned();
            let seen = byes.entry(own.clone()).or_default();
            if !seen.contains(&branch) {
                seen.push(branch);
            }
            break;
        }
    }
    let bye_time = eject_start.elapsed();
    let missing: Vec<usize> = (0..CALLS)
        .filter(|i| !byes.contains_key(&format!("ctl-path-{i}")))
        .collect();
    assert!(missing.is_empty(), "no BYE for calls {missing:?}");
    assert!(
        byes.values().all(|b| b.len() == 1),
        "more than one BYE in a call: {byes:?}"
    );

    // The dialogs are gone: an UPDATE in any of them is answered 481.
    for (i, ua) in calls.iter_mut().enumerate() {
        assert_eq!(
            ua.request("UPDATE", None, ""),
            481,
            "call {i}'s dialog is still there"
        );
    }
    assert!(noise.stop(), "the other conference's traffic failed");
    let noise_toggles = noise.toggles.load(Ordering::Relaxed);

    // The engine says the same: all ejected, and the control stream dropped nothing.
    let roster = engine.roster(MEETING).wait().unwrap();
    for id in &callers {
        let p = roster.iter().find(|p| p.id == *id).unwrap();
        assert_eq!(
            p.state,
            State::Disconnected(DisconnectReason::Ejected),
            "{}",
            p.uri
        );
    }
    let counters = engine.mixer_counters();
    let control_dropped: u64 = counters
        .iter()
        .map(|c| c.control_events_dropped.load(Ordering::Relaxed))
        .sum();
    let ui_dropped: u64 = counters
        .iter()
        .map(|c| c.events_dropped.load(Ordering::Relaxed))
        .sum();
    assert_eq!(control_dropped, 0, "control events dropped");

    // The broadcast really overflowed: the idle subscriber, read at last, is told it lagged,
    // by everything beyond the buffer; what is left is the buffer's worth.
    std::thread::sleep(Duration::from_millis(100));
    let behind_at_end = ui.len();
    let lagged = match ui.try_recv() {
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => n,
        other => panic!("the UI subscriber did not lag: {other:?}"),
    };
    assert!(
        lagged as usize >= LAG_BEFORE_EJECT - UI_CAPACITY,
        "lagged by {lagged}"
    );
    let mut kept: BTreeMap<&str, usize> = BTreeMap::new();
    while let Ok(e) = ui.try_recv() {
        *kept.entry(kind(&e.event)).or_default() += 1;
    }
    let kept_total: usize = kept.values().sum();
    assert!(kept_total <= UI_CAPACITY, "{kept_total} kept");
    // And the stalled shell's view of the broadcast lost every ejection: the hang-ups above
    // came by the control stream alone.
    let shell_lagged = match shell_view.try_recv() {
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => n,
        other => panic!("the stalled view did not lag: {other:?}"),
    };
    let mut shell_kept: BTreeMap<&str, usize> = BTreeMap::new();
    while let Ok(e) = shell_view.try_recv() {
        *shell_kept.entry(kind(&e.event)).or_default() += 1;
    }
    assert_eq!(
        shell_kept.get("ejected"),
        None,
        "the broadcast still had ejections: {shell_kept:?}"
    );
    let tally = tally.lock().unwrap();
    // A reader that kept up saw every ejection (one that fell behind is not this test's point).
    if tally.lagged == 0 {
        assert_eq!(
            tally.kinds.get("ejected"),
            Some(&(CALLS as u64)),
            "{tally:?}"
        );
    }
    println!(
        "shell stalled {:.1} s, {after_ejects} events after the last ejection; its broadcast \
         view told Lagged({shell_lagged}), kept {shell_kept:?}",
        stalled_for.as_secs_f64()
    );
    println!(
        "{CALLS} calls ejected: {} BYEs (one per call, {byes_received} received) within {:.0} ms of the release, \
         {CALLS} UPDATEs answered 481; {noise_toggles} toggles in the other conference meanwhile; \
         UI subscriber {behind_at_end} events behind at the end, told Lagged({lagged}), {kept_total} \
         kept ({kept:?}); a reading subscriber saw {:?} and lost {}; UI events dropped at the \
         mixer {ui_dropped}, control events dropped {control_dropped}",
        byes.len(),
        bye_time.as_secs_f64() * 1000.0,
        tally.kinds,
        tally.lagged,
    );
}
