//! Real SIP clients (baresip) driven headlessly on loopback, a bridge with SIP to call, and the
//! audio checks: a tone's share of the power in 0.5 s Hann-windowed blocks, measured here (not
//! with Confab's own DSP).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use confab::engine::Engine;
use confab::media::codec::Codec;
use confab::sip::attendant::AttendantSettings;
use confab::sip::prompts::PromptBook;
use confab::sip::server::{AttendantConfig, SipServer};
use confab::sip::uas::UasSettings;

/// A bridge with SIP on a free loopback port.
pub struct SipBridge {
    pub runtime: tokio::runtime::Runtime,
    pub engine: Arc<Engine>,
    pub sip: Option<SipServer>,
    /// The engine's events, for more subscribers.
    pub events: tokio::sync::broadcast::Sender<confab::mixer::conference::ConferenceEvent>,
}

impl SipBridge {
    /// The participant of `conference` whose URI names `name` (`sip:name@`), if any.
    pub fn participant(
        &self,
        conference: &str,
        name: &str,
    ) -> Option<confab::conference::Participant> {
        self.engine
            .roster(conference)
            .ok()?
            .into_iter()
            .find(|p| p.uri.contains(&format!("sip:{name}@")))
    }

    pub fn start() -> Self {
        Self::with_room(20)
    }

    /// A bridge whose engine has room for `legs` legs.
    pub fn with_room(legs: u16) -> Self {
        Self::configured(legs, |_| {})
    }

    /// A bridge that also takes SIP over TLS (on a free port) with the test PKI's
    /// certificate, and exchanges SDES keys only there (the default policy).
    pub fn with_tls(pki: &super::pki::TestPki) -> Self {
        let config = confab::tls::server_config(&pki.cert, &pki.key, &[]).unwrap();
        let client = confab::tls::client_config(Some(&pki.ca)).unwrap();
        Self::configured(20, |s| {
            s.tls = Some(confab::sip::uas::TlsListener {
                listen: "127.0.0.1:0".parse().unwrap(),
                config,
                client: Some(client),
            });
            s.sdes_over_cleartext = false;
        })
    }

    /// A bridge with room for `legs` legs and its SIP settings changed by `adjust`.
    pub fn configured(legs: u16, adjust: impl FnOnce(&mut UasSettings)) -> Self {
        Self::configured_with(legs, adjust, |_| {})
    }

    /// A bridge whose attendant (prompts, languages, keypad) is changed by `adjust`.
    pub fn with_attendant(adjust: impl FnOnce(&mut AttendantConfig)) -> Self {
        Self::configured_with(20, |_| {}, adjust)
    }

    fn configured_with(
        legs: u16,
        adjust: impl FnOnce(&mut UasSettings),
        adjust_attendant: impl FnOnce(&mut AttendantConfig),
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let engine = Arc::new(super::engine_sized(
            Duration::from_secs(30),
            Default::default(),
            legs,
        ));
        let events = engine.broadcast_events().unwrap();
        let mut settings = UasSettings {
            local: "127.0.0.1:0".parse().unwrap(),
            trusted: vec![confab::config::Network::loopback_v4()],
            access_user: "conference".into(),
            codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
            outbound_proxy: None,
            dispatcher: None,
            max_calls: 1000,
            invites_per_second: 50,
            advertise: None,
            media_advertise: None,
            route: confab::addr::route_source,
            tls: None,
            srtp: confab::config::SrtpPolicy::Optional,
            sdes_over_cleartext: true,
            conference_srtp: Default::default(),
            auth: Default::default(),
            credentials: Vec::new(),
            kept_while_draining: Default::default(),
        };
        adjust(&mut settings);
        let mut attendant = AttendantConfig {
            prompts: Arc::new(PromptBook::embedded(&["en".to_owned()]).unwrap()),
            menu_languages: Vec::new(),
            access_users: Vec::new(),
            settings: AttendantSettings::default(),
            max_failures_per_source: 3,
            keypad: Default::default(),
            placement: None,
        };
        adjust_attendant(&mut attendant);
        super::wire_scan::install_in_process();
        let sip = runtime
            .block_on(SipServer::start(settings, attendant, Arc::clone(&engine)))
            .unwrap();
        SipBridge {
            runtime,
            engine,
            sip: Some(sip),
            events,
        }
    }

    pub fn sip_addr(&self) -> std::net::SocketAddr {
        self.sip.as_ref().unwrap().udp
    }

    /// Where SIP over TLS is taken (a bridge made `with_tls`).
    pub fn tls_addr(&self) -> std::net::SocketAddr {
        self.sip.as_ref().unwrap().tls.expect("a bridge with TLS")
    }
}

impl Drop for SipBridge {
    fn drop(&mut self) {
        if let Some(sip) = self.sip.take() {
            let local = sip.udp;
            self.runtime.block_on(sip.stop());
            super::wire_scan::check_in_process(local);
        }
    }
}

/// A free UDP port pair base for a client (even, with room above).
pub fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = s.local_addr().unwrap().port();
    p - p % 2
}

/// A sine WAV made by sox.
pub fn tone_wav(path: &Path, rate: u32, freq: f32, seconds: u32) {
    let ok = Command::new("sox")
        .args(["-D", "-n", "-r", &rate.to_string(), "-c", "1", "-b", "16"])
        .arg(path)
        .args([
            "synth",
            &seconds.to_string(),
            "sine",
            &freq.to_string(),
            "vol",
            "0.3",
        ])
        .status()
        .expect("sox (Debian package sox) is needed for this test")
        .success();
    assert!(ok, "sox failed");
}

/// A baresip instance in its own config directory.
pub struct Baresip {
    pub dir: PathBuf,
    /// Where this baresip takes SIP.
    pub sip_port: u16,
    child: Child,
    stdin: Option<std::process::ChildStdin>,
}

pub struct BaresipOptions<'a> {
    pub name: &'a str,
    pub codec: &'a str,
    pub srtp: bool,
    pub tone_hz: f32,
    pub target: String,
    pub seconds: u32,
    /// Commands can be typed (`Baresip::type_command`), e.g. `/sndcode 1234#` for RFC 4733.
    pub interactive: bool,
}

impl Baresip {
    /// Starts baresip, which dials `target` at once (none: it waits for calls and answers
    /// them itself) and quits after `seconds` (with a BYE).
    pub fn dial(root: &Path, o: BaresipOptions<'_>) -> Self {
        Self::dial_as(root, o, None)
    }

    /// The same with a digest account (`auth_user`, `auth_pass`) for the challenges it meets.
    pub fn dial_as(root: &Path, o: BaresipOptions<'_>, account: Option<(&str, &str)>) -> Self {
        let dir = root.join(o.name);
        std::fs::create_dir_all(dir.join("rec")).unwrap();
        let wav = dir.join("tone.wav");
        tone_wav(&wav, 48000, o.tone_hz, o.seconds + 10);
        let sip_port = free_port();
        let rtp = free_port();
        let config = format!(
            "sip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
             audio_source aufile,{wav}\nausrc_srate 48000\nausrc_channels 1\n\
             audio_player aubridge,null-{name}\nrtp_ports {rtp}-{rtp_end}\n\
             snd_path {rec}\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule g722.so\nmodule opus.so\nmodule srtp.so\n\
             module aufile.so\nmodule aubridge.so\nmodule sndfile.so\n{stdio}\
             module_tmp account.so\nmodule_app menu.so\n",
            stdio = if o.interactive {
                "module stdio.so\n"
            } else {
                ""
            },
            wav = wav.display(),
            name = o.name,
            rtp_end = rtp + 9,
            rec = dir.join("rec").display(),
        );
        std::fs::write(dir.join("config"), config).unwrap();
        let enc = if o.srtp { ";mediaenc=srtp-mand" } else { "" };
        let auth = account
            .map(|(user, pass)| format!(";auth_user={user};auth_pass={pass}"))
            .unwrap_or_default();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{name}@127.0.0.1:{sip_port}>;regint=0;answermode={mode};audio_codecs={codec}{enc}{auth}\n",
                name = o.name,
                codec = o.codec,
                // Waiting for calls: answered at once, unless commands are to be typed.
                mode = if o.target.is_empty() && !o.interactive { "auto" } else { "manual" },
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let mut command = Command::new("baresip");
        command.arg("-f").arg(&dir);
        if !o.target.is_empty() {
            command.args(["-e", &format!("/dial {}", o.target)]);
        }
        let mut child = command
            .args(["-t", &o.seconds.to_string()])
            .stdin(if o.interactive {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip (Debian package baresip-core) is needed for this test");
        let stdin = child.stdin.take();
        Baresip {
            dir,
            sip_port,
            child,
            stdin,
        }
    }

    /// Types a command at baresip's prompt (interactive instances only).
    pub fn type_command(&mut self, command: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("not an interactive baresip");
        stdin.write_all(command.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Whether baresip has quit.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for baresip to quit by itself (bounded), killing it past `limit`.
    pub fn wait(&mut self, limit: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What baresip decoded from the bridge (the sndfile module's `*-dec.wav`).
    pub fn heard(&self) -> (u32, Vec<i16>) {
        let rec = self.dir.join("rec");
        let file = std::fs::read_dir(&rec)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default();
                panic!(
                    "no decoded recording in {}; baresip said:\n{log}",
                    rec.display()
                )
            });
        read_wav(&file)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 16-bit PCM WAV (first channel): its rate and samples.
pub fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[0..4], b"RIFF", "{}", path.display());
    let mut at = 12;
    let (mut rate, mut channels) = (0u32, 1usize);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            channels = usize::from(u16::from_le_bytes([body[2], body[3]]));
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, samples);
        }
        at += 8 + len + (len % 2);
    }
    panic!("no data chunk in {}", path.display());
}

/// Per 0.5 s block: the share (dB) of the block's power that is at `freq` (Hann window).
pub fn tone_shares(samples: &[i16], rate: u32, freq: f32) -> Vec<f32> {
    let n = (rate / 2) as usize;
    let window: Vec<f64> = (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect();
    let w_sum: f64 = window.iter().sum();
    let w_sq: f64 = window.iter().map(|w| w * w).sum();
    let step = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate);
    samples
        .chunks_exact(n)
        .map(|block| {
            let (mut re, mut im, mut energy) = (0.0f64, 0.0f64, 0.0f64);
            for (i, (&s, w)) in block.iter().zip(&window).enumerate() {
                let x = f64::from(s) * w;
                re += x * (step * i as f64).cos();
                im -= x * (step * i as f64).sin();
                energy += x * x;
            }
            // A sine of amplitude A gives |X| = A/2 * sum(w): its power A^2/2 is
            // 2|X|^2 / sum(w)^2; the block's power is energy / sum(w^2).
            let tone = 2.0 * (re * re + im * im) / (w_sum * w_sum);
            let total = energy / w_sq;
            if total < 1.0 {
                return -100.0;
            }
            (10.0 * (tone / total).log10()) as f32
        })
        .collect()
}

fn percentile(values: &[f32], p: f64) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    if v.is_empty() {
        return -100.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// INTEROP.md's rule: present = median share >= -15 dB.
pub fn present(shares: &[f32]) -> bool {
    percentile(shares, 0.5) >= -15.0
}

/// Absent = 90th percentile share <= -30 dB.
pub fn absent(shares: &[f32]) -> bool {
    percentile(shares, 0.9) <= -30.0
}

pub fn describe(shares: &[f32]) -> String {
    format!(
        "median {:.1} dB, p90 {:.1} dB over {} blocks",
        percentile(shares, 0.5),
        percentile(shares, 0.9),
        shares.len()
    )
}

/// A SIP user agent written in the test: plain messages over UDP, one call at a time.
pub struct RawUa {
    socket: std::net::UdpSocket,
    bridge: std::net::SocketAddr,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
    user: String,
    /// Header lines added to the INVITE (each ending in CRLF).
    pub extra_headers: String,
    /// The last final response to an INVITE, whole.
    pub last_final: String,
}

impl RawUa {
    pub fn new(bridge: std::net::SocketAddr, call_id: &str) -> Self {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        RawUa {
            socket,
            bridge,
            call_id: call_id.to_owned(),
            from_tag: format!("t{call_id}"),
            to_tag: None,
            cseq: 1,
            user: String::new(),
            extra_headers: String::new(),
            last_final: String::new(),
        }
    }

    fn local(&self) -> std::net::SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn send(&self, text: &str) {
        self.socket.send_to(text.as_bytes(), self.bridge).unwrap();
    }

    /// The next message from the bridge; a BYE is answered 200 and returned too.
    pub fn recv(&self) -> Option<String> {
        let mut buf = [0u8; 8192];
        let n = self.socket.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("BYE ") {
            let copy = |name: &str| {
                text.split("\r\n")
                    .filter(|l| l.starts_with(&format!("{name}: ")))
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>()
            };
            let ok = format!(
                "SIP/2.0 200 OK\r\n{}{}{}{}{}Content-Length: 0\r\n\r\n",
                copy("Via"),
                copy("From"),
                copy("To"),
                copy("Call-ID"),
                copy("CSeq")
            );
            self.send(&ok);
        }
        Some(text)
    }

    /// The next message from the bridge if one comes within `wait` (a BYE is answered 200).
    pub fn poll(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).ok()?;
        let message = self.recv();
        let _ = self.socket.set_read_timeout(Some(Duration::from_secs(5)));
        message
    }

    fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        msg.split("\r\n")
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    /// Sends an INVITE to `user` with `sdp`; returns the final status and the answer's body,
    /// acknowledging it.
    pub fn invite(&mut self, user: &str, sdp: &str) -> (u16, String) {
        self.invite_with(user, sdp, |_| String::new())
    }

    /// An INVITE whose ACK carries `ack_body(200's body)` (an offerless INVITE's answer).
    pub fn invite_with(
        &mut self,
        user: &str,
        sdp: &str,
        ack_body: impl FnOnce(&str) -> String,
    ) -> (u16, String) {
        self.user = user.to_owned();
        let local = self.local();
        let branch = format!("z9hG4bK{}i", self.call_id);
        let msg = format!(
            "INVITE sip:{user}@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             From: <sip:raw@{local}>;tag={tag}\r\nTo: <sip:{user}@{b}>\r\nCall-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:raw@{local}>\r\nMax-Forwards: 70\r\n{extra}\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            extra = self.extra_headers,
            b = self.bridge,
            tag = self.from_tag,
            cid = self.call_id,
            len = sdp.len()
        );
        self.send(&msg);
        loop {
            let Some(r) = self.recv() else {
                return (0, String::new());
            };
            let code: u16 = r.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            if code < 200 {
                continue;
            }
            self.last_final = r.clone();
            let to = Self::header(&r, "To").unwrap_or_default().to_owned();
            self.to_tag = to.split(";tag=").nth(1).map(str::to_owned);
            let ack_branch = if code == 200 {
                format!("{branch}a")
            } else {
                branch.clone()
            };
            let body = r.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
            let answer = if code == 200 {
                ack_body(&body)
            } else {
                String::new()
            };
            let kind = if answer.is_empty() {
                ""
            } else {
                "Content-Type: application/sdp\r\n"
            };
            let ack = format!(
                "ACK sip:{user}@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={ack_branch}\r\n\
                 From: <sip:raw@{local}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
                 CSeq: 1 ACK\r\n{kind}Content-Length: {len}\r\n\r\n{answer}",
                b = self.bridge,
                tag = self.from_tag,
                cid = self.call_id,
                len = answer.len(),
            );
            self.send(&ack);
            return (code, body);
        }
    }

    /// An in-dialog request (INFO, BYE, ...); returns the response's status.
    pub fn request(&mut self, method: &str, content_type: Option<&str>, body: &str) -> u16 {
        self.cseq += 1;
        let local = self.local();
        let mut extra = String::new();
        if let Some(t) = content_type {
            extra = format!("Content-Type: {t}\r\n");
        }
        let msg = format!(
            "{method} sip:{user}@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{cid}{cseq}\r\n\
             From: <sip:raw@{local}>;tag={tag}\r\nTo: <sip:{user}@{b}>;tag={to}\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            user = self.user,
            b = self.bridge,
            tag = self.from_tag,
            to = self.to_tag.clone().unwrap_or_default(),
            cid = self.call_id,
            cseq = self.cseq,
            len = body.len()
        );
        self.send(&msg);
        while let Some(r) = self.recv() {
            if r.starts_with("SIP/2.0 ") && r.contains(&format!("CSeq: {} {method}", self.cseq)) {
                return r.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
        }
        0
    }
}

/// The media port of an SDP answer's first m-line.
pub fn answer_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}
