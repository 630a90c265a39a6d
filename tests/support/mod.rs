//! Test endpoints: RTP peers written in the test, with codecs from outside Confab (audio-codec
//! for G.711 and G.722, libopus through the `opus` crate), so what we measure never trusts our
//! own encoder or decoder.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use audio_codec::{Decoder as _, Encoder as _};
use confab::media::codec::Codec;
use confab::media::srtp::{SrtpKeys, SrtpSession};

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
    tone_hz: f32,
    tone_dbov: f32,
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

    /// Opus only: carry in-band FEC for an expected loss rate.
    pub fn enable_fec(&mut self, loss_percent: i32) {
        if let Codecs::Opus(e, _) = &mut self.codecs {
            e.set_inband_fec(true).unwrap();
            e.set_packet_loss_perc(loss_percent).unwrap();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Sends the next 20 ms of tone to `to`.
    pub fn send_frame(&mut self, to: SocketAddr) {
        let n = (self.rate / 50) as usize;
        let amplitude =
            32768.0 * 10f64.powf(f64::from(self.tone_dbov) / 20.0) * std::f64::consts::SQRT_2;
        let step = 2.0 * std::f64::consts::PI * f64::from(self.tone_hz) / f64::from(self.rate);
        let pcm: Vec<i16> = (0..n)
            .map(|i| (amplitude * (step * (self.phase + i as u64) as f64).sin()).round() as i16)
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
        packet.extend_from_slice(&payload[..len]);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(ticks);
        if let Some(srtp) = &mut self.srtp {
            packet = srtp.protect_rtp(&packet).unwrap();
        }
        if self.sending {
            let _ = self.socket.send_to(&packet, to);
        }
    }

    /// Reads and decodes whatever arrived.
    pub fn receive(&mut self) {
        let mut datagram = [0u8; 2048];
        while let Ok(n) = self.socket.recv(&mut datagram) {
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
            let n = buf.len();
            if n < 12 || buf[0] >> 6 != 2 {
                continue;
            }
            let cc = usize::from(buf[0] & 0x0F);
            let start = 12 + 4 * cc;
            if n <= start {
                continue;
            }
            let payload = &buf[start..n];
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
        }
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

/// A UDP relay between an endpoint and the bridge that impairs the endpoint's packets (loss,
/// uniform extra delay, hence reordering) from a seeded generator and passes the bridge's
/// packets back untouched. Stops by itself after `lifetime`.
pub struct Relay {
    pub addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Relay {
    pub fn start(
        endpoint: SocketAddr,
        bridge: SocketAddr,
        loss: f64,
        max_delay: Duration,
        seed: u64,
        lifetime: Duration,
    ) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut rng = seed | 1;
            let mut random = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let started = Instant::now();
            let mut queue: Vec<(Instant, Vec<u8>)> = Vec::new();
            let mut dropped = 0u64;
            let mut buf = [0u8; 2048];
            while started.elapsed() < lifetime {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if from == endpoint {
                        if random() < loss {
                            dropped += 1;
                        } else {
                            let due = Instant::now() + max_delay.mul_f64(random());
                            queue.push((due, buf[..n].to_vec()));
                        }
                    } else if from == bridge {
                        let _ = socket.send_to(&buf[..n], endpoint);
                    }
                }
                let now = Instant::now();
                queue.sort_by_key(|(due, _)| *due);
                while queue.first().is_some_and(|(due, _)| *due <= now) {
                    let (_, packet) = queue.remove(0);
                    let _ = socket.send_to(&packet, bridge);
                }
            }
            dropped
        });
        Relay {
            addr,
            thread: Some(thread),
        }
    }

    /// Waits for the relay to stop; returns how many packets it dropped.
    pub fn finish(mut self) -> u64 {
        self.thread.take().map(|t| t.join().unwrap()).unwrap_or(0)
    }
}

/// Real-time tests in one binary take turns: on a 2-core machine two of them at once would
/// measure each other's scheduling, not the bridge.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A media engine with one mixer thread on a free loopback port range.
pub fn engine(media_timeout: Duration) -> confab::engine::Engine {
    let (min, max) = free_port_range();
    confab::engine::Engine::start(confab::engine::EngineSettings {
        mixer_threads: 1,
        max_talkers: 3,
        media_bind: std::net::IpAddr::from([127, 0, 0, 1]),
        rtp_port_min: min,
        rtp_port_max: max,
        media_timeout,
    })
    .unwrap()
}
