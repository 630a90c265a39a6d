//! What the serving loop asks of the shell: sending the call core's messages, joins through
//! the engine (the gate, the lobby, lockouts), and the engine controls a SIP status brings.

use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::*;
use crate::placement::Placed;
use crate::sip::hand_off;

#[path = "shell_subscriptions.rs"]
mod subscriptions;
pub(super) use subscriptions::{Package, PlacementRead, RosterRead};
#[path = "shell_presence.rs"]
mod presence;
pub(super) use presence::{IdentityRead, PresenceLink};

/// A join's outcome as the shell needs it.
pub(super) struct Joined {
    pub(super) call: CallRef,
    pub(super) result: JoinResult,
    pub(super) conference: String,
    /// The caller goes through the attendant (for this meeting, if it is known).
    pub(super) attendant: Option<Option<(String, Arc<Admission>)>>,
    pub(super) caller: Caller,
    /// Answered in the lobby only to be told why the meeting turned it away.
    pub(super) refused: Option<refusal::Refusal>,
}

#[derive(Clone, Debug)]
pub(super) struct Caller {
    /// Whose failures these are (see [`JoinRequest::caller_key`]).
    pub(super) key: String,
    pub(super) display_name: String,
    pub(super) uri: String,
    pub(super) asserted_identity: Option<String>,
    /// The language it hears (one of the prompt book's, or the default's).
    pub(super) language: String,
    /// Offered the language menu before the attendant.
    pub(super) menu: bool,
}

/// How a move out of the lobby ended.
#[derive(Debug)]
pub(super) enum MoveEnd {
    /// In this meeting.
    In(String),
    /// The meeting refused the caller: told why, then hung up.
    Refused(refusal::Refusal),
    /// The leg could not be moved: hung up.
    Lost,
    /// Another node holds the meeting: referred to this SIP URI.
    Elsewhere(String),
}

pub(super) struct Shell {
    pub(super) engine: Arc<Engine>,
    pub(super) udp: Arc<UdpSocket>,
    pub(super) connections: Connections,
    pub(super) joins: mpsc::Sender<Joined>,
    /// Moves out of the lobby that finished: into which meeting, or failed (to be hung up,
    /// or told why first).
    pub(super) moves: mpsc::Sender<(ParticipantId, MoveEnd)>,
    /// Every SIP participant: the conference its leg is in and its phase there (dialling, at
    /// the attendant, moving, refused, leaving, in a meeting). Bound and pruning there.
    pub(super) participants: super::participants::SipParticipants,
    /// Greetings to play. Bound: one per participant that entered a meeting in the last
    /// second (itself bound by the calls); each goes when it is played, or when its
    /// participant keys something or leaves.
    pub(super) greetings: Vec<greeting::Due>,
    /// The language menu as one piece of audio, made at its first use.
    pub(super) menu_audio: Option<Arc<[i16]>>,
    /// Callers that hung up while their leg moved out of the lobby. Bound: moves under way
    /// (each ends with a message on `moves`, which takes its entry out; only a caller in the
    /// `Moving` phase is put here).
    pub(super) left_in_move: Vec<ParticipantId>,
    pub(super) access_user: String,
    pub(super) config: AttendantConfig,
    pub(super) limiter: SharedLimiter,
    pub(super) codecs: Vec<crate::media::codec::Codec>,
    pub(super) outbound_proxy: Option<String>,
    /// Dial-outs whose participant and ports are ready: their INVITE is to be sent.
    pub(super) started: mpsc::Sender<Started>,
    pub(super) dispatcher: Option<SocketAddr>,
    /// Callers to send elsewhere (REFER), taken by the serving loop.
    pub(super) refers: Vec<(ParticipantId, String)>,
    /// Callers that keyed a meeting's passcode or leader PIN at the attendant since the loop
    /// last looked; the UAS then knows them for a while (`Uas::admitted_to_meeting`). Bound:
    /// drained by the server loop after every event.
    pub(super) admitted: Vec<String>,
    /// Controls a mixer thread's full queue refused (`Busy`), in the order they were made;
    /// every later control waits behind them, and the serving loop's tick sends them again
    /// (bounded there).
    pub(super) waiting_controls: super::control_backlog::ControlBacklog,
    /// The address put in our dial-out offers (`media.advertise`).
    pub(super) media_advertise: Option<std::net::IpAddr>,
    /// `media.srtp` and `media.sdes_over_cleartext`, for dial-outs.
    pub(super) srtp: crate::config::SrtpPolicy,
    pub(super) sdes_over_cleartext: bool,
    /// Conferences' own SRTP policies, over `srtp` for their dial-outs.
    pub(super) conference_srtp: crate::sip::conference_srtp::ConferenceSrtp,
    /// Opens the TLS connections of dial-outs over TLS.
    pub(super) connector: Connector,
    /// Checks the certificates of peers dialled over TLS (none: such dial-outs are refused).
    pub(super) tls_client: Option<Arc<rustls::ClientConfig>>,
    /// Subscriptions to the conference event package (bounded there).
    pub(super) package: Package,
    /// The presence publisher, when `[presence]` names a server (bounded there).
    pub(super) presence: Option<PresenceLink>,
}

impl Shell {
    pub(super) async fn act(&mut self, action: Action) {
        match action {
            Action::Send { to, bytes } => match to.connection {
                None => {
                    if let Err(e) = self.udp.send_to(&bytes, to.addr).await {
                        debug!(error = %e, "sip udp send");
                    }
                }
                Some(id) => {
                    let tx = self
                        .connections
                        .lock()
                        .ok()
                        .and_then(|c| c.get(&id).cloned());
                    if let Some(tx) = tx {
                        let _ = tx.try_send(bytes);
                    }
                }
            },
            Action::Join(request) => self.join(*request),
            Action::Subscribe(request) => self.subscribe(request),
            Action::NotifyAnswered(msg) => {
                self.package.core.notify_answer(Instant::now(), &msg);
            }
            Action::PublishAnswered { from, msg } => {
                if let Some(link) = &mut self.presence {
                    link.core.response(Instant::now(), from, &msg);
                }
            }
            Action::Leave { participant } => {
                // Hung up while its leg moves out of the lobby: the hang-up must follow it.
                if self.participants.is_moving(participant) {
                    self.left_in_move.push(participant);
                }
                self.control(participant, Control::Hangup(participant))
            }
            Action::Hold { participant, on } => {
                self.control(participant, Control::Hold(participant, on))
            }
            Action::Dtmf { participant, digit } => self.digit(participant, digit),
            Action::Progress { participant, code } => {
                self.control(participant, Control::SipStatus(participant, code));
            }
            Action::Answered {
                participant,
                answer,
            } => self.answered(participant, &answer),
            Action::Renegotiated { participant, spec } => {
                // A leg on its way out of the lobby takes them where it lands.
                let Some(spec) = self.participants.defer_respec(participant, *spec) else {
                    return;
                };
                let Some(meeting) = self.participants.conference(participant).map(str::to_owned)
                else {
                    return;
                };
                self.respec(participant, &meeting, spec);
            }
            Action::Failed { participant, code } => {
                let reason = match code {
                    486 | 600 => DisconnectReason::Busy,
                    408 | 480 | 487 => DisconnectReason::NoAnswer,
                    603 => DisconnectReason::Declined,
                    _ => DisconnectReason::Rejected,
                };
                self.control(participant, Control::SipStatus(participant, code));
                self.control(participant, Control::Remove(participant, reason));
                // The call is over on both sides: no BYE when the roster says so.
                self.participants.remove(participant);
            }
        }
    }

    pub(super) fn join(&mut self, request: JoinRequest) {
        // The access users: the attendant's number (with the language menu, if there is one)
        // and those with a language of their own.
        let access_language = if request.meeting == self.access_user {
            Some(None)
        } else {
            self.config
                .access_users
                .iter()
                .find(|(user, _)| *user == request.meeting)
                .map(|(_, language)| Some(language.clone()))
        };
        // A caller another node's attendant let into this meeting is not asked again, and
        // keeps its role and language (see `hand_off`).
        let handed = match (&request.pass, &self.config.hand_off) {
            (Some(pass), Some(signer)) if access_language.is_none() => {
                hand_off::check(signer, pass, &request.meeting, hand_off::unix_now())
            }
            _ => None,
        };
        let attendant = if access_language.is_some() {
            Some(None)
        } else if handed.is_some() {
            None
        } else {
            match self.engine.admission(&request.meeting) {
                Some(a) if a.passcode.is_some() => Some(Some((request.meeting.clone(), a))),
                _ => None,
            }
        };
        // Only a language the prompt book has.
        let handed_language = handed
            .as_ref()
            .and_then(|h| h.language.clone())
            .filter(|l| self.config.prompts.languages().contains(l));
        // Every SIP request that gets here came from a trusted source (a gateway or proxy) or
        // a signed-in account: the caller is who it says is calling.
        let caller = Caller {
            key: request.caller_key(),
            display_name: request.display_name.clone(),
            uri: request.uri.clone(),
            asserted_identity: request.asserted_identity.clone(),
            language: access_language
                .clone()
                .flatten()
                .or_else(|| handed_language.clone())
                .unwrap_or_else(|| self.config.prompts.default_language().to_owned()),
            menu: access_language == Some(None) && self.config.menu_languages.len() >= 2,
        };
        let gate_refuses = attendant.is_none()
            && self
                .engine
                .admission(&request.meeting)
                .is_some_and(|a| !a.gate.admits(caller.asserted_identity.as_deref()));
        if gate_refuses {
            let _ = self.joins.try_send(Joined {
                call: request.call,
                result: JoinResult::NotAllowed,
                conference: request.meeting.clone(),
                attendant: None,
                caller,
                refused: None,
            });
            return;
        }
        let conference = match attendant {
            Some(_) => LOBBY.to_owned(),
            None => request.meeting.clone(),
        };
        // A caller (or a meeting) with too many failed entries is refused before the attendant.
        let meeting = attendant
            .as_ref()
            .and_then(|a| a.as_ref().map(|(m, _)| m.as_str()));
        let locked_out = attendant.is_some()
            && self.limiter.lock().map_or(true, |l| {
                l.locked(Instant::now(), &caller.key, meeting).is_some()
            });
        if locked_out {
            let _ = self.joins.try_send(Joined {
                call: request.call,
                result: JoinResult::Forbidden,
                conference,
                attendant: None,
                caller,
                refused: None,
            });
            return;
        }
        let role = handed.as_ref().map_or(Role::Attendee, |h| h.role);
        let engine = Arc::clone(&self.engine);
        let joins = self.joins.clone();
        // Several nodes: a direct call to a meeting this node knows goes where it runs.
        let placement = self
            .config
            .placement
            .clone()
            .filter(|_| attendant.is_none() && engine.admission(&conference).is_some());
        tokio::spawn(async move {
            let moved = match placement {
                None => None,
                Some(placement) => {
                    let meeting = conference.clone();
                    // A claim in the database: off the runtime's threads.
                    let placed =
                        tokio::task::spawn_blocking(move || placement.place(&meeting)).await;
                    match placed {
                        Ok(Ok(Placed::Here)) => None,
                        Ok(Ok(Placed::Elsewhere(owner))) => {
                            Some(JoinResult::Moved { to: owner.sip })
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, %conference, "placement unavailable");
                            Some(JoinResult::Unavailable)
                        }
                        // The placement panicked: unanswered, the call core's timer refuses
                        // the call.
                        Err(_) => return,
                    }
                }
            };
            let call = request.call;
            let (result, conference, refused) = match moved {
                Some(result) => (result, conference, None),
                None => {
                    let entry = Entry {
                        at_attendant: attendant.is_some(),
                        role,
                        language: handed_language,
                    };
                    add_caller_leg(&engine, request, conference, entry).await
                }
            };
            let _ = joins
                .send(Joined {
                    call,
                    result,
                    conference,
                    attendant,
                    caller,
                    refused,
                })
                .await;
        });
    }

    pub(super) fn joined(&mut self, joined: Joined) {
        let JoinResult::Joined { participant, .. } = joined.result else {
            return;
        };
        // In its meeting, until the lobby (the attendant, or a refusal) says otherwise.
        self.participants.in_meeting(
            participant,
            joined.conference.clone(),
            joined.caller.language.clone(),
        );
        if let Some(refusal) = joined.refused {
            self.refuse(participant, refusal);
            return;
        }
        match joined.attendant {
            Some(meeting) => self.at_lobby(participant, meeting, joined.caller),
            None => self.greet(participant, joined.conference, greeting::AFTER_ANSWER),
        }
    }

    pub(super) fn control(&mut self, participant: ParticipantId, control: Control) {
        let Some(meeting) = self.participants.conference(participant).map(str::to_owned) else {
            return;
        };
        self.send_control(meeting, control);
    }

    /// New settings for a participant's leg (a re-INVITE's codec change, an offerless
    /// answer); a leg that cannot take them is hung up.
    fn respec(&self, participant: ParticipantId, meeting: &str, spec: crate::media::leg::LegSpec) {
        let respec = self.engine.respec(meeting, participant, spec);
        let moves = self.moves.clone();
        tokio::spawn(async move {
            if let Err(e) = respec.await {
                debug!(error = %e, "sip: the leg could not take the new settings");
                let _ = moves.send((participant, MoveEnd::Lost)).await;
            }
        });
    }

    /// Sends a control now, on the meeting's thread's queue, so that controls reach it in the
    /// order they were made (a 180 then a 486 then the removal of a busy callee must not
    /// overtake each other); only the answer is awaited apart. A hang-up must not be lost to
    /// a full queue: refused, it waits for [`Shell::retry_controls`], and so does every later
    /// control.
    fn send_control(&mut self, meeting: String, control: Control) {
        let engine = &self.engine;
        let kept = self
            .waiting_controls
            .send(meeting.clone(), control, |m, c| try_control(engine, m, c));
        if !kept {
            tracing::warn!(%meeting, ?control, "sip: a control dropped, the mixer is far behind");
        }
    }

    /// Sends again the controls a full queue refused, in order, until one is refused again.
    pub(super) fn retry_controls(&mut self) {
        let engine = &self.engine;
        self.waiting_controls
            .retry(|m, c| try_control(engine, m, c));
    }
}

/// The control back if its thread's queue is full; otherwise it is sent (or failed).
fn try_control(engine: &Engine, meeting: &str, control: Control) -> Option<Control> {
    match engine.try_control(meeting, control) {
        Ok(sent) => {
            tokio::spawn(async move {
                if let Err(e) = sent.await {
                    debug!(error = %e, "sip: engine control");
                }
            });
            None
        }
        Err((EngineError::Busy, Some(control))) => Some(control),
        Err((e, _)) => {
            debug!(error = %e, %meeting, "sip: engine control");
            None
        }
    }
}
/// How a caller enters: through the attendant (in the lobby), or straight into its meeting as
/// `role`, hearing `language` (none: the default).
struct Entry {
    at_attendant: bool,
    role: Role,
    language: Option<String>,
}

/// Puts a caller's leg into `conference` (the lobby when at the attendant). A meeting that
/// turns the caller away for a reason it can be told takes it to the lobby to hear why: the
/// result names where the leg went and that reason.
async fn add_caller_leg(
    engine: &Engine,
    request: JoinRequest,
    mut conference: String,
    entry: Entry,
) -> (JoinResult, String, Option<refusal::Refusal>) {
    let spec = request.negotiated.leg_spec(request.local_key);
    let joiner = Joiner {
        // What a trusted gateway asserts (P-Asserted-Identity) or the account a caller signed
        // in with; never the caller's own From.
        identity: request.asserted_identity,
        display_name: request.display_name,
        uri: request.uri,
        role: entry.role,
    };
    let mut refused = None;
    // The caller as its records show it, in the meeting or in the lobby.
    let origin = request.origin;
    let add_leg = |meeting: &str, joiner: Joiner| {
        engine.add_rtp_leg_from(meeting, joiner, spec, origin.clone())
    };
    let result = match add_leg(&conference, joiner.clone()).await {
        Ok((participant, local)) => {
            if entry.at_attendant {
                // Gateways often send digits as tones in the audio.
                let _ = engine.detect_dtmf(&conference, participant, true);
            }
            if let Some(language) = &entry.language {
                // The meeting's notices are said to the leg in it; a failure leaves the
                // default.
                let _ = engine.set_language(&conference, participant, language);
            }
            JoinResult::Joined { participant, local }
        }
        // Told why in the lobby, then hung up.
        Err(EngineError::Command(CommandError::Join(e))) if refusal::Refusal::of(e).is_some() => {
            match add_leg(LOBBY, joiner).await {
                Ok((participant, local)) => {
                    conference = LOBBY.to_owned();
                    refused = refusal::Refusal::of(e);
                    JoinResult::Joined { participant, local }
                }
                Err(_) => join_refused(EngineError::Command(CommandError::Join(e))),
            }
        }
        Err(e) => join_refused(e),
    };
    (result, conference, refused)
}

/// What a caller whose join the engine refused is answered.
fn join_refused(e: EngineError) -> JoinResult {
    match e {
        EngineError::Command(CommandError::NoConference) => JoinResult::NoConference,
        EngineError::Command(CommandError::Join(JoinError::Locked)) => JoinResult::Locked,
        EngineError::Command(CommandError::Join(JoinError::Full)) => JoinResult::Full,
        EngineError::Command(CommandError::Join(JoinError::Ended)) => JoinResult::Ended,
        _ => JoinResult::Unavailable,
    }
}

impl Shell {
    /// A move out of the lobby finished: the caller is in `meeting` (and greeted), is told why
    /// the meeting refused it, or is hung up.
    pub(super) fn moved(
        &mut self,
        participant: ParticipantId,
        meeting: MoveEnd,
        hang_up: &mut Vec<ParticipantId>,
    ) {
        let left = self.left_in_move.iter().position(|p| *p == participant);
        let left = left.map(|i| self.left_in_move.swap_remove(i)).is_some();
        match meeting {
            MoveEnd::In(m) if left => {
                self.participants.in_meeting(participant, m, String::new());
                self.control(participant, Control::Hangup(participant));
            }
            // Only a caller still known (in the lobby): one that left during the move is not
            // put back, so the registry keeps its bound.
            MoveEnd::In(m) => {
                if let Some(respec) = self.participants.moved_in(participant, m.clone()) {
                    if let Some(spec) = respec {
                        self.respec(participant, &m, spec);
                    }
                    self.greet(participant, m, greeting::AFTER_MOVE);
                }
            }
            // Gone meanwhile: nobody to tell.
            MoveEnd::Refused(_) if left => {}
            MoveEnd::Refused(refusal) => self.refuse(participant, refusal),
            // The leg is lost (or could not take new settings: it goes too), so no control
            // event may come for it: the caller is forgotten here and hung up.
            MoveEnd::Lost => {
                self.control(participant, Control::Hangup(participant));
                self.participants.remove(participant);
                hang_up.push(participant);
            }
            // Another node holds the meeting: the caller is referred there (one that left
            // meanwhile is gone already).
            MoveEnd::Elsewhere(target) if !left => {
                self.participants.leaving(participant);
                self.refers.push((participant, target));
            }
            MoveEnd::Elsewhere(_) => {}
        }
    }

    /// An event from the control stream: a participant that left (its call to be hung up
    /// unless it hung up itself), or a key.
    pub(super) fn control_event(
        &mut self,
        event: ConferenceEvent,
        hang_up: &mut Vec<ParticipantId>,
    ) {
        self.roster_event(&event);
        self.presence_event(&event);
        match event.event {
            Event::State {
                participant,
                state: State::Disconnected(reason),
            } => {
                // A move out of the lobby is not the end of the call.
                if reason == DisconnectReason::Transferred {
                    return;
                }
                self.forget_greeting(participant);
                if self.participants.remove(participant) && reason != DisconnectReason::Hangup {
                    hang_up.push(participant);
                }
            }
            Event::Dtmf {
                participant, digit, ..
            } => self.digit(participant, digit),
            _ => {}
        }
    }
}
