//! A conference in the simulation: a [`ConferenceMedia`] ticked as its mixer thread would tick
//! it, with every participant a [`SimPhone`] on a [`Link`] each way and a leg whose datagrams
//! travel through the test instead of a socket. Time moves in 5 ms steps; a minute of meeting
//! takes well under a second.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::call::{STEP, TICK};
use super::net::Link;
use super::phone::SimPhone;
use crate::conference::{Joining, ParticipantId, Policy, Role};
use crate::media::codec::Codec;
use crate::media::leg::{LegSpec, LegTimers, RtpLeg};
use crate::mixer::conference::{ConferenceEvent, ConferenceMedia};
use crate::store::RecordEvent;

/// One participant: its phone, its path each way, and where its packets come from.
pub(crate) struct Member {
    pub(crate) id: ParticipantId,
    pub(crate) phone: SimPhone,
    pub(crate) addr: SocketAddr,
    pub(crate) up: Link,
    pub(crate) down: Link,
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
    next_tick: Instant,
}

impl Room {
    pub(crate) fn new(max_talkers: usize, media_timeout: Duration) -> Self {
        let now = Instant::now();
        let mut conference =
            ConferenceMedia::new("sim".into(), Policy::default(), max_talkers, media_timeout);
        let (records, from_conference) = std::sync::mpsc::channel();
        conference.set_records(Some(records));
        Room {
            now,
            conference,
            members: Vec::new(),
            events: Vec::new(),
            records: from_conference,
            next_tick: now + TICK,
        }
    }

    /// A participant joins with a phone sending `tone_hz` at `tone_dbov` (`None`: it sends
    /// silence, as a listener's phone does); returns its index in `members`.
    pub(crate) fn join(&mut self, codec: Codec, tone: Option<(f32, f32)>) -> usize {
        let n = self.members.len();
        let id = ParticipantId(n as u64 + 1);
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (n / 200) as u8)),
            4000 + 2 * (n % 200) as u16,
        );
        let (hz, dbov) = tone.unwrap_or((0.0, -120.0));
        let mut phone = SimPhone::new(codec, hz, dbov, 0x1000 + n as u32, self.now);
        if tone.is_none() {
            phone.bursts = Some((0, 1));
        }
        let leg = RtpLeg::in_memory(
            id,
            LegSpec::new(codec, addr),
            self.now,
            0x2000 + n as u32,
            LegTimers::default(),
        )
        .unwrap();
        let joining = Joining {
            id,
            display_name: format!("p{n}"),
            uri: String::new(),
            role: Role::Attendee,
        };
        self.conference.add_leg(joining, leg, self.now).unwrap();
        self.members.push(Member {
            id,
            phone,
            addr,
            up: Link::clean(Duration::from_millis(20)),
            down: Link::clean(Duration::from_millis(20)),
        });
        n
    }

    /// Moves time on by one step.
    pub(crate) fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for m in &mut self.members {
            while let Some(p) = m.phone.poll_send(now) {
                m.up.send(now, m.addr, m.addr, &p);
            }
            while let Some(d) = m.down.poll(now) {
                m.phone.receive(&d.data);
            }
        }
        if now < self.next_tick {
            return;
        }
        self.next_tick += TICK;
        for m in &mut self.members {
            while let Some(d) = m.up.poll(now) {
                if let Some(leg) = self.conference.leg_mut(m.id) {
                    leg.deliver(d.from, false, d.data);
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
            for (to, _, data) in leg.take_sent() {
                m.down.send(now, to, to, &data);
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
}
