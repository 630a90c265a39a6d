//! The API's answers as types: each is what a handler serializes and what the OpenAPI document
//! shows (`utoipa::ToSchema`), so the two cannot drift apart. Field names and shapes are the
//! API's contract (README, DESIGN.md): change them only with both.

use serde::Serialize;
use utoipa::ToSchema;

use crate::conference::{Participant, Role, State as PState};
use crate::media::leg::LegStats;

/// A participant's role.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum RoleName {
    Leader,
    Attendee,
}

impl RoleName {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RoleName::Leader => "leader",
            RoleName::Attendee => "attendee",
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> Self {
        match r {
            Role::Leader => RoleName::Leader,
            Role::Attendee => RoleName::Attendee,
        }
    }
}

/// Where a participant is: called and ringing, connecting (or waiting for a leader), in the
/// mix, or gone (`disconnect_reason` says why).
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum StateName {
    Inviting,
    Connecting,
    Connected,
    Disconnected,
}

impl From<PState> for StateName {
    fn from(s: PState) -> Self {
        match s {
            PState::Inviting => StateName::Inviting,
            PState::Connecting => StateName::Connecting,
            PState::Connected => StateName::Connected,
            PState::Disconnected(_) => StateName::Disconnected,
        }
    }
}

/// How a participant's media travels.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub(super) enum MediaTransport {
    #[serde(rename = "webrtc")]
    WebRtc,
    #[serde(rename = "rtp/savp")]
    RtpSavp,
    #[serde(rename = "rtp/avp")]
    RtpAvp,
}

/// A present participant's media: what was negotiated and how it goes.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MediaStats {
    pub transport: MediaTransport,
    /// `PCMU`, `PCMA`, `G722` or `opus`; none before the first negotiation.
    #[schema(required = true)]
    pub codec: Option<&'static str>,
    pub srtp: bool,
    /// The SSRC the bridge sends this participant's audio with.
    pub ssrc: u32,
    /// The last audio level the client reported (RFC 6464), in dBov (0 loudest, -127 silence).
    #[schema(required = true)]
    pub client_level_dbov: Option<f64>,
    pub packets_in: u64,
    pub packets_out: u64,
    /// Packets of the participant's stream lost (RFC 3550 cumulative count; may be negative
    /// with duplicates).
    pub packets_lost: i64,
    pub jitter_ms: f64,
    #[schema(required = true)]
    pub rtt_ms: Option<f64>,
    /// Estimated mean opinion score (1 to 4.5); none before the first packet.
    #[schema(required = true)]
    pub mos: Option<f64>,
}

impl MediaStats {
    pub(super) fn of(m: &LegStats) -> Self {
        MediaStats {
            transport: match (m.webrtc, m.srtp) {
                (true, _) => MediaTransport::WebRtc,
                (false, true) => MediaTransport::RtpSavp,
                (false, false) => MediaTransport::RtpAvp,
            },
            codec: m.codec.map(|c| c.name()),
            srtp: m.srtp,
            ssrc: m.ssrc,
            client_level_dbov: m.client_level.map(|l| -f64::from(l)),
            packets_in: m.packets_in,
            packets_out: m.packets_out,
            packets_lost: m.packets_lost,
            jitter_ms: finite(m.jitter_ms),
            rtt_ms: m.rtt_ms.map(finite),
            mos: (m.packets_in > 0).then_some(finite(m.mos)),
        }
    }
}

/// A number JSON can carry (NaN and infinities would be written as `null`).
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// A participant as the operator sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ParticipantInfo {
    /// `p` and a number, unique within the bridge's run.
    pub id: String,
    pub display_name: String,
    /// The SIP URI (or `webrtc:<name>`, `sdp:gateway`) it came from or was called at.
    pub uri: String,
    pub role: RoleName,
    pub state: StateName,
    /// Why it left (`hangup`, `ejected`, `no-answer`, `conference-ended`, …); none while
    /// present.
    #[schema(required = true)]
    pub disconnect_reason: Option<&'static str>,
    pub muted: bool,
    pub deaf: bool,
    pub speaking: bool,
    pub on_hold: bool,
    /// The last SIP status of its call (a dial-out's 180, 200 or 486, say).
    #[schema(required = true)]
    pub sip_status: Option<u16>,
    /// How loud the others hear it, in dB (0: as it comes; -30 to +12, to a tenth).
    pub input_gain_db: f32,
    /// How loud it hears the others, in dB (its keypad volume keys change it too).
    pub output_gain_db: f32,
    /// None once it has left.
    #[schema(required = true)]
    pub media: Option<MediaStats>,
}

impl ParticipantInfo {
    pub(super) fn of(p: &Participant, media: Option<&LegStats>) -> Self {
        ParticipantInfo {
            id: p.id.to_string(),
            display_name: p.display_name.clone(),
            uri: p.uri.clone(),
            role: p.role.into(),
            state: p.state.into(),
            disconnect_reason: match p.state {
                PState::Disconnected(r) => Some(r.as_str()),
                _ => None,
            },
            muted: p.muted,
            deaf: p.deaf,
            speaking: p.speaking,
            on_hold: p.on_hold,
            sip_status: p.sip_status,
            input_gain_db: p.input_gain_db,
            output_gain_db: p.output_gain_db,
            media: media.map(MediaStats::of),
        }
    }
}

/// `{"participant": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ParticipantReply {
    pub participant: ParticipantInfo,
}

/// A participant added: by dial-out, or by its SDP offer (then with the bridge's answer).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AddedParticipant {
    pub participant: ParticipantInfo,
    /// The SDP answer, for the gateway that holds the offer (only when added by `sdp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
}

/// A participant as another participant (a roster token) sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RosterEntry {
    pub id: String,
    pub display_name: String,
    pub state: StateName,
    pub muted: bool,
    pub speaking: bool,
}

impl RosterEntry {
    pub(super) fn of(p: &Participant) -> Self {
        RosterEntry {
            id: p.id.to_string(),
            display_name: p.display_name.clone(),
            state: p.state.into(),
            muted: p.muted,
            speaking: p.speaking,
        }
    }
}

/// The roster as the operator sees it: everyone, those who left too, with their media.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ParticipantList {
    pub participants: Vec<ParticipantInfo>,
}

/// The roster as a participant (a roster token) sees it: those present, without addresses,
/// SIP identities or media.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Roster {
    pub participants: Vec<RosterEntry>,
}

/// `GET …/participants`: the operator's list, or a roster token's smaller one.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum ParticipantsReply {
    Operator(ParticipantList),
    Participant(Roster),
}

impl utoipa::PartialSchema for ParticipantsReply {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // anyOf, not oneOf: an empty list is both.
        utoipa::openapi::schema::AnyOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name("ParticipantList"))
            .item(utoipa::openapi::Ref::from_schema_name("Roster"))
            .description(Some(
                "The operator's list, or (with a roster token) the participant's smaller one",
            ))
            .into()
    }
}

impl ToSchema for ParticipantsReply {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        for (name, schema) in [
            (
                "ParticipantList",
                <ParticipantList as utoipa::PartialSchema>::schema(),
            ),
            ("Roster", <Roster as utoipa::PartialSchema>::schema()),
        ] {
            schemas.push((name.to_owned(), schema));
        }
        <ParticipantList as ToSchema>::schemas(schemas);
        <Roster as ToSchema>::schemas(schemas);
    }
}

/// A conference's settings as stored, with what the running conference has.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConferenceView {
    /// The meeting ID: 4 to 12 digits.
    pub id: String,
    pub name: String,
    pub access: AccessName,
    #[schema(required = true)]
    pub passcode: Option<String>,
    #[schema(required = true)]
    pub leader_pin: Option<String>,
    /// Who may join a `closed` conference (SIP URIs or user parts).
    pub attendees: Vec<String>,
    pub locked: bool,
    /// 0: no limit.
    pub max_participants: usize,
    pub wait_for_leader: bool,
    pub max_talkers: usize,
    pub entry_exit: EntryExitName,
    /// The conference's own SRTP policy for SIP and API legs; null: the bridge's `media.srtp`.
    pub srtp: Option<SrtpName>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Only in a PATCH answer that changed `max_talkers`: when the change takes effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_talkers_applies: Option<&'static str>,
}

/// Who may join a conference.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum AccessName {
    Anonymous,
    Authenticated,
    Closed,
}

impl From<crate::store::Access> for AccessName {
    fn from(a: crate::store::Access) -> Self {
        match a {
            crate::store::Access::Anonymous => AccessName::Anonymous,
            crate::store::Access::Authenticated => AccessName::Authenticated,
            crate::store::Access::Closed => AccessName::Closed,
        }
    }
}

/// What those in the mix hear when a participant enters or leaves it.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum EntryExitName {
    Off,
    Tones,
    Names,
}

impl From<crate::conference::roster::EntryExit> for EntryExitName {
    fn from(e: crate::conference::roster::EntryExit) -> Self {
        match e {
            crate::conference::roster::EntryExit::Off => EntryExitName::Off,
            crate::conference::roster::EntryExit::Tones => EntryExitName::Tones,
            crate::conference::roster::EntryExit::Names => EntryExitName::Names,
        }
    }
}

/// An SRTP policy: `off` (plain RTP only), `optional` (SDES-SRTP where offered and the keys
/// may travel) or `required` (no leg without it).
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum SrtpName {
    Off,
    Optional,
    Required,
}

impl From<crate::config::SrtpPolicy> for SrtpName {
    fn from(p: crate::config::SrtpPolicy) -> Self {
        match p {
            crate::config::SrtpPolicy::Off => SrtpName::Off,
            crate::config::SrtpPolicy::Optional => SrtpName::Optional,
            crate::config::SrtpPolicy::Required => SrtpName::Required,
        }
    }
}

impl From<SrtpName> for crate::config::SrtpPolicy {
    fn from(p: SrtpName) -> Self {
        match p {
            SrtpName::Off => crate::config::SrtpPolicy::Off,
            SrtpName::Optional => crate::config::SrtpPolicy::Optional,
            SrtpName::Required => crate::config::SrtpPolicy::Required,
        }
    }
}

/// A conference and its roster.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConferenceReply {
    pub conference: ConferenceView,
    pub participants: Vec<ParticipantInfo>,
}

/// A conference (after a change).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConferenceOnly {
    pub conference: ConferenceView,
}

/// A conference in the list, with how many participants are present.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConferenceSummary {
    #[serde(flatten)]
    pub conference: ConferenceView,
    pub participant_count: usize,
}

/// Every conference.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConferenceList {
    pub conferences: Vec<ConferenceSummary>,
}

/// A signed join token for WHIP.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TokenReply {
    pub token: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
    pub role: RoleName,
}

/// `POST /v1/admin/drain`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DrainReply {
    /// Always true.
    pub draining: bool,
}
