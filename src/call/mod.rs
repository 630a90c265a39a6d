//! Call control, sans-I/O: what a participant's keys, and the bridge's own decisions about a
//! call, come to. The shells (SIP, WHIP, the API) feed it with `now` and carry out what it
//! decides; nothing here touches a socket or reads a clock.

pub mod keypad;
pub(crate) mod language_menu;
