//! Media: what a leg does with RTP between the socket and the mixer.

pub mod codec;
pub mod jitter;
pub mod leg;
pub mod opus_path;
pub mod ports;
pub mod quality;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub mod telephone_event;
pub mod udp;
