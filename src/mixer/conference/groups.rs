//! Listeners who are not talking share one encode per group: the same codec and packet time
//! and, for Opus, the same *tier*, so that one listener's path or fmtp cannot set what the
//! others get. A lossy path (or receiver reports that claim one) takes its listener to the
//! lossy tier, whose encode carries in-band FEC; a `maxaveragebitrate` below ours or
//! `useinbandfec=0` puts it in the constrained tier, whose encode follows the lowest cap and
//! every refusal. The clear tier keeps the full bitrate and no FEC, whatever the others say.
//! Three Opus encodes per packet time at most, so the cost still grows with packet times and
//! talkers, not listeners.

use std::sync::Arc;

use confab_dsp::opus::OpusSettings;

use super::{ConferenceMedia, MAX_GROUPS};
use crate::media::codec::{Codec, LegEncoder};
use crate::media::opus_path::{Adaptation, FEC_OFF_BELOW, FEC_ON_ABOVE, OpusFmtp};
use crate::mixer::helper::GroupPackets;

/// Which of a packet time's Opus encodes a listener shares (other codecs have `Clear` only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// A clean path and no limits: the full bitrate, no FEC.
    Clear,
    /// A path losing more than [`FEC_ON_ABOVE`] percent (smoothed), until it is below
    /// [`FEC_OFF_BELOW`] again: FEC on, hinted by the worst loss among them.
    Lossy,
    /// A receiver that caps the bitrate below ours or refuses FEC.
    Constrained,
}

impl Tier {
    /// Where a leg of `codec` with `fmtp` starts (a path's loss moves it later).
    pub fn of(codec: Codec, fmtp: &OpusFmtp) -> Tier {
        let base = OpusSettings::default().bitrate;
        let constrains = !fmtp.fec || fmtp.max_average_bitrate.is_some_and(|cap| cap < base);
        if codec == Codec::Opus && constrains {
            Tier::Constrained
        } else {
            Tier::Clear
        }
    }

    /// The tier a leg in `self` belongs in with a smoothed loss of `loss` percent (the gap
    /// between the two lines keeps a path near them from moving to and fro).
    pub fn after_loss(self, loss: f32) -> Tier {
        match self {
            Tier::Clear if loss > FEC_ON_ABOVE => Tier::Lossy,
            Tier::Lossy if loss < FEC_OFF_BELOW => Tier::Clear,
            t => t,
        }
    }
}

/// Listeners sharing one encode (its packets are in `Outbound`).
pub(super) struct Group {
    pub(super) codec: Codec,
    pub(super) ptime_ms: u32,
    pub(super) tier: Tier,
    pub(super) encoder: LegEncoder,
    /// Its FEC state (Opus): it follows the worst path among its listeners.
    pub(super) adaptation: Adaptation,
    /// The group a listener moves to when its path's loss changes tier (Opus `Clear` <->
    /// `Lossy`, made together so that the move does not allocate in the tick); itself
    /// otherwise.
    pub(super) sibling: usize,
}

impl ConferenceMedia {
    /// The shared-encode group of a codec, packet time and tier, made when it is the first
    /// (with its lossy sibling for Opus). `usize::MAX` when none can be made: the leg then gets
    /// its own encodes only. Allocates: between ticks only.
    pub(super) fn group_for(&mut self, codec: Codec, ptime_ms: u32, tier: Tier) -> usize {
        if let Some(i) = self.find_group(codec, ptime_ms, tier) {
            return i;
        }
        match (codec, tier) {
            (Codec::Opus, Tier::Clear | Tier::Lossy) => {
                let Some(clear) = self.make_group(codec, ptime_ms, Tier::Clear) else {
                    return usize::MAX;
                };
                let Some(lossy) = self.make_group(codec, ptime_ms, Tier::Lossy) else {
                    // Without a lossy twin, a lossy listener stays where it is.
                    return clear;
                };
                self.groups[clear].sibling = lossy;
                self.groups[lossy].sibling = clear;
                if tier == Tier::Clear { clear } else { lossy }
            }
            _ => self.make_group(codec, ptime_ms, tier).unwrap_or(usize::MAX),
        }
    }

    fn find_group(&self, codec: Codec, ptime_ms: u32, tier: Tier) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.codec == codec && g.ptime_ms == ptime_ms && g.tier == tier)
    }

    fn make_group(&mut self, codec: Codec, ptime_ms: u32, tier: Tier) -> Option<usize> {
        if self.groups.len() >= MAX_GROUPS {
            return None;
        }
        // Between ticks the helper holds no reference to the packets.
        let outbound = Arc::get_mut(&mut self.outbound)?;
        // The leg's own encoder was made from the same settings, so this cannot fail where
        // that one succeeded.
        let encoder = LegEncoder::new(codec, ptime_ms, OpusSettings::default(), self.rate).ok()?;
        outbound
            .groups
            .push(GroupPackets::new(encoder.packet_ticks()));
        let index = self.groups.len();
        self.groups.push(Group {
            codec,
            ptime_ms,
            tier,
            encoder,
            adaptation: Adaptation::default(),
            sibling: index,
        });
        Some(index)
    }

    /// The group a participant's leg is in, if it is in one.
    fn group_of(&self, participant: crate::conference::ParticipantId) -> Option<&Group> {
        let slot = self
            .legs
            .iter()
            .position(|l| l.participant == participant)?;
        self.groups.get(*self.leg_groups.get(slot)?)
    }

    /// The settings of the shared Opus encode a participant's leg is in, if it is in one.
    pub fn opus_settings_toward(
        &self,
        participant: crate::conference::ParticipantId,
    ) -> Option<OpusSettings> {
        let group = self.group_of(participant)?;
        (group.codec == Codec::Opus)
            .then(|| group.encoder.opus_settings())
            .flatten()
    }

    /// The tier of the group a participant's leg is in.
    pub fn tier_of(&self, participant: crate::conference::ParticipantId) -> Option<Tier> {
        Some(self.group_of(participant)?.tier)
    }

    /// Shared encodes made so far (at most [`MAX_GROUPS`]).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}
