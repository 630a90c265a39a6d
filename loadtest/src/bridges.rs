//! The bridges under test and how a simulated participant joins them: Confab through its API
//! (an SDP offer per leg) or by SIP dial-in (our own small UAC), and Janus AudioBridge as a
//! plain-RTP participant over Janus' HTTP API.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

use confab::media::srtp::KeyMaterial;
use confab::sip::sdp::{base64_decode, base64_encode};

use crate::http::{self, Endpoint};
use crate::leg::{Codec, SimLeg};
use crate::measure::{self, BridgeMetrics};
use crate::net::Local;
use crate::sip_uac::Uac;

/// A bridge the generator can put participants into.
pub trait Bridge {
    /// Creates room `room` (0-based); its identifier for `join`.
    fn create_room(&mut self, room: usize) -> anyhow::Result<String>;
    /// Joins `leg` to `room` and points it at the bridge's media address.
    fn join(&mut self, room: &str, leg: &mut SimLeg, name: &str) -> anyhow::Result<()>;
    /// Ends every room and call this generator made.
    fn teardown(&mut self);
    /// Confab's API, for its own metrics.
    fn confab_api(&self) -> Option<(Endpoint, Option<String>)> {
        None
    }
    /// The bridge's own figures (late ticks, load), when it has them.
    fn metrics(&self) -> Option<BridgeMetrics> {
        let (api, token) = self.confab_api()?;
        measure::confab_metrics(&api, token.as_deref())
    }
    /// Threads of this process that are the bridge (one that runs inside the generator):
    /// its CPU is theirs.
    fn threads(&self) -> Option<Vec<u32>> {
        None
    }
}

/// The SDP offer of `leg`, naming `media` as its address.
fn offer(leg: &SimLeg, media: IpAddr) -> anyhow::Result<String> {
    let port = leg.local()?.port();
    let pt = leg.codec.payload_type();
    let (proto, crypto) = match &leg.srtp_key {
        None => ("RTP/AVP", String::new()),
        Some(key) => (
            "RTP/SAVP",
            format!("a=crypto:1 {SRTP_SUITE} inline:{}\r\n", base64_encode(key)),
        ),
    };
    let family = if media.is_ipv4() { "IP4" } else { "IP6" };
    Ok(format!(
        "v=0\r\no=- 1 1 IN {family} {media}\r\ns=load\r\nc=IN {family} {media}\r\nt=0 0\r\nm=audio {port} {proto} {pt}\r\na=rtpmap:{pt} {}\r\na=ptime:20\r\na=rtcp-mux\r\na=sendrecv\r\n{crypto}",
        leg.codec.rtpmap()
    ))
}

/// The one suite the generator offers.
const SRTP_SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

/// The bridge's SRTP key from an answer to an SRTP offer.
fn answer_key(sdp: &str) -> anyhow::Result<KeyMaterial> {
    let line = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=crypto:"))
        .ok_or_else(|| anyhow!("SRTP offered, answered without a=crypto"))?;
    let mut parts = line.split_whitespace().skip(1);
    if parts.next() != Some(SRTP_SUITE) {
        return Err(anyhow!("answer's crypto suite is not {SRTP_SUITE}: {line}"));
    }
    let key = parts
        .next()
        .and_then(|k| k.strip_prefix("inline:"))
        .and_then(|k| k.split('|').next())
        .and_then(base64_decode)
        .ok_or_else(|| anyhow!("answer's crypto key is not base64: {line}"))?;
    key.try_into()
        .map_err(|_| anyhow!("answer's crypto key is not 30 bytes: {line}"))
}

/// Points `leg` at the media of `answer` (at `local`'s replacement host for the bridge's
/// media, if it has one), and its SRTP key when it offered one.
fn take_answer(leg: &mut SimLeg, answer: &str, local: &Local) -> anyhow::Result<()> {
    let (addr, pt) = answer_media(answer)?;
    leg.bridge = local.bridge_media(addr);
    if let Some(pt) = pt {
        leg.payload_type = pt;
    }
    if leg.srtp_key.is_some() {
        leg.secure(answer_key(answer)?)?;
    }
    Ok(())
}

/// The media address and payload type of an SDP answer.
fn answer_media(sdp: &str) -> anyhow::Result<(SocketAddr, Option<u8>)> {
    let ip: IpAddr = sdp
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("c=IN IP4 ")
                .or_else(|| l.strip_prefix("c=IN IP6 "))
        })
        .ok_or_else(|| anyhow!("answer without c= line"))?
        .trim()
        .parse()
        .context("bad answer address")?;
    let m = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .ok_or_else(|| anyhow!("answer without m=audio"))?;
    let mut parts = m.split_whitespace();
    let port: u16 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("bad m= port"))?;
    let pt = parts.nth(1).and_then(|p| p.parse().ok());
    Ok((SocketAddr::new(ip, port), pt))
}

static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The first room number of a run: `base` + the process's slot + the run's slot.
fn run_base(base: u64, per_process: u64, per_run: u64) -> u64 {
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (per_process / per_run);
    base + u64::from(std::process::id() % 100) * per_process + run * per_run
}

/// How participants reach Confab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    Api,
    Sip,
}

pub struct Confab {
    api: Endpoint,
    token: Option<String>,
    sip: SocketAddr,
    way: Way,
    base_id: u64,
    rooms: Vec<String>,
    uac: Option<Uac>,
    /// Legs offer SDES-SRTP.
    srtp: bool,
    local: Local,
}

impl Confab {
    /// Confab with its API at `api` and SIP at `sip`; our legs on `local`'s addresses.
    pub fn new(
        api: Endpoint,
        token: Option<String>,
        sip: SocketAddr,
        way: Way,
        local: Local,
    ) -> anyhow::Result<Self> {
        if api.addr.ip().is_unspecified() || sip.ip().is_unspecified() {
            return Err(anyhow!(
                "the bridge's API ({}) and SIP ({sip}) need addresses to reach them at",
                api.addr
            ));
        }
        // Meeting IDs of this run: distinct per process and per run, so that another run
        // never meets rooms of an earlier one that are still ending.
        let base_id = run_base(1_000_000_000, 10_000_000, 200_000);
        Ok(Confab {
            api,
            token,
            sip,
            way,
            base_id,
            rooms: Vec::new(),
            uac: None,
            srtp: false,
            local,
        })
    }

    /// Every leg offers SDES-SRTP (AES_CM_128_HMAC_SHA1_80) and protects its packets.
    pub fn with_srtp(mut self, srtp: bool) -> Self {
        self.srtp = srtp;
        self
    }

    /// Joins `leg` to `room` by `way`, offering SDES-SRTP when `srtp`; what `leave` needs to
    /// end this leg alone (the soak's churn mixes both ways and both transports in one run).
    pub fn join_leg(
        &mut self,
        room: &str,
        leg: &mut SimLeg,
        name: &str,
        way: Way,
        srtp: bool,
    ) -> anyhow::Result<Joined> {
        if srtp {
            leg.offer_srtp();
        }
        match way {
            Way::Api => {
                let v = http::json(
                    &self.api,
                    "POST",
                    &format!("/v1/conferences/{room}/participants"),
                    Some(&json!({ "sdp": offer(leg, self.local.media)?, "display_name": name })),
                    self.token.as_deref(),
                )?;
                let sdp = v["sdp"].as_str().ok_or_else(|| anyhow!("no answer: {v}"))?;
                take_answer(leg, sdp, &self.local)?;
                let participant = v["participant"]["id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("no participant id: {v}"))?
                    .to_owned();
                Ok(Joined::Api {
                    conference: room.to_owned(),
                    participant,
                })
            }
            Way::Sip => {
                if self.uac.is_none() {
                    self.uac = Some(Uac::new(self.sip, &self.local)?);
                }
                let uac = self.uac.as_mut().ok_or_else(|| anyhow!("no UAC"))?;
                let (answer, call_id) = uac.invite(room, &offer(leg, self.local.media)?)?;
                if let Err(e) = take_answer(leg, &answer, &self.local) {
                    // Answered with something we cannot use: do not leave the call up.
                    let _ = uac.hang_up(&call_id);
                    return Err(e);
                }
                Ok(Joined::Sip { call_id })
            }
        }
    }

    /// Ends one leg that `join_leg` joined: the API ejects it, or our UAC sends BYE (and waits
    /// for the answer, at most a few seconds).
    pub fn leave(&mut self, joined: &Joined) -> anyhow::Result<()> {
        match joined {
            Joined::Api {
                conference,
                participant,
            } => {
                http::json(
                    &self.api,
                    "DELETE",
                    &format!("/v1/conferences/{conference}/participants/{participant}"),
                    None,
                    self.token.as_deref(),
                )?;
                Ok(())
            }
            Joined::Sip { call_id } => self
                .uac
                .as_mut()
                .ok_or_else(|| anyhow!("no UAC"))?
                .hang_up(call_id),
        }
    }
}

/// How a leg joined Confab, to end it alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Joined {
    Api {
        conference: String,
        participant: String,
    },
    Sip {
        call_id: String,
    },
}

impl Bridge for Confab {
    fn create_room(&mut self, room: usize) -> anyhow::Result<String> {
        let id = (self.base_id + room as u64).to_string();
        http::json(
            &self.api,
            "POST",
            "/v1/conferences",
            Some(&json!({ "id": id, "name": format!("load {room}") })),
            self.token.as_deref(),
        )?;
        self.rooms.push(id.clone());
        Ok(id)
    }

    fn join(&mut self, room: &str, leg: &mut SimLeg, name: &str) -> anyhow::Result<()> {
        self.join_leg(room, leg, name, self.way, self.srtp)
            .map(|_| ())
    }

    fn teardown(&mut self) {
        if let Some(uac) = &mut self.uac {
            uac.hang_up_all();
        }
        for id in self.rooms.drain(..) {
            let _ = http::request(
                &self.api,
                "DELETE",
                &format!("/v1/conferences/{id}"),
                None,
                self.token.as_deref(),
            );
        }
    }

    fn confab_api(&self) -> Option<(Endpoint, Option<String>)> {
        Some((self.api.clone(), self.token.clone()))
    }
}

/// Janus AudioBridge: a session, one handle per participant, plain-RTP participants (Janus
/// `connect()`s to the participant's port, so it sends and receives on that one socket).
pub struct Janus {
    api: Endpoint,
    path: String,
    session: u64,
    control: u64,
    base_room: u64,
    rooms: Vec<u64>,
    transaction: u64,
    local: Local,
}

impl Janus {
    /// Janus with its HTTP API at `api` (under `path`); our legs on `local`'s addresses.
    pub fn new(api: Endpoint, path: String, local: Local) -> anyhow::Result<Self> {
        let mut j = Janus {
            api,
            path,
            session: 0,
            control: 0,
            base_room: run_base(2_000_000_000, 10_000_000, 200_000),
            rooms: Vec::new(),
            transaction: 0,
            local,
        };
        let v = j.post(&j.path.clone(), json!({ "janus": "create" }))?;
        j.session = v["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("janus create: {v}"))?;
        j.control = j.attach()?;
        Ok(j)
    }

    fn post(&mut self, path: &str, mut body: Value) -> anyhow::Result<Value> {
        self.transaction += 1;
        body["transaction"] = json!(format!("t{}", self.transaction));
        let v = http::json(&self.api, "POST", path, Some(&body), None)?;
        if v["janus"] == "error" {
            return Err(anyhow!("janus: {v}"));
        }
        Ok(v)
    }

    fn attach(&mut self) -> anyhow::Result<u64> {
        let path = format!("{}/{}", self.path, self.session);
        let v = self.post(
            &path,
            json!({ "janus": "attach", "plugin": "janus.plugin.audiobridge" }),
        )?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("janus attach: {v}"))
    }

    fn message(&mut self, handle: u64, body: Value) -> anyhow::Result<Value> {
        let path = format!("{}/{}/{handle}", self.path, self.session);
        self.post(&path, json!({ "janus": "message", "body": body }))
    }

    /// Long-polls the session for the event of `handle` (a join's answer).
    /// The "joined" answer to a join on `handle`. Other events for the handle (a participant
    /// list when an RTP participant's setup completes may come first) are passed over.
    fn joined_event(&mut self, handle: u64) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let path = format!("{}/{}?maxev=10", self.path, self.session);
            let (_, text) = http::request(&self.api, "GET", &path, None, None)?;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let events = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            for e in events {
                if e["sender"].as_u64() == Some(handle)
                    && e["plugindata"]["data"]["error"].is_string()
                {
                    return Err(anyhow!("janus join refused: {e}"));
                }
                if e["sender"].as_u64() == Some(handle)
                    && e["janus"] == "event"
                    && e["plugindata"]["data"]["audiobridge"] == "joined"
                {
                    return Ok(e);
                }
            }
        }
        Err(anyhow!("janus: no joined event for handle {handle}"))
    }
}

impl Bridge for Janus {
    fn create_room(&mut self, room: usize) -> anyhow::Result<String> {
        let id = self.base_room + room as u64;
        let control = self.control;
        let v = self.message(
            control,
            json!({ "request": "create", "room": id, "sampling_rate": 48000,
                    "allow_rtp_participants": true, "permanent": false }),
        )?;
        let data = &v["plugindata"]["data"];
        if data["audiobridge"] != "created" {
            return Err(anyhow!("janus create room: {v}"));
        }
        self.rooms.push(id);
        Ok(id.to_string())
    }

    fn join(&mut self, room: &str, leg: &mut SimLeg, name: &str) -> anyhow::Result<()> {
        if leg.codec != Codec::Opus && leg.codec != Codec::Pcmu {
            return Err(anyhow!("Janus' RTP participants speak opus or pcmu"));
        }
        let handle = self.attach()?;
        let port = leg.local()?.port();
        let codec = if leg.codec == Codec::Opus {
            "opus"
        } else {
            "pcmu"
        };
        let pt = leg.codec.payload_type();
        let room: u64 = room.parse().context("janus room id")?;
        self.message(
            handle,
            json!({ "request": "join", "room": room, "display": name, "codec": codec,
                    "rtp": { "ip": self.local.media.to_string(), "port": port, "payload_type": pt } }),
        )?;
        let e = self.joined_event(handle)?;
        let rtp = &e["plugindata"]["data"]["rtp"];
        let port = rtp["port"]
            .as_u64()
            .ok_or_else(|| anyhow!("janus join: {e}"))?;
        let ip: IpAddr = match rtp["ip"].as_str() {
            Some(ip) => ip.parse().context("janus rtp address")?,
            None => self.api.addr.ip(),
        };
        let port = u16::try_from(port).context("janus rtp port")?;
        leg.bridge = self.local.bridge_media(SocketAddr::new(ip, port));
        if let Some(pt) = rtp["payload_type"].as_u64() {
            leg.payload_type = pt as u8;
        }
        Ok(())
    }

    fn teardown(&mut self) {
        let control = self.control;
        for id in std::mem::take(&mut self.rooms) {
            let _ = self.message(control, json!({ "request": "destroy", "room": id }));
        }
        let path = format!("{}/{}", self.path, self.session);
        let _ = self.post(&path, json!({ "janus": "destroy" }));
    }
}

#[cfg(test)]
#[path = "bridges_tests.rs"]
mod tests;
