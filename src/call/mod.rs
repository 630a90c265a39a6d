//! Call control, sans-I/O: what a participant's keys, and the bridge's own decisions about a
//! call, come to. The shells (SIP, WHIP, the API) feed it with `now` and carry out what it
//! decides; nothing here touches a socket or reads a clock.

pub mod keypad;
pub mod language_menu;

use std::time::Duration;

/// How long `samples` at the mix rate (prompts' rate) take to play.
pub(crate) fn playing_time(samples: usize) -> Duration {
    Duration::from_micros(
        u64::try_from(samples)
            .unwrap_or(u64::MAX)
            .saturating_mul(1_000_000)
            / u64::from(crate::media::codec::MIX_RATE),
    )
}
