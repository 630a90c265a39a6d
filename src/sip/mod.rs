//! SIP signalling for dial-in legs.
//!
//! - `message`: parsing and writing SIP messages, TCP framing.
//! - `sdp`: offer/answer for RTP/AVP and RTP/SAVP (SDES) legs.
//! - `uas`: the sans-I/O call logic (transactions and dialogs of dial-in calls).
//! - `digest`: digest authentication (challenges, credentials, responses).
//! - `attendant`: the sans-I/O digit collection (meeting ID, passcode, leader PIN);
//!   `prompts`: what it says.
//! - `subscriptions`: the conference event package (RFC 4575 over RFC 6665), sans-I/O;
//!   `conference_event`: its documents.
//! - `presence`: "in a conference" published to a presence server (RFC 3903 PUBLISH of
//!   PIDF), sans-I/O.
//! - `server`: the tokio shell: UDP and TCP listeners, the engine, the bridge's own hang-ups.
//!
//! Why not the rsipstack crate: its transports drop a malformed request
//! silently where we must answer 400, log every raw message (with callers' numbers) at INFO,
//! and run transactions in tasks of their own; the call logic here is a state machine fed
//! with bytes and `now`, so every timer and hostile input is tested without sockets.

pub mod attendant;
pub(crate) mod auth;
pub mod conference_event;
pub mod conference_srtp;
pub(crate) mod digest;
pub mod hand_off;
pub mod message;
pub mod presence;
pub mod prompts;
pub mod sdp;
pub mod server;
pub mod subscriptions;
pub mod uas;
