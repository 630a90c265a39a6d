//! Clock drift while audio plays, in fake time: the playout sheds depth by time-stretching
//! the decoded audio a pitch period at a time, so a steady tone comes out without the phase
//! jump of a skipped packet. (Building depth the same way is asked by the jitter buffer only
//! when it holds more than the one packet a jitter-free path needs: `jitter_tests`. With one
//! packet in it, a slow sender's packet is there until the tick it is not, and that tick is
//! concealed, a whole frame.)

use std::time::{Duration, Instant};

use super::*;
use crate::media::leg::LegSpec;
use crate::testing::call::{Call, addr};
use crate::testing::net::{Impairments, Link};
use crate::testing::phone::SimPhone;

const PHONE: &str = "192.0.2.10:4000";
/// 4.6 periods in 20 ms: a whole packet skipped or held is a jump in phase. (A tone with whole
/// periods in a packet, like the other tests' 400 Hz, would hide it.)
const TONE_HZ: f64 = 230.0;
const TONE_DBOV: f32 = -20.0;
const MIX_HZ: usize = 48_000;

/// How far a window of the tone is from the best-fitting sinusoid of its frequency: the
/// residual's energy over the fit's, in dB. A window across a phase jump fits badly (about
/// -10 dB); a clean tone through G.711 about -38 dB.
fn misfit_db(window: &[i16]) -> f64 {
    let w = 2.0 * std::f64::consts::PI * TONE_HZ / MIX_HZ as f64;
    let (mut cc, mut ss, mut cs, mut xc, mut xs) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &x) in window.iter().enumerate() {
        let (s, c) = (w * i as f64).sin_cos();
        let x = f64::from(x);
        cc += c * c;
        ss += s * s;
        cs += c * s;
        xc += x * c;
        xs += x * s;
    }
    // Least squares for x ≈ a·cos + b·sin.
    let det = cc * ss - cs * cs;
    let a = (xc * ss - xs * cs) / det;
    let b = (xs * cc - xc * cs) / det;
    let (mut fit_energy, mut residual) = (0.0, 0.0);
    for (i, &x) in window.iter().enumerate() {
        let (s, c) = (w * i as f64).sin_cos();
        let fit = a * c + b * s;
        fit_energy += fit * fit;
        residual += (f64::from(x) - fit).powi(2);
    }
    10.0 * (residual.max(1e-9) / fit_energy.max(1e-9)).log10()
}

struct Drifted {
    /// The worst window's misfit (20 ms windows, 10 ms apart) over the measured minute.
    worst_misfit_db: f64,
    stats: crate::media::jitter::JitterStats,
    depth_before: Duration,
    max_depth: Duration,
}

/// A phone whose clock runs `ppm` fast or slow plays a steady tone for a minute after 10 s,
/// over a path with `jitter` (uniform, seeded) and no loss.
fn drifted(codec: Codec, ppm: f64, jitter: Duration) -> Drifted {
    let now = Instant::now();
    let phone = SimPhone::new(codec, TONE_HZ as f32, TONE_DBOV, 0xD21F7, now).drift(ppm);
    let spec = LegSpec::new(codec, addr(PHONE));
    let mut call = Call::new(spec, phone, addr(PHONE), now);
    call.up = Link::new(
        7,
        Impairments {
            loss: 0.0,
            base_delay: Duration::from_millis(30),
            jitter,
            late: 0.0,
            late_by: Duration::ZERO,
            duplicate: 0.0,
        },
    );
    call.run(Duration::from_secs(10));
    let depth_before = call.core.jitter_depth();
    let before = call.core.jitter_stats();
    let mut played = Vec::with_capacity(MIX_HZ * 61);
    let mut max_depth = Duration::ZERO;
    for _ in 0..(60 * 50) {
        for _ in 0..4 {
            call.step();
        }
        played.extend_from_slice(call.core.frame());
        max_depth = max_depth.max(call.core.jitter_depth());
    }
    let worst_misfit_db = played
        .windows(MIX_HZ / 50)
        .step_by(MIX_HZ / 100)
        .map(misfit_db)
        .fold(f64::MIN, f64::max);
    let after = call.core.jitter_stats();
    let stats = crate::media::jitter::JitterStats {
        skipped: after.skipped - before.skipped,
        stretched: after.stretched - before.stretched,
        accelerated: after.accelerated - before.accelerated,
        expanded: after.expanded - before.expanded,
        ..after
    };
    Drifted {
        worst_misfit_db,
        stats,
        depth_before,
        max_depth,
    }
}

#[test]
fn a_clean_tone_fits_its_sinusoid() {
    // The measure's own floor: no drift, nothing to correct.
    for codec in [Codec::Pcmu, Codec::G722, Codec::Opus] {
        let d = drifted(codec, 0.0, Duration::ZERO);
        assert!(
            d.worst_misfit_db < -25.0,
            "{codec:?}: {:.1} dB",
            d.worst_misfit_db
        );
        assert_eq!(
            d.stats.skipped + d.stats.stretched,
            0,
            "{codec:?}: {:?}",
            d.stats
        );
    }
}

#[test]
fn a_fast_sender_is_caught_up_by_shortening_the_tone_not_by_skipping() {
    for codec in [Codec::Pcmu, Codec::G722, Codec::Opus] {
        // 0.3 % fast: 180 ms more than it plays in the minute.
        let d = drifted(codec, 3000.0, Duration::ZERO);
        let context = format!(
            "{codec:?}: worst misfit {:.1} dB, depth {:?} -> max {:?}, {:?}",
            d.worst_misfit_db, d.depth_before, d.max_depth, d.stats
        );
        assert_eq!(d.stats.skipped, 0, "{context}");
        assert!(d.stats.accelerated >= 10, "{context}");
        assert!(d.worst_misfit_db < -25.0, "{context}");
        assert!(
            d.max_depth <= d.depth_before + Duration::from_millis(40),
            "{context}"
        );
    }
}
