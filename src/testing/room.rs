//! A conference in the simulation: a [`ConferenceMedia`] ticked as its mixer thread would tick
//! it, with every participant a [`SimPhone`] on a [`Link`] each way and a leg whose datagrams
//! travel through the test instead of a socket. Time moves in 5 ms steps; a minute of meeting
//! takes well under a second.
//!
//! Controls reach the conference as the mixer thread applies them between ticks: a test calls
//! the same roster and leg methods (`conference.roster.set_muted`, `leg_mut(..).play`, ...)
//! between steps.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::call::{STEP, TICK};
use super::net::Link;
use super::phone::SimPhone;
use crate::conference::{JoinError, Joining, ParticipantId, Policy, Role};
use crate::media::codec::Codec;
use crate::media::leg::{LegSpec, LegTimers, RtpLeg};
use crate::mixer::conference::{ConferenceEvent, ConferenceMedia};
use crate::store::RecordEvent;

/// One participant: its phone, its path each way, and the addresses its packets use.
pub(crate) struct Member {
    pub(crate) id: ParticipantId,
    pub(crate) phone: SimPhone,
    /// Where the phone's RTP comes from and goes to (a test may move it: a new NAT binding).
    pub(crate) addr: SocketAddr,
    /// The phone's RTCP port when it has one of its own (no rtcp-mux).
    pub(crate) rtcp_addr: Option<SocketAddr>,
    /// The bridge's RTP port for this leg, and the RTCP port above it.
    pub(crate) bridge: SocketAddr,
    pub(crate) bridge_rtcp: SocketAddr,
    pub(crate) up: Link,
    pub(crate) down: Link,
    /// Every address the leg sent a datagram to.
    pub(crate) sent_to: BTreeSet<SocketAddr>,
}

/// How a participant joins: its leg's spec is made from `LegSpec::new(codec, address)` by
/// `spec`, so a test may add SRTP keys, telephone-event, extensions or a separate RTCP port.
pub(crate) struct JoinAs {
    pub(crate) codec: Codec,
    /// The phone's tone (`None`: it sends silence, as a listener's phone does).
    pub(crate) tone: Option<(f32, f32)>,
    pub(crate) role: Role,
    pub(crate) timers: LegTimers,
    pub(crate) spec: Box<dyn Fn(LegSpec) -> LegSpec>,
}

impl JoinAs {
    pub(crate) fn new(codec: Codec, tone: Option<(f32, f32)>) -> Self {
        JoinAs {
            codec,
            tone,
            role: Role::Attendee,
            timers: LegTimers::default(),
            spec: Box::new(|s| s),
        }
    }

    pub(crate) fn role(self, role: Role) -> Self {
        JoinAs { role, ..self }
    }

    pub(crate) fn timers(self, timers: LegTimers) -> Self {
        JoinAs { timers, ..self }
    }

    pub(crate) fn spec(self, spec: impl Fn(LegSpec) -> LegSpec + 'static) -> Self {
        JoinAs {
            spec: Box::new(spec),
            ..self
        }
    }
}

/// The port above `addr`'s: where a phone without rtcp-mux takes RTCP.
pub(crate) fn rtcp_port_of(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port() + 1)
}

/// A simulated meeting.
pub(crate) struct Room {
    pub(crate) now: Instant,
    pub(crate) conference: ConferenceMedia,
    pub(crate) members: Vec<Member>,
    /// Every event the conference emitted.
    pub(crate) events: Vec<ConferenceEvent>,
    /// What the conference told the record writer.
    pub(crate) records: std::sync::mpsc::Receiver<RecordEvent>,
    /// Participants that tried to join, whether or not they got in.
    joined: u64,
    next_tick: Instant,
}

impl Room {
    pub(crate) fn new(max_talkers: usize, media_timeout: Duration) -> Self {
        Room::with_policy(Policy::default(), max_talkers, media_timeout)
    }

    pub(crate) fn with_policy(policy: Policy, max_talkers: usize, media_timeout: Duration) -> Self {
        let now = Instant::now();
        let mut conference = ConferenceMedia::new("sim".into(), policy, max_talkers, media_timeout);
        let (records, from_conference) = std::sync::mpsc::channel();
        conference.set_records(Some(records));
        Room {
            now,
            conference,
            members: Vec::new(),
            events: Vec::new(),
            records: from_conference,
            joined: 0,
            next_tick: now + TICK,
        }
    }

    /// A participant joins with a phone sending `tone_hz` at `tone_dbov` (`None`: it sends
    /// silence, as a listener's phone does); returns its index in `members`.
    pub(crate) fn join(&mut self, codec: Codec, tone: Option<(f32, f32)>) -> usize {
        self.join_as(JoinAs::new(codec, tone)).unwrap()
    }

    /// A participant joins as `how` says; returns its index in `members`, or why the roster
    /// refused it.
    pub(crate) fn join_as(&mut self, how: JoinAs) -> Result<usize, JoinError> {
        let n = self.members.len();
        let k = self.joined;
        self.joined += 1;
        let id = ParticipantId(k + 1);
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (k / 200) as u8)),
            4000 + 4 * (k % 200) as u16,
        );
        let bridge = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            40000 + 2 * k as u16,
        );
        let (hz, dbov) = how.tone.unwrap_or((0.0, -120.0));
        let mut phone = SimPhone::new(how.codec, hz, dbov, 0x1000 + k as u32, self.now);
        if how.tone.is_none() {
            phone.bursts = Some((0, 1));
        }
        let spec = (how.spec)(LegSpec::new(how.codec, addr));
        if let Some(keys) = &spec.srtp {
            phone.use_srtp(keys);
        }
        let leg = RtpLeg::in_memory(id, spec, self.now, 0x2000 + k as u32, how.timers).unwrap();
        let joining = Joining {
            id,
            display_name: format!("p{k}"),
            uri: String::new(),
            role: how.role,
            identity: None,
        };
        self.conference.add_leg(joining, leg, self.now)?;
        self.members.push(Member {
            id,
            phone,
            addr,
            rtcp_addr: spec.remote_rtcp,
            bridge,
            bridge_rtcp: rtcp_port_of(bridge),
            up: Link::clean(Duration::from_millis(20)),
            down: Link::clean(Duration::from_millis(20)),
            sent_to: BTreeSet::new(),
        });
        Ok(n)
    }

    /// A datagram from `from` reaches member `i`'s leg now (on its RTCP port with
    /// `rtcp_port`); the leg reads it at the next tick.
    pub(crate) fn inject(&mut self, i: usize, from: SocketAddr, rtcp_port: bool, data: Vec<u8>) {
        let id = self.members[i].id;
        if let Some(leg) = self.conference.leg_mut(id) {
            leg.deliver(from, rtcp_port, data);
        }
    }

    /// Moves time on by one step.
    pub(crate) fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for m in &mut self.members {
            while let Some(p) = m.phone.poll_send(now) {
                m.up.send(now, m.addr, m.bridge, &p);
            }
            while let Some(p) = m.phone.poll_rtcp(now) {
                match m.rtcp_addr {
                    Some(own) => m.up.send(now, own, m.bridge_rtcp, &p),
                    None => m.up.send(now, m.addr, m.bridge, &p),
                }
            }
            while let Some(d) = m.down.poll(now) {
                m.phone.receive(now, d.from, d.to, &d.data);
            }
        }
        if now < self.next_tick {
            return;
        }
        self.next_tick += TICK;
        for m in &mut self.members {
            while let Some(d) = m.up.poll(now) {
                if let Some(leg) = self.conference.leg_mut(m.id) {
                    leg.deliver(d.from, d.to == m.bridge_rtcp, d.data);
                }
            }
        }
        let events = &mut self.events;
        self.conference.tick(now, |e| events.push(e));
        self.conference.settle();
        for m in &mut self.members {
            let Some(leg) = self.conference.leg_mut(m.id) else {
                continue;
            };
            for (to, rtcp_port, data) in leg.take_sent() {
                m.sent_to.insert(to);
                let from = if rtcp_port { m.bridge_rtcp } else { m.bridge };
                // Only what is sent to the phone's own ports reaches it.
                if to == m.addr || Some(to) == m.rtcp_addr {
                    m.down.send(now, from, to, &data);
                }
            }
        }
    }

    /// Runs for `d`.
    pub(crate) fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Level in dBov of `freq` in what member `i` heard in the last `seconds`.
    pub(crate) fn heard(&self, i: usize, freq: f32, seconds: f32) -> f32 {
        self.members[i].phone.heard_level(freq, seconds)
    }

    /// Member `i`'s leg's figures (`None` once it has left).
    pub(crate) fn stats(&self, i: usize) -> Option<crate::media::leg::LegStats> {
        self.conference.leg_stats(self.members[i].id)
    }
}
