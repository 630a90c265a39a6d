//! The application state the API's unit tests call handlers with: a running engine, a store
//! and the state over them, with no SIP server, no operator token and three talkers.

use std::sync::Arc;

use super::AppState;
use crate::engine::{Engine, EngineSettings};
use crate::media::codec::Codec;
use crate::store::Store;

/// An engine started with `settings`, and `store`; `codecs` are the API legs' codecs (none:
/// the defaults).
pub(crate) fn app_state(store: Store, settings: EngineSettings, codecs: Vec<Codec>) -> AppState {
    let engine = Arc::new(Engine::start(settings).unwrap());
    let events = engine.broadcast_events().unwrap();
    AppState::new(engine, None, store, events.subscribe(), None, 3, codecs)
}
