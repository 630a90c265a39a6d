//! Test endpoints: RTP peers written in the test, with codecs from outside Confab (audio-codec
//! for G.711 and G.722, libopus through the `opus` crate), so what we measure never trusts our
//! own encoder or decoder.
#![allow(dead_code, unreachable_pub)]

pub mod audio;
pub mod clients;
pub mod https;
pub mod kamailio;
pub mod netns;
pub mod netns_bridge;
pub mod pki;
pub mod process;
pub mod server;
pub mod wire_scan;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use audio_codec::{Decoder as _, Encoder as _};
use confab::media::codec::Codec;
use confab::media::srtp::{SrtpKeys, SrtpSession};
use shared::marshal::Unmarshal as _;

/// One endpoint's codec pair.
enum Codecs {
    Pcmu(
        audio_codec::pcmu::PcmuEncoder,
        audio_codec::pcmu::PcmuDecoder,
    ),
    G722(
        Box<audio_codec::g722::G722Encoder>,
        Box<audio_codec::g722::G722Decoder>,
    ),
    Opus(opus::Encoder, opus::Decoder),
}

/// An RTP endpoint sending a tone and recording what it hears.
pub struct Endpoint {
    pub codec: Codec,
    pub socket: UdpSocket,
    codecs: Codecs,
    pub rate: u32,
    pub tone_hz: f32,
    pub tone_dbov: f32,
    phase: u64,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    /// Decoded audio heard, at the endpoint's rate.
    pub heard: Vec<i16>,
    pub sending: bool,
    /// SRTP when the leg is secured.
    srtp: Option<SrtpSession>,
    /// Packets that failed SRTP authentication here.
    pub srtp_failures: u64,
    /// Where RTCP goes without rtcp-mux (the odd port of a pair), if the endpoint has one.
    pub rtcp_socket: Option<UdpSocket>,
    /// RTCP received (after SRTCP), on either socket, with the address it came from.
    pub rtcp_in: Vec<(SocketAddr, Vec<u8>, Instant)>,
    /// RFC 6464 level (-dBov, with the voice bit) sent in every packet under this extension id.
    pub audio_level_ext: Option<(u8, u8)>,
    /// Every `n`-th frame is encoded but not sent (loss at the source, seen as a sequence gap).
    pub drop_every: Option<u32>,
    /// The tone is on for `.0` frames, then off for `.1` (speech-like bursts the detector
    /// takes for talking; a steady tone is not speech).
    pub bursts: Option<(u64, u64)>,
    /// Between bursts nothing is sent (silence suppression, DTX): the sequence number goes on
    /// where it stopped while the timestamp jumps by the length of the pause.
    pub silence_suppression: bool,
    frames_sent: u64,
    /// When each frame was sent (or would have been), and whether its tone was on.
    pub sent_at: Vec<(Instant, bool)>,
    /// When each packet was heard, with the end of its samples in `heard`.
    pub heard_at: Vec<(Instant, usize)>,
    /// CSRCs and RFC 6465 levels (extension `csrc_level_id`) of the last packet heard.
    pub csrc_level_id: Option<u8>,
    pub last_csrcs: Vec<u32>,
    pub last_csrc_levels: Option<Vec<u8>>,
    /// SSRC of the bridge's stream to this endpoint.
    pub bridge_ssrc: Option<u32>,
    /// A second tone summed with the first (DTMF is two), each at `tone_dbov`.
    pub second_tone_hz: Option<f32>,
}

impl Endpoint {
    pub fn new(codec: Codec, tone_hz: f32, tone_dbov: f32, ssrc: u32) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let (codecs, rate) = match codec {
            Codec::Pcmu | Codec::Pcma => (
                Codecs::Pcmu(
                    audio_codec::pcmu::PcmuEncoder::new(),
                    audio_codec::pcmu::PcmuDecoder::new(),
                ),
                8000,
            ),
            Codec::G722 => (
                Codecs::G722(
                    Box::new(audio_codec::g722::G722Encoder::new()),
                    Box::new(audio_codec::g722::G722Decoder::new()),
                ),
                16000,
            ),
            Codec::Opus => (
                Codecs::Opus(
                    opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)
                        .unwrap(),
                    opus::Decoder::new(48000, opus::Channels::Mono).unwrap(),
                ),
                48000,
            ),
        };
        Endpoint {
            codec,
            socket,
            codecs,
            rate,
            tone_hz,
            tone_dbov,
            phase: 0,
            sequence: 1000,
            timestamp: 5000,
            ssrc,
            heard: Vec::new(),
            sending: true,
            srtp: None,
            srtp_failures: 0,
            rtcp_socket: None,
            rtcp_in: Vec::new(),
            audio_level_ext: None,
            drop_every: None,
            bursts: None,
            silence_suppression: false,
            sent_at: Vec::new(),
            heard_at: Vec::new(),
            frames_sent: 0,
            csrc_level_id: None,
            last_csrcs: Vec::new(),
            last_csrc_levels: None,
            bridge_ssrc: None,
            second_tone_hz: None,
        }
    }

    /// Secures the endpoint with SDES keys as the bridge sees them (so `keys.local` is what the
    /// bridge encrypts with, and this endpoint decrypts with it).
    pub fn use_srtp(&mut self, bridge_keys: &SrtpKeys) {
        let mine = SrtpKeys {
            suite: bridge_keys.suite,
            local: bridge_keys.remote,
            remote: bridge_keys.local,
        };
        self.srtp = Some(SrtpSession::new(&mine).unwrap());
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Gives the endpoint a separate RTCP socket; returns its address.
    pub fn separate_rtcp(&mut self) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        let addr = s.local_addr().unwrap();
        self.rtcp_socket = Some(s);
        addr
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sends an RTCP packet (SRTCP when secured) from the RTCP socket, or the RTP one.
    pub fn send_rtcp(&mut self, to: SocketAddr, packet: &[u8]) {
        let packet = match &mut self.srtp {
            Some(srtp) => srtp.protect_rtcp(packet).unwrap(),
            None => packet.to_vec(),
        };
        let socket = self.rtcp_socket.as_ref().unwrap_or(&self.socket);
        socket.send_to(&packet, to).unwrap();
    }

    /// Sends one RTP packet with this endpoint's SSRC and next sequence number.
    pub fn send_raw(&mut self, to: SocketAddr, payload_type: u8, timestamp: u32, payload: &[u8]) {
        let mut packet = vec![0x80, payload_type];
        packet.extend_from_slice(&self.sequence.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        packet.extend_from_slice(payload);
        self.sequence = self.sequence.wrapping_add(1);
        if let Some(srtp) = &mut self.srtp {
            packet = srtp.protect_rtp(&packet).unwrap();
        }
        let _ = self.socket.send_to(&packet, to);
    }

    /// Sends the next 20 ms of tone to `to`.
    pub fn send_frame(&mut self, to: SocketAddr) {
        let n = (self.rate / 50) as usize;
        let on = self
            .bursts
            .is_none_or(|(on, off)| self.frames_sent % (on + off) < on);
        let amplitude = if on {
            32768.0 * 10f64.powf(f64::from(self.tone_dbov) / 20.0) * std::f64::consts::SQRT_2
        } else {
            0.0
        };
        self.frames_sent += 1;
        self.sent_at.push((Instant::now(), on));
        if !on && self.silence_suppression {
            let ticks = if self.codec == Codec::Opus { 960 } else { 160 };
            self.phase += u64::from(self.rate / 50);
            self.timestamp = self.timestamp.wrapping_add(ticks);
            return;
        }
        let step = 2.0 * std::f64::consts::PI * f64::from(self.tone_hz) / f64::from(self.rate);
        let step2 = self.second_tone_hz.map_or(0.0, |f| {
            2.0 * std::f64::consts::PI * f64::from(f) / f64::from(self.rate)
        });
        let second = if self.second_tone_hz.is_some() {
            1.0
        } else {
            0.0
        };
        let pcm: Vec<i16> = (0..n)
            .map(|i| {
                let t = (self.phase + i as u64) as f64;
                (amplitude * ((step * t).sin() + second * (step2 * t).sin())).round() as i16
            })
            .collect();
        self.phase += n as u64;
        let mut payload = vec![0u8; 1500];
        let len = match &mut self.codecs {
            Codecs::Pcmu(e, _) => e.encode_into(&pcm, &mut payload).unwrap(),
            Codecs::G722(e, _) => e.encode_into(&pcm, &mut payload).unwrap(),
            Codecs::Opus(e, _) => e.encode(&pcm, &mut payload).unwrap(),
        };
        let (pt, ticks) = match self.codec {
            Codec::Pcmu => (0u8, 160u32),
            Codec::Pcma => (8, 160),
            Codec::G722 => (9, 160),
            Codec::Opus => (111, 960),
        };
        let mut packet = vec![0x80, pt];
        packet.extend_from_slice(&self.sequence.to_be_bytes());
        packet.extend_from_slice(&self.timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        if let Some((id, level)) = self.audio_level_ext {
            packet[0] |= 0x10;
            packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, id << 4, level, 0, 0]);
        }
        packet.extend_from_slice(&payload[..len]);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(ticks);
        if let Some(srtp) = &mut self.srtp {
            packet = srtp.protect_rtp(&packet).unwrap();
        }
        let dropped = self
            .drop_every
            .is_some_and(|n| self.frames_sent.is_multiple_of(u64::from(n)));
        if self.sending && !dropped {
            let _ = self.socket.send_to(&packet, to);
        }
    }

    /// Reads and decodes whatever arrived; keeps RTCP aside.
    pub fn receive(&mut self) {
        let mut datagram = [0u8; 2048];
        if let Some(rtcp) = &self.rtcp_socket {
            while let Ok((n, from)) = rtcp.recv_from(&mut datagram) {
                let plain = match &mut self.srtp {
                    None => Some(datagram[..n].to_vec()),
                    Some(srtp) => srtp.unprotect_rtcp(&datagram[..n]).ok(),
                };
                match plain {
                    Some(p) => self.rtcp_in.push((from, p, Instant::now())),
                    None => self.srtp_failures += 1,
                }
            }
        }
        while let Ok((n, from)) = self.socket.recv_from(&mut datagram) {
            if n >= 2 && (192..=223).contains(&datagram[1]) {
                let plain = match &mut self.srtp {
                    None => Some(datagram[..n].to_vec()),
                    Some(srtp) => srtp.unprotect_rtcp(&datagram[..n]).ok(),
                };
                match plain {
                    Some(p) => self.rtcp_in.push((from, p, Instant::now())),
                    None => self.srtp_failures += 1,
                }
                continue;
            }
            let buf: Vec<u8> = match &mut self.srtp {
                None => datagram[..n].to_vec(),
                Some(srtp) => match srtp.unprotect_rtp(&datagram[..n]) {
                    Ok(plain) => plain,
                    Err(_) => {
                        self.srtp_failures += 1;
                        continue;
                    }
                },
            };
            // The header is read by rtc-rtp, not by Confab's parser.
            let mut reader = &buf[..];
            let Ok(header) = rtc_rtp::header::Header::unmarshal(&mut reader) else {
                continue;
            };
            let payload = reader;
            if payload.is_empty() {
                continue;
            }
            self.bridge_ssrc = Some(header.ssrc);
            self.last_csrcs = header.csrc.clone();
            self.last_csrc_levels = self
                .csrc_level_id
                .and_then(|id| header.get_extension(id))
                .map(|b| b.to_vec());
            match &mut self.codecs {
                Codecs::Pcmu(_, d) => {
                    let mut out = vec![0i16; payload.len()];
                    let k = d.decode_into(payload, &mut out).unwrap();
                    self.heard.extend_from_slice(&out[..k]);
                }
                Codecs::G722(_, d) => {
                    let mut out = vec![0i16; payload.len() * 2];
                    let k = d.decode_into(payload, &mut out).unwrap();
                    self.heard.extend_from_slice(&out[..k]);
                }
                Codecs::Opus(_, d) => {
                    let mut out = vec![0i16; 5760];
                    let k = d.decode(payload, &mut out, false).unwrap();
                    self.heard.extend_from_slice(&out[..k]);
                }
            }
            self.heard_at.push((Instant::now(), self.heard.len()));
        }
    }

    /// Mouth-to-ear delay through the bridge of each tone onset `talker` sent after `since`:
    /// from the frame where its tone came on to the first packet this endpoint heard after it
    /// that is loud (above -35 dBov). Needs the talker's `bursts`.
    pub fn onset_delays(&self, talker: &Endpoint, since: Instant) -> Vec<Duration> {
        let mut delays = Vec::new();
        for w in talker.sent_at.windows(2) {
            let ((_, was_on), (at, on)) = (w[0], w[1]);
            if !on || was_on || at < since {
                continue;
            }
            let mut start = 0;
            for &(heard, end) in &self.heard_at {
                let samples = &self.heard[start..end];
                start = end;
                if heard < at || samples.is_empty() {
                    continue;
                }
                let power = samples.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>()
                    / samples.len() as f64;
                let dbov = 10.0 * (power / (32768.0f64 * 32768.0 / 2.0)).log10();
                if dbov > -35.0 {
                    delays.push(heard.duration_since(at));
                    break;
                }
            }
        }
        delays
    }

    /// Level in dBov of `freq` in the last `seconds` heard.
    pub fn level_of(&self, freq: f32, seconds: f32) -> f32 {
        let n = (seconds * self.rate as f32) as usize;
        let tail = &self.heard[self.heard.len().saturating_sub(n)..];
        confab_dsp::signal::tone_level_dbov(tail, self.rate, freq)
    }
}

/// Runs `endpoints` in real time for `duration`: every 20 ms each sends a frame to its bridge
/// address and reads what came back. `each_tick` runs after every round. What arrives after the
/// last round (the bridge concealing senders that stopped) is left unread.
pub fn run(
    endpoints: &mut [(&mut Endpoint, SocketAddr)],
    duration: Duration,
    mut each_tick: impl FnMut(u32),
) {
    let start = Instant::now();
    let mut deadline = start;
    let mut tick = 0u32;
    while deadline.duration_since(start) < duration {
        for (e, to) in endpoints.iter_mut() {
            e.send_frame(*to);
            e.receive();
        }
        each_tick(tick);
        tick += 1;
        deadline += Duration::from_millis(20);
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// A free port range for one engine: ten even ports above a port the OS just handed out.
pub fn free_port_range() -> (u16, u16) {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    let start = port.saturating_sub(port % 2).clamp(20000, 60000);
    (start, start + 40)
}

/// Whose turn it is: real-time tests (media, real clients) hold it alone, other tests share it.
static TURN: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Real-time tests take turns, and no other test runs beside one: on a 2-core machine two at
/// once would measure each other's scheduling, not the bridge. (When each test file was a binary
/// of its own, a real-time test never ran beside another file's tests.) Not reentrant: a test
/// takes it once, at its start, and no helper takes it.
pub fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    // A test that failed while holding it poisons it; the next test's turn is still its own.
    TURN.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// For tests without real-time media (configuration checks, a binary's flags and signals):
/// they run beside each other, never beside an `exclusive` test.
pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    TURN.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Whether the programs a test needs from outside the repository are installed. When one is
/// missing the test says which and should return at once (a skip); in CI (`CI` set, as .ci/run
/// runs), which installs them all with scripts/prereqs, a missing one fails the test instead,
/// so CI never passes by skipping.
pub fn require(programs: &[&str]) -> bool {
    let missing: Vec<String> = programs
        .iter()
        .filter(|p| !on_path(p))
        .map(|p| format!("{p} is not installed"))
        .collect();
    skip_unless_empty(&missing)
}

/// Whether python3 can import `modules` (the test's Python clients: aiortc, kubernetes-validate).
pub fn require_python(modules: &[&str]) -> bool {
    if !require(&["python3"]) {
        return false;
    }
    let imports = format!("import {}", modules.join(", "));
    let ok = std::process::Command::new("python3")
        .args(["-c", &imports])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if ok {
        Vec::new()
    } else {
        vec![format!("python3 cannot import {}", modules.join(", "))]
    };
    skip_unless_empty(&missing)
}

/// Whether `what` (a file or folder the prerequisites install, named from the repository's
/// root) is there.
pub fn require_path(what: &str) -> bool {
    let there = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(what)
        .exists();
    let missing = if there {
        Vec::new()
    } else {
        vec![format!("{what} is missing")]
    };
    skip_unless_empty(&missing)
}

pub fn skip_unless_empty(missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    let why = missing.join("; ");
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(
        !in_ci,
        "{test}: {why} (CI installs it: .ci/run runs scripts/prereqs test)"
    );
    eprintln!("SKIP {test}: {why} (scripts/prereqs test installs it)");
    false
}

/// A media engine with one mixer thread on a free loopback port range.
pub fn engine(media_timeout: Duration) -> confab::engine::Engine {
    engine_with(media_timeout, Default::default())
}

/// The same with leg timers of the test's choosing.
pub fn engine_with(
    media_timeout: Duration,
    leg_timers: confab::media::leg::LegTimers,
) -> confab::engine::Engine {
    engine_sized(media_timeout, leg_timers, 20)
}

/// An engine with room for `legs` legs.
pub fn engine_sized(
    media_timeout: Duration,
    leg_timers: confab::media::leg::LegTimers,
    legs: u16,
) -> confab::engine::Engine {
    let (min, _) = free_port_range();
    let max = min.saturating_add(2 * legs).min(65534);
    confab::engine::Engine::start(confab::engine::EngineSettings {
        mixer_threads: 1,
        max_talkers: 3,
        media_bind: std::net::IpAddr::from([127, 0, 0, 1]),
        rtp_port_min: min,
        rtp_port_max: max,
        media_timeout,
        leg_timers,
        records: None,
    })
    .unwrap()
}

/// An SDP offer for `e`'s port with one payload type (plain RTP, rtcp-mux).
pub fn offer_for(e: &Endpoint, pt: u8, rtpmap: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {rtpmap}\r\na=rtcp-mux\r\n",
        e.addr().port()
    )
}

/// The loopback media address of an SDP answer's audio m-line.
pub fn media_of(answer: &str) -> SocketAddr {
    let port: u16 = answer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `f` every 50 ms until it holds or `limit` has passed; whether it held.
pub fn wait_for(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
