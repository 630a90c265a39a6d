//! baresip, the real SIP phone of the client tests, driven headlessly on loopback: one instance
//! per config directory, dialling (or answering), sending a tone file and recording what it
//! decoded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wav::{read_wav, tone_wav};

/// A free UDP port pair base for a client (even, with room above).
pub fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = s.local_addr().unwrap().port();
    p - p % 2
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
