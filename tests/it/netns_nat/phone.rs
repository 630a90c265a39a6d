//! The phones of the NAT tests: baresip in the client namespace, naming its private address
//! everywhere, dialling the meeting with a tone of its own (made by sox) and recording what it
//! decoded; commands typed at its prompt when it is interactive.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{CLIENT_IP, TONES};
use crate::support::clients::tone_wav;
use crate::support::netns::Namespaces;
use crate::support::process::Guarded;

/// How a phone calls.
#[derive(Clone, Copy, Default)]
pub(super) struct Way<'a> {
    /// Commands can be typed on its stdin (`/hold`, `/resume`).
    pub(super) interactive: bool,
    /// SIP over TLS with SDES-SRTP (mandatory), trusting this CA.
    pub(super) tls_ca: Option<&'a Path>,
}

/// baresip in the client namespace, dialling the meeting and quitting after `seconds`.
pub(super) fn phone(
    ns: &Namespaces,
    dir: &Path,
    index: usize,
    target: &str,
    seconds: u32,
    way: Way<'_>,
) -> Guarded {
    std::fs::create_dir_all(dir.join("rec")).unwrap();
    let wav = dir.join("tone.wav");
    tone_wav(&wav, 48000, TONES[index], 30);
    // baresip takes TLS on the SIP port + 1.
    let sip_port = 5070 + 2 * index;
    let rtp = 30000 + 20 * index;
    let tls = way.tls_ca.map_or(String::new(), |ca| {
        format!("sip_cafile {}\nmodule srtp.so\n", ca.display())
    });
    let config = format!(
        "sip_listen {CLIENT_IP}:{sip_port}\nnet_interface {CLIENT_IP}\n{tls}\
         audio_source aufile,{wav}\nausrc_srate 48000\nausrc_channels 1\n\
         audio_player aubridge,null-p{index}\nrtp_ports {rtp}-{end}\n\
         snd_path {rec}\nmodule_path /usr/lib/baresip/modules\n\
         module g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n{stdio}\
         module_tmp account.so\nmodule_app menu.so\n",
        wav = wav.display(),
        end = rtp + 9,
        rec = dir.join("rec").display(),
        stdio = if way.interactive {
            "module stdio.so\n"
        } else {
            ""
        },
    );
    std::fs::write(dir.join("config"), config).unwrap();
    let enc = if way.tls_ca.is_some() {
        ";mediaenc=srtp-mand"
    } else {
        ""
    };
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:p{index}@{CLIENT_IP}:{sip_port}>;regint=0;answermode=manual;audio_codecs=pcmu{enc}\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
    Guarded::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.client, "baresip", "-f"])
            .arg(dir)
            .args(["-e", &format!("/dial {target}"), "-t", &seconds.to_string()])
            .stdin(if way.interactive {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    )
}

/// Types a command at an interactive phone's prompt.
pub(super) fn type_command(phone: &mut Guarded, command: &str) {
    use std::io::Write;
    let stdin = phone.0.stdin.as_mut().expect("an interactive phone");
    stdin.write_all(command.as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
}

/// What baresip in `dir` said.
pub(super) fn phone_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default()
}

/// What baresip decoded (its sndfile `*-dec.wav`), as 16-bit samples at its rate.
pub(super) fn heard(dir: &Path) -> (u32, Vec<i16>) {
    let file = std::fs::read_dir(dir.join("rec"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("no recording; baresip said:\n{}", phone_log(dir)));
    let bytes = std::fs::read(file).unwrap();
    // A canonical 44-byte WAV header from sndfile: rate at 24, data after "data" + size.
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .map_or(44, |i| i + 8);
    let samples = bytes[data..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    (rate, samples)
}
