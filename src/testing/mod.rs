//! Test-only: a deterministic network and a phone model, in stepped time.
//!
//! Behaviour tests put a leg's sans-I/O core (`media::leg::LegCore`) on one end and a
//! [`phone::SimPhone`] on the other, with a [`net::Link`] between them that loses, delays,
//! reorders and duplicates packets from a seeded generator, and a [`net::Nat`] that can rebind.
//! Time is an `Instant` the test steps forward: an hour of call takes seconds, nothing sleeps,
//! and the same seed gives the same run. The phone encodes and decodes with codecs from outside
//! Confab (audio-codec for G.711 and G.722, libopus), so what a test measures never trusts our
//! own encoder or decoder.

pub(crate) mod call;
pub(crate) mod net;
pub(crate) mod phone;
pub(crate) mod pki;
pub(crate) mod rng;
pub(crate) mod room;
