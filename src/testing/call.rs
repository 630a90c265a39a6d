//! One call in the simulation: a leg's core on the bridge's side, a [`SimPhone`] behind a NAT
//! on the other, and a [`Link`] each way. Time moves in 5 ms steps; the core ticks every 20 ms
//! as a mixer thread would (receive, keep time, produce a frame, send), and the phone sends
//! whenever its own clock says.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::net::{Link, Nat};
use super::phone::SimPhone;
use crate::media::leg::{LegCore, LegSpec, LegTimers, Route, Transmit};

/// The simulation's time step.
pub(crate) const STEP: Duration = Duration::from_millis(5);
/// The mixer's tick.
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// The bridge's address for the leg, and the RTCP port's.
pub(crate) const BRIDGE: &str = "198.51.100.7:40000";
pub(crate) const BRIDGE_RTCP: &str = "198.51.100.7:40001";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What the bridge sends the phone each tick: the phone's own tone is not sent back (that
/// would measure an echo); a frame of its own at the mix rate (48 kHz) is.
pub(crate) struct Call {
    pub(crate) now: Instant,
    pub(crate) core: LegCore,
    pub(crate) phone: SimPhone,
    pub(crate) nat: Nat,
    /// Phone to bridge, and bridge to phone.
    pub(crate) up: Link,
    pub(crate) down: Link,
    /// The frame the bridge sends the phone every tick (`None`: it sends nothing).
    pub(crate) downlink_frame: Option<Vec<i16>>,
    /// Where the bridge's RTCP went (the port and whether it was the separate RTCP socket).
    pub(crate) rtcp_sent_to: Vec<(SocketAddr, bool)>,
    /// Where the bridge's RTP went, the last time, and every address it ever went to.
    pub(crate) rtp_sent_to: Option<SocketAddr>,
    pub(crate) rtp_destinations: BTreeSet<SocketAddr>,
    /// The phone sends its RTCP from the port above its RTP port to the bridge's RTCP port
    /// (no rtcp-mux), or beside its RTP.
    separate_rtcp: bool,
    /// Ticks run, and of them the ticks whose frame was sound (not the idle leg's silence).
    pub(crate) ticks: u64,
    pub(crate) ticks_with_audio: u64,
    next_tick: Instant,
}

impl Call {
    /// A call on `spec` (its `remote` is where the phone says it receives) with the phone's
    /// packets leaving the NAT from `public`.
    pub(crate) fn new(spec: LegSpec, phone: SimPhone, public: SocketAddr, now: Instant) -> Self {
        Call::with(spec, LegTimers::default(), phone, public, now)
    }

    pub(crate) fn with(
        spec: LegSpec,
        timers: LegTimers,
        phone: SimPhone,
        public: SocketAddr,
        now: Instant,
    ) -> Self {
        let separate_rtcp = spec.remote_rtcp.is_some();
        let route = Route::Direct { separate_rtcp };
        let core = LegCore::new(
            spec,
            route,
            now,
            SystemTime::UNIX_EPOCH,
            0x5EED_0001,
            timers,
        )
        .unwrap();
        Call {
            now,
            core,
            phone,
            nat: Nat { public },
            up: Link::clean(Duration::from_millis(30)),
            down: Link::clean(Duration::from_millis(30)),
            downlink_frame: None,
            rtcp_sent_to: Vec::new(),
            rtp_sent_to: None,
            rtp_destinations: BTreeSet::new(),
            separate_rtcp,
            ticks: 0,
            ticks_with_audio: 0,
            next_tick: now + TICK,
        }
    }

    /// Moves time on by one step.
    pub(crate) fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        while let Some(p) = self.phone.poll_send(now) {
            self.up.send(now, self.nat.public, addr(BRIDGE), &p);
        }
        while let Some(p) = self.phone.poll_rtcp(now) {
            let (from, to) = if self.separate_rtcp {
                let public = self.nat.public;
                let from = SocketAddr::new(public.ip(), public.port() + 1);
                (from, addr(BRIDGE_RTCP))
            } else {
                (self.nat.public, addr(BRIDGE))
            };
            self.up.send(now, from, to, &p);
        }
        while let Some(d) = self.down.poll(now) {
            self.phone.receive(now, d.from, d.to, &d.data);
        }
        if now >= self.next_tick {
            self.next_tick += TICK;
            self.tick();
        }
    }

    /// The bridge's tick.
    fn tick(&mut self) {
        let now = self.now;
        while let Some(d) = self.up.poll(now) {
            if d.to == addr(BRIDGE_RTCP) {
                self.core.handle_rtcp_datagram(now, d.from, &d.data);
            } else {
                self.core.handle_datagram(now, d.from, &d.data);
            }
        }
        self.core.handle_timeout(now);
        self.core.produce_frame();
        self.ticks += 1;
        if self.core.frame().iter().any(|&s| s != 0) {
            self.ticks_with_audio += 1;
        }
        if let Some(frame) = self.downlink_frame.take() {
            self.core.encode_own(&frame, &[], &[]);
            self.downlink_frame = Some(frame);
        }
        self.drain();
    }

    /// Sends what the core queued.
    pub(crate) fn drain(&mut self) {
        let now = self.now;
        while let Some(t) = self.core.poll_transmit() {
            let Transmit::Datagram {
                to,
                rtcp_port,
                data,
            } = t
            else {
                panic!("a direct leg transmitted a relay packet");
            };
            let from = addr(if rtcp_port { BRIDGE_RTCP } else { BRIDGE });
            if data.len() >= 2 && (192..=223).contains(&data[1]) {
                self.rtcp_sent_to.push((to, rtcp_port));
            } else {
                self.rtp_sent_to = Some(to);
                self.rtp_destinations.insert(to);
            }
            // Only what is sent to the phone's public address reaches it.
            if to.ip() == self.nat.public.ip() {
                self.down.send(now, from, to, data);
            }
            self.core.transmitted(true);
        }
    }

    /// Runs for `d`.
    pub(crate) fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// A datagram from elsewhere reaches the bridge's RTP port now.
    pub(crate) fn inject(&mut self, from: SocketAddr, data: &[u8]) {
        self.core.handle_datagram(self.now, from, data);
    }
}
