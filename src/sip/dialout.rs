//! Dial-out, sans-I/O: the bridge's INVITE client transaction (RFC 3261 17.1.1) and the dialog
//! it makes. `Uas::dial` sends the INVITE (retransmitted over UDP until a response, given up
//! after 64*T1); provisional responses are reported as progress; a 2xx is acknowledged and
//! becomes a dialog like a dial-in one (BYE both ways); a final error is acknowledged and
//! reported; a call that rings too long, or that the bridge hangs up while it rings, is
//! cancelled.

use std::time::{Duration, Instant};

use super::{Action, Call, Peer, T1, TIMEOUT, Uas};
use crate::conference::ParticipantId;
use crate::config::SrtpPolicy;
use crate::sip::digest::{Algorithm, Challenge};
use crate::sip::message::{self, Message, Method, StartLine};

#[path = "dialout_srtp.rs"]
pub(crate) mod srtp;
pub use srtp::DialAnswer;
use srtp::OfferedSrtp;

/// How long a dial-out may ring before it is cancelled (and counted as not answered).
pub const RING_TIMEOUT: Duration = Duration::from_secs(60);
/// Digest challenges one dial-out answers at most.
const MAX_AUTH_TRIES: u8 = 4;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum OutState {
    /// INVITE sent, nothing heard yet.
    Calling,
    /// A provisional response came: ringing.
    Proceeding,
    /// Final response handled; kept a while to answer its retransmissions with the ACK.
    Done { ack: Vec<u8> },
}

#[derive(Debug)]
pub(super) struct OutCall {
    participant: ParticipantId,
    invite: Message,
    bytes: Vec<u8>,
    to: Peer,
    pub(super) state: OutState,
    retransmit_at: Option<Instant>,
    interval: Duration,
    deadline: Instant,
    ring_deadline: Instant,
    /// Cancelled because it rang too long: report "no answer" whatever the final response.
    timed_out: bool,
    cancelled: bool,
    /// The INVITE's CSeq number (1, then one more for each answered challenge).
    cseq: u32,
    /// Challenges answered so far: at most [`MAX_AUTH_TRIES`] (a proxy's and the callee's,
    /// each once more when its nonce was only stale).
    auth_tries: u8,
    /// The challenges answered: whether a proxy's (407), and the realm. Bound: `auth_tries`.
    answered: Vec<(bool, String)>,
    /// The host the INVITE goes to (the outbound proxy's or the target's): only credentials
    /// for this host are ever sent.
    host: String,
    /// What our offer said of SRTP, and our key if it carried one.
    srtp: OfferedSrtp,
    /// The SRTP policy the call was dialled under, for offers later in its dialog.
    policy: SrtpPolicy,
}

/// Whether `uri` is a `sip:` URI that can be written into a request line and a header as it
/// is: printable ASCII without spaces, quotes or angle brackets, at most 256 bytes.
pub fn safe_uri(uri: &str) -> bool {
    uri.starts_with("sip:")
        && uri.len() > 4
        && uri.len() <= 256
        && uri
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"'))
}

impl Uas {
    /// Calls `target` (a SIP URI) for `participant`, sending to `to` (the outbound proxy or
    /// the target's address) with `offer` (plain RTP/AVP) as the SDP offer, secured as the
    /// SRTP policy `srtp_policy` allows on that transport (see `dialout_srtp.rs`).
    pub fn dial(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        target: &str,
        to: Peer,
        offer: String,
        srtp_policy: SrtpPolicy,
    ) {
        // The target goes into the request line and To: nothing that could end or split
        // them (the API refuses such targets too; this is the last line of defence).
        if !safe_uri(target) {
            self.actions.push_back(Action::Failed {
                participant,
                code: 400,
            });
            return;
        }
        let rule = crate::sip::sdp::SrtpRule {
            policy: srtp_policy,
            keys_may_travel: to.secure() || self.settings.sdes_over_cleartext,
        };
        // `required` where keys may not travel: the shell refuses such a dial before it
        // starts; this is the last line of defence.
        let Ok(kind) = srtp::offer_kind(rule) else {
            self.actions.push_back(Action::Failed {
                participant,
                code: 488,
            });
            return;
        };
        let srtp = OfferedSrtp::new(kind, self.random);
        let offer = srtp.apply(&offer);
        let local = self.settings.sip_addr(&to);
        let target_is_sips = target
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
        let branch = format!("z9hG4bK{}", self.token(8));
        let from_tag = self.token(8);
        let call_id = format!("{}@confab", self.token(12));
        let transport = to.via_transport();
        let mut invite = Message {
            start: StartLine::Request {
                method: Method::Invite,
                uri: target.to_owned(),
            },
            headers: Vec::new(),
            body: offer.into_bytes(),
        };
        invite.push_header(
            "Via",
            format!("SIP/2.0/{transport} {local};branch={branch};rport"),
        );
        invite.push_header("Max-Forwards", "70");
        invite.push_header(
            "From",
            format!("\"Conference\" <sip:confab@{local}>;tag={from_tag}"),
        );
        invite.push_header("To", format!("<{target}>"));
        invite.push_header("Call-ID", call_id);
        invite.push_header("CSeq", "1 INVITE");
        invite.push_header("Contact", self.settings.contact(&to, target_is_sips));
        invite.push_header("Allow", super::ALLOW);
        invite.push_header("User-Agent", "confab");
        invite.push_header("Content-Type", "application/sdp");
        let bytes = invite.to_bytes();
        self.actions.push_back(Action::Send {
            to,
            bytes: bytes.clone(),
        });
        let host = self
            .settings
            .outbound_proxy
            .as_deref()
            .or(Some(target))
            .and_then(crate::sip::server::dial_target)
            .map(|t| t.host)
            .unwrap_or_default();
        self.by_participant_out.insert(participant, branch.clone());
        self.outcalls.insert(
            branch,
            OutCall {
                participant,
                invite,
                bytes,
                to,
                state: OutState::Calling,
                retransmit_at: (!to.reliable()).then_some(now + T1),
                interval: T1,
                deadline: now + TIMEOUT,
                ring_deadline: now + RING_TIMEOUT,
                timed_out: false,
                cancelled: false,
                cseq: 1,
                auth_tries: 0,
                answered: Vec::new(),
                host,
                srtp,
                policy: srtp_policy,
            },
        );
    }

    /// A response to one of our INVITEs or CANCELs; false if it was not ours.
    pub(super) fn dial_response(&mut self, now: Instant, msg: &Message) -> bool {
        let Some(branch) = msg.branch().map(str::to_owned) else {
            return false;
        };
        let (Some(code), Some((_, method))) = (msg.status(), msg.cseq()) else {
            return false;
        };
        if !self.outcalls.contains_key(&branch) {
            return false;
        }
        let new_branch = self.token(8);
        let Some(out) = self.outcalls.get_mut(&branch) else {
            return false;
        };
        let local = self.settings.sip_addr(&out.to);
        if method == Method::Cancel {
            return true;
        }
        if let OutState::Done { ack } = &out.state {
            // A retransmitted final response: the same ACK again.
            let (to, bytes) = (out.to, ack.clone());
            self.actions.push_back(Action::Send { to, bytes });
            return true;
        }
        let participant = out.participant;
        if code < 200 {
            out.state = OutState::Proceeding;
            out.retransmit_at = None;
            if code > 100 {
                self.actions
                    .push_back(Action::Progress { participant, code });
            }
            return true;
        }
        if matches!(code, 401 | 407) && self.answer_challenge(now, &branch, msg, code) {
            return true;
        }
        let Some(out) = self.outcalls.get_mut(&branch) else {
            return false;
        };
        let to = out.to;
        let timed_out = out.timed_out;
        let ack = ack_for(&out.invite, msg, code, &branch, local, &new_branch);
        let ack_bytes = ack.to_bytes();
        out.state = OutState::Done {
            ack: ack_bytes.clone(),
        };
        out.retransmit_at = None;
        out.deadline = now + TIMEOUT;
        self.actions.push_back(Action::Send {
            to,
            bytes: ack_bytes,
        });
        self.by_participant_out.remove(&participant);
        if (200..300).contains(&code) {
            let offered = out.srtp;
            match srtp::check_answer(&msg.body, &self.settings.codecs, &offered) {
                Ok(mut answer) => {
                    answer.user_agent = msg
                        .header("Server")
                        .or_else(|| msg.header("User-Agent"))
                        .map(str::to_owned);
                    self.dialog_from_answer(now, participant, msg, to, &branch, Some(&answer));
                    self.actions.push_back(Action::Answered {
                        participant,
                        answer: Box::new(answer),
                    });
                }
                Err(refused) => {
                    // Answered, but not as the policy allows: the dialog exists, so it is
                    // ended with a BYE that says why, and the participant fails with 488.
                    tracing::info!(%participant, reason = %refused, "sip: dial-out answer refused");
                    self.dialog_from_answer(now, participant, msg, to, &branch, None);
                    let reason = srtp::reason_header(&refused);
                    self.hangup_because(now, participant, Some(&reason));
                    self.actions.push_back(Action::Failed {
                        participant,
                        code: 488,
                    });
                }
            }
        } else {
            let code = if timed_out { 408 } else { code };
            self.actions.push_back(Action::Failed { participant, code });
        }
        true
    }

    /// The dialog a 2xx made, kept like a dial-in's so that BYE works both ways. It is held
    /// in the dial-in form: `invite` carries the far end as From and us as To.
    fn dialog_from_answer(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        ok: &Message,
        peer: Peer,
        branch: &str,
        answer: Option<&DialAnswer>,
    ) {
        let Some(out) = self.outcalls.get(branch) else {
            return;
        };
        let ours = out.invite.header("From").unwrap_or_default();
        let local_tag = message::param(ours, "tag").unwrap_or_default().to_owned();
        let our_uri = ours.split(";tag=").next().unwrap_or(ours).to_owned();
        let mut as_dialin = Message {
            start: out.invite.start.clone(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        as_dialin.push_header("From", ok.header("To").unwrap_or_default());
        as_dialin.push_header("To", our_uri);
        as_dialin.push_header("Call-ID", ok.call_id());
        if let Some(contact) = ok.header("Contact") {
            as_dialin.push_header("Contact", contact);
        } else if let StartLine::Request { uri, .. } = &out.invite.start {
            as_dialin.push_header("Contact", format!("<{uri}>"));
        }
        for route in ok
            .header_values("Record-Route")
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            as_dialin.push_header("Record-Route", route);
        }
        let cseq = out.cseq;
        let policy = out.policy;
        let id = self.next_call;
        self.next_call += 1;
        let mut call = Call::confirmed(
            ok.call_id().to_owned(),
            local_tag,
            as_dialin,
            peer,
            participant,
            now,
        );
        // Our next request in the dialog counts on from the INVITE's number (RFC 3261 12.2.1.1).
        call.local_cseq = cseq;
        // Its INVITE names the callee, not a meeting: offers in the dialog keep the policy it
        // was dialled under.
        call.srtp_policy = Some(policy);
        // A re-INVITE of the far end keeps our key.
        if let Some(answer) = answer {
            call.negotiated = Some(answer.negotiated.clone());
            call.local_key = answer.local_key;
        }
        self.by_dialog
            .insert((call.call_id.clone(), call.local_tag.clone()), id);
        self.by_participant.insert(participant, id);
        self.calls.insert(id, call);
    }

    /// Cancels a dial-out still ringing; false if `participant` has none.
    pub(super) fn cancel_dial(&mut self, participant: ParticipantId) -> bool {
        let Some(branch) = self.by_participant_out.remove(&participant) else {
            return false;
        };
        if let Some(out) = self.outcalls.get_mut(&branch) {
            send_cancel(&mut self.actions, out);
        }
        true
    }

    /// Retransmissions, the ring timeout and clean-up of dial-outs.
    pub(super) fn tick_dials(&mut self, now: Instant) {
        let mut failed = Vec::new();
        for (branch, out) in &mut self.outcalls {
            match out.state {
                OutState::Done { .. } => continue,
                OutState::Calling if now >= out.deadline => {
                    // Nobody answered at all (Timer B).
                    failed.push(branch.clone());
                    continue;
                }
                OutState::Proceeding if now >= out.ring_deadline && !out.cancelled => {
                    out.timed_out = true;
                    send_cancel(&mut self.actions, out);
                    // The 487 ends it; should none come, Timer B does.
                    out.deadline = now + TIMEOUT;
                }
                _ => {}
            }
            if matches!(out.state, OutState::Proceeding) && out.cancelled && now >= out.deadline {
                failed.push(branch.clone());
                continue;
            }
            if let Some(at) = out.retransmit_at
                && now >= at
            {
                self.actions.push_back(Action::Send {
                    to: out.to,
                    bytes: out.bytes.clone(),
                });
                out.interval *= 2;
                out.retransmit_at = Some(now + out.interval);
            }
        }
        for branch in failed {
            if let Some(out) = self.outcalls.remove(&branch) {
                self.by_participant_out.remove(&out.participant);
                self.actions.push_back(Action::Failed {
                    participant: out.participant,
                    code: 408,
                });
            }
        }
        self.outcalls
            .retain(|_, o| !matches!(o.state, OutState::Done { .. }) || now < o.deadline);
    }
}

fn send_cancel(actions: &mut std::collections::VecDeque<Action>, out: &mut OutCall) {
    if out.cancelled || matches!(out.state, OutState::Done { .. }) {
        return;
    }
    out.cancelled = true;
    out.retransmit_at = None;
    let inv = &out.invite;
    let mut cancel = Message {
        start: match &inv.start {
            StartLine::Request { uri, .. } => StartLine::Request {
                method: Method::Cancel,
                uri: uri.clone(),
            },
            other => other.clone(),
        },
        headers: Vec::new(),
        body: Vec::new(),
    };
    for name in ["Via", "Max-Forwards", "From", "To", "Call-ID"] {
        if let Some(v) = inv.header(name) {
            cancel.push_header(name, v);
        }
    }
    cancel.push_header("CSeq", format!("{} CANCEL", out.cseq));
    actions.push_back(Action::Send {
        to: out.to,
        bytes: cancel.to_bytes(),
    });
}

/// The ACK of a final response (RFC 3261 17.1.1.3 for errors: same branch; 13.2.2.4 for 2xx:
/// a new transaction to the Contact).
fn ack_for(
    invite: &Message,
    response: &Message,
    code: u16,
    branch: &str,
    local: std::net::SocketAddr,
    new_branch: &str,
) -> Message {
    let success = (200..300).contains(&code);
    let uri = match (&invite.start, success, response.header("Contact")) {
        (_, true, Some(contact)) => message::addr_uri(contact).to_owned(),
        (StartLine::Request { uri, .. }, _, _) => uri.clone(),
        _ => String::new(),
    };
    let mut ack = Message {
        start: StartLine::Request {
            method: Method::Ack,
            uri,
        },
        headers: Vec::new(),
        body: Vec::new(),
    };
    let via_branch = if success {
        format!("z9hG4bK{new_branch}")
    } else {
        branch.to_owned()
    };
    let transport = invite
        .header("Via")
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("SIP/2.0/UDP");
    ack.push_header(
        "Via",
        format!("{transport} {local};branch={via_branch};rport"),
    );
    ack.push_header("Max-Forwards", "70");
    for name in ["From", "Call-ID"] {
        if let Some(v) = invite.header(name) {
            ack.push_header(name, v);
        }
    }
    ack.push_header("To", response.header("To").unwrap_or_default());
    let number = invite.cseq().map_or(1, |(n, _)| n);
    ack.push_header("CSeq", format!("{number} ACK"));
    ack
}

impl Uas {
    /// A 401/407 to our INVITE, answered when we hold credentials for the host it went to
    /// (and the challenge's realm): the challenge is acknowledged and the INVITE sent again
    /// with `Authorization`/`Proxy-Authorization`, CSeq one up, on a new branch. False when
    /// it cannot be answered (no credentials, or they were already refused): the call fails.
    fn answer_challenge(&mut self, now: Instant, branch: &str, msg: &Message, code: u16) -> bool {
        let (challenge_header, answer_header) = if code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let Some(out) = self.outcalls.get(branch) else {
            return false;
        };
        if out.cancelled || out.timed_out {
            return false;
        }
        // SHA-256 before MD5 (RFC 8760), and only for a realm we have credentials for.
        let mut challenges: Vec<Challenge> = msg
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(challenge_header))
            .filter_map(|(_, v)| Challenge::parse(v))
            .collect();
        challenges.sort_by_key(|c| c.algorithm != Algorithm::Sha256);
        let chosen = challenges.into_iter().find_map(|ch| {
            let creds = self.settings.credentials.iter().find(|c| {
                c.host.eq_ignore_ascii_case(&out.host)
                    && c.realm.as_ref().is_none_or(|r| *r == ch.realm)
            })?;
            Some((ch, creds.username.clone(), creds.password.clone()))
        });
        let Some((challenge, username, password)) = chosen else {
            return false;
        };
        // Once answered, the same challenger's new challenge means the credentials were
        // refused, unless it only says the nonce was stale.
        let key = (code == 407, challenge.realm.clone());
        let again = out.answered.contains(&key);
        if out.auth_tries >= MAX_AUTH_TRIES || (again && !challenge.stale) {
            return false;
        }
        let new_branch = format!("z9hG4bK{}", self.token(8));
        let ack_branch = self.token(8);
        let cnonce = self.token(12);
        let Some(out) = self.outcalls.get_mut(branch) else {
            return false;
        };
        let local = self.settings.sip_addr(&out.to);
        let ack = ack_for(&out.invite, msg, code, branch, local, &ack_branch).to_bytes();
        let uri = match &out.invite.start {
            StartLine::Request { uri, .. } => uri.clone(),
            StartLine::Response { .. } => return false,
        };
        let cseq = out.cseq.saturating_add(1);
        let mut invite = out.invite.clone();
        let transport = out.to.via_transport();
        invite.headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("Via")
                && !n.eq_ignore_ascii_case("CSeq")
                && !n.eq_ignore_ascii_case(answer_header)
        });
        invite.headers.insert(
            0,
            (
                "Via".to_owned(),
                format!("SIP/2.0/{transport} {local};branch={new_branch};rport"),
            ),
        );
        invite.push_header("CSeq", format!("{cseq} INVITE"));
        invite.push_header(
            answer_header,
            challenge.answer("INVITE", &uri, &username, &password, &cnonce, 1),
        );
        let bytes = invite.to_bytes();
        let retry = OutCall {
            participant: out.participant,
            invite,
            bytes: bytes.clone(),
            to: out.to,
            state: OutState::Calling,
            retransmit_at: (!out.to.reliable()).then_some(now + T1),
            interval: T1,
            deadline: now + TIMEOUT,
            ring_deadline: out.ring_deadline,
            timed_out: false,
            cancelled: false,
            cseq,
            auth_tries: out.auth_tries + 1,
            answered: {
                let mut answered = out.answered.clone();
                if !again {
                    answered.push(key);
                }
                answered
            },
            host: out.host.clone(),
            srtp: out.srtp,
            policy: out.policy,
        };
        // The challenged transaction stays a while to acknowledge its retransmissions.
        out.state = OutState::Done { ack: ack.clone() };
        out.retransmit_at = None;
        out.deadline = now + TIMEOUT;
        let to = out.to;
        self.actions.push_back(Action::Send { to, bytes: ack });
        self.actions.push_back(Action::Send { to, bytes });
        self.by_participant_out
            .insert(retry.participant, new_branch.clone());
        self.outcalls.insert(new_branch, retry);
        true
    }
}
