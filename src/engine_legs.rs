//! The engine's legs: dial-outs reserved and answered, RTP legs for SIP and API callers, and
//! legs relayed to the WebRTC driver, each given to its conference's mixer thread.

use super::*;

impl Engine {
    /// A dial-out: reserves the RTP and RTCP ports the offer will name and puts the participant
    /// in the roster as `inviting`. The call's answer gives the leg ([`Engine::answered`]).
    pub fn invite(
        &self,
        conference: &str,
        joiner: Joiner,
    ) -> Pending<(ParticipantId, ReservedPorts)> {
        self.invite_to(conference, joiner, crate::store::Origin::default())
    }

    /// [`Engine::invite`] of a far end at `origin` (where the call is sent): its record shows
    /// it even when the call is never answered.
    pub fn invite_to(
        &self,
        conference: &str,
        joiner: Joiner,
        origin: crate::store::Origin,
    ) -> Pending<(ParticipantId, ReservedPorts)> {
        let (mixer, id) = match self.mixer_of(conference) {
            Ok(found) => found,
            Err(e) => return Pending::failed(e),
        };
        let Ok((socket, rtcp, lease)) = self.ports.bind(true) else {
            return Pending::failed(EngineError::PortsExhausted);
        };
        let participant = ParticipantId(self.next_participant.fetch_add(1, Ordering::Relaxed));
        let local = match socket.local_addr() {
            Ok(local) => local,
            Err(e) => return Pending::failed(EngineError::Leg(e)),
        };
        // Before the roster has it: the writer knows the origin when the call ends unanswered.
        if let Some(records) = &self.settings.records
            && origin != crate::store::Origin::default()
        {
            let _ = records.send(crate::store::RecordEvent::Origin {
                participant,
                origin: Box::new(origin.clone()),
            });
        }
        let joining = joiner.joining(participant);
        let ports = ReservedPorts {
            local,
            origin,
            sockets: (socket, rtcp),
            lease,
        };
        // Refused, the reserved ports go back to the pool with the dropped `ports`.
        self.call(mixer, |reply| Command::Invite {
            conference: id,
            joining,
            reply,
        })
        .map(move |()| (participant, ports))
    }

    /// A dial-out was answered with `spec`: its leg joins the mix on the reserved ports.
    pub fn answered(
        &self,
        conference: &str,
        participant: ParticipantId,
        ports: ReservedPorts,
        spec: LegSpec,
    ) -> Pending<()> {
        let (mixer, id) = match self.mixer_of(conference) {
            Ok(found) => found,
            Err(e) => return Pending::failed(e),
        };
        let mut leg = match RtpLeg::new(
            participant,
            spec,
            ports.sockets,
            ports.lease,
            Instant::now(),
            random_ssrc(participant),
            self.settings.leg_timers,
        ) {
            Ok(leg) => leg,
            Err(e) => return Pending::failed(EngineError::Leg(e)),
        };
        leg.origin = Some(Arc::new(ports.origin));
        self.call(mixer, |reply| Command::Answered {
            conference: id,
            leg: Box::new(leg),
            reply,
        })
    }

    /// Adds an RTP leg to a conference; returns the participant and the local RTP address the
    /// peer must send to.
    pub fn add_rtp_leg(
        &self,
        conference: &str,
        joiner: Joiner,
        spec: LegSpec,
    ) -> Pending<(ParticipantId, SocketAddr)> {
        self.add_rtp_leg_from(conference, joiner, spec, crate::store::Origin::default())
    }

    /// [`Engine::add_rtp_leg`] for a far end known by `origin` (its records show it).
    pub fn add_rtp_leg_from(
        &self,
        conference: &str,
        joiner: Joiner,
        spec: LegSpec,
        origin: crate::store::Origin,
    ) -> Pending<(ParticipantId, SocketAddr)> {
        let Ok((socket, rtcp, lease)) = self.ports.bind(spec.remote_rtcp.is_some()) else {
            return Pending::failed(EngineError::PortsExhausted);
        };
        let mut local = None;
        let joined = self.join_leg(
            conference,
            joiner,
            origin,
            |participant, now, ssrc, timers| {
                let leg = RtpLeg::new(participant, spec, (socket, rtcp), lease, now, ssrc, timers)?;
                local = Some(leg.local_addr()?);
                Ok(leg)
            },
        );
        // No address means the leg was never made, and `joined` says why.
        joined.and_check(move |participant| {
            let local =
                local.ok_or_else(|| EngineError::Leg(std::io::Error::other("no local address")));
            Ok((participant?, local?))
        })
    }

    /// Adds a WebRTC leg whose packets pass through the driver on `port`; the participant is
    /// `connecting` until audio arrives. `origin` is the peer as its records show it.
    pub fn add_relayed_leg(
        &self,
        conference: &str,
        joiner: Joiner,
        spec: LegSpec,
        port: crate::media::relay::RelayPort,
        origin: crate::store::Origin,
    ) -> Pending<ParticipantId> {
        self.join_leg(
            conference,
            joiner,
            origin,
            |participant, now, ssrc, timers| {
                RtpLeg::relayed(participant, spec, port, now, ssrc, timers)
            },
        )
    }

    /// A new participant in `conference` with the leg `make` builds for it, from `origin`.
    fn join_leg(
        &self,
        conference: &str,
        joiner: Joiner,
        origin: crate::store::Origin,
        make: impl FnOnce(ParticipantId, Instant, u32, LegTimers) -> std::io::Result<RtpLeg>,
    ) -> Pending<ParticipantId> {
        let (mixer, id) = match self.mixer_of(conference) {
            Ok(found) => found,
            Err(e) => return Pending::failed(e),
        };
        let participant = ParticipantId(self.next_participant.fetch_add(1, Ordering::Relaxed));
        let mut leg = match make(
            participant,
            Instant::now(),
            random_ssrc(participant),
            self.settings.leg_timers,
        ) {
            Ok(leg) => leg,
            Err(e) => return Pending::failed(EngineError::Leg(e)),
        };
        leg.origin = (origin != crate::store::Origin::default()).then(|| Arc::new(origin));
        let joining = joiner.joining(participant);
        self.call(mixer, |reply| Command::AddLeg {
            conference: id,
            joining,
            leg: Box::new(leg),
            reply,
        })
        .map(move |()| participant)
    }

    /// The language a participant hears (its leg keeps it, into any meeting it moves to):
    /// the conference's own notices, such as that it is being recorded, are said in it.
    pub fn set_language(
        &self,
        conference: &str,
        participant: ParticipantId,
        language: &str,
    ) -> Pending<()> {
        self.leg_op(
            conference,
            participant,
            LegOp::Language(Arc::from(language)),
        )
        .map(drop)
    }

    pub(super) fn leg_op(
        &self,
        conference: &str,
        participant: ParticipantId,
        op: LegOp,
    ) -> Pending<Option<Box<RtpLeg>>> {
        self.call_in(conference, |conference, reply| Command::Leg {
            conference,
            participant,
            op,
            reply,
        })
    }
}
