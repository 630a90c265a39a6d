//! Opus toward the listeners follows their paths: about once a second every leg takes another
//! look at its receiver's last RTCP report (its own encoder follows it), a listener whose path
//! turned lossy or clean moves to its packet time's lossy or clear group (`groups`), and every
//! shared Opus encode follows the worst smoothed loss, the lowest `maxaveragebitrate` and the
//! refusals (`useinbandfec=0`, no `usedtx=1`) among the legs of its group (`media::opus_path`).
//! In the tick, without allocation: the group's figures add up in an array on the stack.

use std::time::Instant;

use confab_dsp::opus::OpusSettings;

use super::{ConferenceMedia, MAX_GROUPS};
use crate::media::codec::Codec;
use crate::media::opus_path::{ADAPT_EVERY, Receivers};

impl ConferenceMedia {
    /// Lets the Opus encoders follow their receivers' paths, once per `ADAPT_EVERY`.
    pub(super) fn follow_paths(&mut self, now: Instant) {
        if self.next_path_look.is_some_and(|at| now < at) {
            return;
        }
        self.next_path_look = Some(now + ADAPT_EVERY);
        let mut receivers = [Receivers::NONE; MAX_GROUPS];
        let mut members = [0u16; MAX_GROUPS];
        for (leg, g) in self.legs.iter_mut().zip(&mut self.leg_groups) {
            let reported = leg.path_report();
            let loss = leg.follow_path(reported);
            if let Some(group) = self.groups.get(*g)
                && group.tier.after_loss(loss) != group.tier
            {
                // Its sibling (itself when it has none) was made with it: no allocation here.
                *g = group.sibling;
            }
            let g = *g;
            if let (Some(r), Some(n)) = (receivers.get_mut(g), members.get_mut(g)) {
                r.add(loss, &leg.spec().opus);
                *n = n.saturating_add(1);
            }
        }
        let base = OpusSettings::default();
        for (g, group) in self.groups.iter_mut().enumerate() {
            if group.codec != Codec::Opus || members.get(g).is_none_or(|&n| n == 0) {
                continue;
            }
            let target = group.adaptation.decide(&receivers[g], &base);
            if let Err(e) = group.encoder.adapt(&target) {
                tracing::debug!(error = %e, "group opus encoder kept its settings");
            }
        }
    }
}
