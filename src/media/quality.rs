//! A call-quality estimate per leg: the ITU-T G.107 E-model reduced to what a bridge can see
//! (codec, packet loss, one-way delay), mapped to a MOS between 1 and 4.5.
//!
//! R = 93.2 - Id - Ie,eff with Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl) (G.107 7.2.5), the
//! delay impairment Id from the one-way delay (G.107's simplified form, as in Cole & Rosenbluth),
//! and MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R). Narrowband scale for every codec: wideband
//! codecs are not credited with their advantage, so figures stay comparable across legs.

use std::time::Duration;

use super::codec::Codec;

/// Equipment impairment Ie and packet-loss robustness Bpl of a codec with its concealment
/// (G.113 Appendix I: G.711 with PLC 0 / 25.1; G.722 at 64 kbit/s and Opus are taken as no
/// worse than G.711 with PLC; Opus' FEC makes it more robust to random loss).
fn impairment(codec: Codec) -> (f64, f64) {
    match codec {
        Codec::Pcmu | Codec::Pcma | Codec::G722 => (0.0, 25.1),
        Codec::Opus => (0.0, 30.0),
    }
}

/// The R factor for a leg.
pub fn r_factor(codec: Codec, loss_percent: f64, one_way_delay: Duration) -> f64 {
    let (ie, bpl) = impairment(codec);
    let ppl = loss_percent.clamp(0.0, 100.0);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    let d = one_way_delay.as_secs_f64() * 1000.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// MOS (1..=4.5) from an R factor (G.107 Annex B).
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r)).clamp(1.0, 4.5)
    }
}

/// The estimated MOS of a leg.
pub fn mos(codec: Codec, loss_percent: f64, one_way_delay: Duration) -> f64 {
    mos_from_r(r_factor(codec, loss_percent, one_way_delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_call_is_toll_quality_and_worsens_with_loss_and_delay() {
        let ms = Duration::from_millis;
        let clean = mos(Codec::Pcmu, 0.0, ms(20));
        assert!((4.3..=4.45).contains(&clean), "{clean}");
        // G.107's own figure: R 93.2 is MOS 4.41.
        assert!((mos_from_r(93.2) - 4.41).abs() < 0.01);
        let lossy = mos(Codec::Pcmu, 5.0, ms(20));
        let very_lossy = mos(Codec::Pcmu, 20.0, ms(20));
        assert!(
            clean > lossy && lossy > very_lossy,
            "{clean} {lossy} {very_lossy}"
        );
        assert!((3.5..4.1).contains(&lossy), "{lossy}");
        let late = mos(Codec::Pcmu, 0.0, ms(400));
        assert!(late < 3.6 && late > 2.0, "{late}");
        // Opus' FEC: more robust to the same loss.
        assert!(mos(Codec::Opus, 5.0, ms(20)) > lossy);
        assert_eq!(mos(Codec::Pcmu, 100.0, ms(5000)), 1.0);
        assert_eq!(mos_from_r(150.0), 4.5);
    }
}
