//! Confab's integration tests, one binary: the crate and `support` are compiled and linked once
//! instead of once per file. Each module was a test file of its own; run one with
//! `cargo test --test it media_mix::` (or a single test by its full path).
//!
//! Tests share the process, so what a file once had to itself is shared here:
//! - `support::exclusive()` (real-time media and real clients) and `support::shared()`
//!   (everything else) keep real-time tests from running beside any other test, as they never did
//!   when each file was a binary run after the others;
//! - `mixer_alloc` counts allocations with this binary's global allocator, only while armed, in
//!   a process of its own it starts (no other test may allocate meanwhile);
//! - a test that needs a program from outside (baresip, SIPp, linphonec, Chromium, ...) says
//!   which is missing and skips (`support::require`), except in CI (`CI` set), which installs
//!   them all (.ci/run, scripts/prereqs) and fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

mod api;
mod api_metrics;
mod browser;
mod cascade;
mod cli;
mod cluster;
mod cluster_kamailio;
mod control_path;
mod deploy;
mod faults;
mod hostile_access;
mod https;
mod loadtest_ipv6;
mod loadtest_netns;
mod loadtest_netns_ipv6;
mod loadtest_smoke;
mod loadtest_soak;
mod media_control;
mod media_mix;
mod media_network;
mod media_signals;
mod metrics_labels;
mod mixer_alloc;
mod netns_latch;
mod netns_nat;
mod noise_suppression_api;
mod presence;
mod quickstart;
mod realtime;
mod recording;
mod records;
mod sip_attendant;
mod sip_baresip;
mod sip_conference_event;
mod sip_dialout;
mod sip_digest;
mod sip_dtmf;
mod sip_failure_limits;
mod sip_greetings;
mod sip_hand_off;
mod sip_keypad;
mod sip_linphone;
mod sip_load;
mod sip_names;
mod sip_renegotiation;
mod sip_robust;
mod sip_tls;
mod town_hall;
mod webhooks;
mod webrtc;
