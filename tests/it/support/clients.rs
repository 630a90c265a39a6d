//! Real SIP clients and what the tests measure with them. clients.rs grew past 600 lines with
//! five things in it; each is a file of its own now, and everything is re-exported here so the
//! tests keep naming `support::clients::…`:
//! - `sip_bridge`: a bridge with SIP on a free loopback port, in the test's process;
//! - `baresip`: baresip driven headlessly on loopback;
//! - `raw_ua`: a SIP user agent written in the test, for messages no phone sends on cue;
//! - `wav`: tone files made by sox, and recordings read back;
//! - `tone_checks`: a tone's share of the power in 0.5 s Hann-windowed blocks, measured here
//!   (not with Confab's own DSP), and whether it is present or absent.

mod baresip;
mod raw_ua;
mod sip_bridge;
mod tone_checks;
mod wav;

pub use baresip::{Baresip, BaresipOptions, free_port};
pub use raw_ua::{RawUa, answer_port, ok_to};
pub use sip_bridge::SipBridge;
pub use tone_checks::{absent, describe, present, tone_shares};
pub use wav::{read_wav, tone_wav};
