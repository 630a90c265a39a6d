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
    ) -> Result<(ParticipantId, ReservedPorts), EngineError> {
        self.invite_to(conference, joiner, crate::store::Origin::default())
    }

    /// [`Engine::invite`] of a far end at `origin` (where the call is sent): its record shows
    /// it even when the call is never answered.
    pub fn invite_to(
        &self,
        conference: &str,
        joiner: Joiner,
        origin: crate::store::Origin,
    ) -> Result<(ParticipantId, ReservedPorts), EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        let (socket, rtcp, lease) = self
            .ports
            .bind(true)
            .map_err(|_| EngineError::PortsExhausted)?;
        let participant = ParticipantId(self.next_participant.fetch_add(1, Ordering::Relaxed));
        let local = socket.local_addr().map_err(EngineError::Leg)?;
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
        self.call(mixer, |reply| Command::Invite {
            conference: id,
            joining,
            reply,
        })?;
        Ok((
            participant,
            ReservedPorts {
                local,
                origin,
                sockets: (socket, rtcp),
                lease,
            },
        ))
    }

    /// A dial-out was answered with `spec`: its leg joins the mix on the reserved ports.
    pub fn answered(
        &self,
        conference: &str,
        participant: ParticipantId,
        ports: ReservedPorts,
        spec: LegSpec,
    ) -> Result<(), EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        let mut leg = RtpLeg::new(
            participant,
            spec,
            ports.sockets,
            ports.lease,
            Instant::now(),
            random_ssrc(participant),
            self.settings.leg_timers,
        )
        .map_err(EngineError::Leg)?;
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
    ) -> Result<(ParticipantId, SocketAddr), EngineError> {
        self.add_rtp_leg_from(conference, joiner, spec, crate::store::Origin::default())
    }

    /// [`Engine::add_rtp_leg`] for a far end known by `origin` (its records show it).
    pub fn add_rtp_leg_from(
        &self,
        conference: &str,
        joiner: Joiner,
        spec: LegSpec,
        origin: crate::store::Origin,
    ) -> Result<(ParticipantId, SocketAddr), EngineError> {
        let (socket, rtcp, lease) = self
            .ports
            .bind(spec.remote_rtcp.is_some())
            .map_err(|_| EngineError::PortsExhausted)?;
        let mut local = None;
        let participant = self.join_leg(
            conference,
            joiner,
            origin,
            |participant, now, ssrc, timers| {
                let leg = RtpLeg::new(participant, spec, (socket, rtcp), lease, now, ssrc, timers)?;
                local = Some(leg.local_addr()?);
                Ok(leg)
            },
        )?;
        let local = local.ok_or(EngineError::Leg(std::io::Error::other("no local address")))?;
        Ok((participant, local))
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
    ) -> Result<ParticipantId, EngineError> {
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
    ) -> Result<ParticipantId, EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        let participant = ParticipantId(self.next_participant.fetch_add(1, Ordering::Relaxed));
        let mut leg = make(
            participant,
            Instant::now(),
            random_ssrc(participant),
            self.settings.leg_timers,
        )
        .map_err(EngineError::Leg)?;
        leg.origin = (origin != crate::store::Origin::default()).then(|| Arc::new(origin));
        let joining = joiner.joining(participant);
        self.call(mixer, |reply| Command::AddLeg {
            conference: id,
            joining,
            leg: Box::new(leg),
            reply,
        })?;
        Ok(participant)
    }

    /// The language a participant hears (its leg keeps it, into any meeting it moves to):
    /// the conference's own notices, such as that it is being recorded, are said in it.
    pub fn set_language(
        &self,
        conference: &str,
        participant: ParticipantId,
        language: &str,
    ) -> Result<(), EngineError> {
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
    ) -> Result<Option<Box<RtpLeg>>, EngineError> {
        let (mixer, id) = self.mixer_of(conference)?;
        self.call(mixer, |reply| Command::Leg {
            conference: id,
            participant,
            op,
            reply,
        })
    }
}
