//! Several nodes on one database: each node's conferences follow the stored ones, whichever
//! node's API changed them. A conference created elsewhere starts here; one whose settings
//! changed gets them (admission with its passcode, PIN and attendees, SRTP policy, limits,
//! lock, entry and exit sounds); one deleted elsewhere ends here.

use std::collections::HashMap;

use super::AppState;
use super::conferences::{admission, share_srtp, start};
use crate::mixer::Control;
use crate::store::StoredConference;

/// The stored conferences as last seen, by id. Bound: the stored conferences (replaced
/// whole at each round).
pub type Seen = HashMap<String, StoredConference>;

/// One round: reads the stored conferences and brings this node's to them.
pub fn sync_conferences(state: &AppState, seen: &mut Seen) {
    let stored = match state.store.conferences() {
        Ok(stored) => stored,
        Err(e) => {
            tracing::debug!(error = %e, "conferences not read from the store");
            return;
        }
    };
    let running: std::collections::HashSet<String> =
        state.engine.conference_ids().into_iter().collect();
    for c in &stored {
        if !running.contains(&c.id) {
            // This runs on the placement thread, not on the runtime: it may wait.
            if let Err(e) = start(state, c).wait() {
                tracing::debug!(conference = %c.id, error = ?e, "stored conference not started");
            }
            continue;
        }
        match seen.get(&c.id) {
            Some(before) if before == c => {}
            before => apply(state, before, c),
        }
    }
    let now: Seen = stored.into_iter().map(|c| (c.id.clone(), c)).collect();
    // Deleted through another node: ended here too (only those once stored: the attendant's
    // lobby and conferences not from the store are not the store's to end).
    for id in seen.keys().filter(|id| !now.contains_key(*id)) {
        if running.contains(id) {
            let _ = state.engine.control(id, Control::End);
        }
        share_srtp(state, id, None);
    }
    *seen = now;
}

/// Gives a running conference its stored settings (as a PATCH through this node would).
fn apply(state: &AppState, before: Option<&StoredConference>, c: &StoredConference) {
    share_srtp(state, &c.id, c.srtp);
    let _ = state.engine.set_admission(&c.id, admission(c));
    let _ = state.engine.control(
        &c.id,
        Control::Limits {
            max_participants: c.max_participants,
            wait_for_leader: c.wait_for_leader,
        },
    );
    // The lock and the sounds only when they changed (a lock made here, by the API or a
    // leader's keypad, is in the mixer already).
    if before.is_some_and(|b| b.locked != c.locked) {
        let _ = state.engine.control(&c.id, Control::Lock(c.locked));
    }
    if before.is_none_or(|b| b.entry_exit != c.entry_exit) {
        let _ = state
            .engine
            .control(&c.id, Control::EntryExit(c.entry_exit));
    }
}
