//! Confab, the server: configuration, media legs, conferences, the mixer, signalling and the API.
//!
//! The binary (`src/main.rs`) is a thin command line over this library; integration tests in
//! `tests/` drive the same pieces.
#![forbid(unsafe_code)]

pub mod addr;
pub mod api;
pub mod call;
pub mod conference;
pub mod config;
pub mod engine;
pub mod media;
pub mod metrics;
pub mod mixer;
pub mod placement;
pub mod recording;
pub mod serve;
pub mod sip;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;
pub(crate) mod webhooks;
pub mod webrtc;
