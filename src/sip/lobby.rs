//! The shell's side of the attendant: callers in the lobby hear its prompts and key their
//! digits, which reach it here; once they got them right their leg moves into the meeting (or,
//! for a meeting another node has, they are referred to the dispatcher). Wrong entries count
//! in the failure limiter, which also turns away a caller or meeting with too many; right ones
//! are remembered there, so a meeting's lockout does not turn away callers who knew it.

use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::refusal::would_refuse;
use super::shell::MoveEnd;
use super::{Caller, LOBBY, Shell};
use crate::call::language_menu::{self, LanguageMenu, MenuOutcome};
use crate::call::playing_time;
use crate::conference::limiter::{Credential, FailureLimiter, Transport};
use crate::conference::roster::EntryExit;
use crate::conference::{Admission, DisconnectReason, ParticipantId, Role};
use crate::engine::{Engine, Joiner};
use crate::mixer::Control;
use crate::placement::Placed;
use crate::sip::attendant::{Attendant, Directory, Outcome};
use crate::sip::hand_off;
use crate::sip::prompts::Prompt;
use crate::webrtc::token::TokenSigner;

/// Where a caller in the lobby is: choosing its language, or at the attendant.
#[derive(Debug)]
pub(crate) enum AtLobby {
    Menu {
        menu: LanguageMenu,
        /// The meeting it called, if it called one (then no ID is asked for).
        meeting: Option<(String, Arc<Admission>)>,
    },
    Attendant(Attendant),
}

impl Shell {
    /// A caller answered in the lobby: the language menu first if it is offered one, else
    /// the attendant.
    pub(crate) fn at_lobby(
        &mut self,
        participant: ParticipantId,
        meeting: Option<(String, Arc<Admission>)>,
        caller: Caller,
    ) {
        let now = Instant::now();
        if caller.menu {
            let offered = self.config.menu_languages.len();
            let audio = self.menu_audio();
            let length = crate::call::playing_time(audio.len());
            let (menu, _) = LanguageMenu::new(now, offered, length);
            self.participants
                .at_attendant(participant, AtLobby::Menu { menu, meeting }, caller);
            self.play_in_lobby(participant, audio);
            return;
        }
        let (attendant, first) = Attendant::new(now, self.config.settings, meeting);
        self.participants
            .at_attendant(participant, AtLobby::Attendant(attendant), caller);
        self.carry_out(participant, first);
    }

    /// The menu's offers as one piece of audio, each in its language: made once, then shared
    /// (a key that repeats the menu costs no copy of it).
    fn menu_audio(&mut self) -> Arc<[i16]> {
        if let Some(audio) = &self.menu_audio {
            return Arc::clone(audio);
        }
        let languages = &self.config.menu_languages;
        let audio: Arc<[i16]> = language_menu::offers(languages.len())
            .iter()
            .filter_map(|s| {
                let language = languages.get(s.language)?;
                Some(self.config.prompts_in(language).audio(s.prompt))
            })
            .flat_map(|a| a.iter().copied().collect::<Vec<_>>())
            .collect();
        self.menu_audio = Some(Arc::clone(&audio));
        audio
    }

    fn play_in_lobby(&self, participant: ParticipantId, audio: Arc<[i16]>) {
        let _ = self.engine.play(LOBBY, participant, Some(audio));
    }

    /// What the menu decided: say it again, or the caller's language and on to the attendant.
    fn menu_outcome(&mut self, participant: ParticipantId, outcome: MenuOutcome) {
        match outcome {
            // The offers are always the whole menu: the audio made once says them.
            MenuOutcome::Say(_) => {
                let audio = self.menu_audio();
                self.play_in_lobby(participant, audio);
            }
            MenuOutcome::Wait => {}
            MenuOutcome::Chosen(i) => {
                let Some((AtLobby::Menu { meeting, .. }, mut caller)) =
                    self.participants.take_attendant(participant)
                else {
                    return;
                };
                if let Some(language) = self.config.menu_languages.get(i) {
                    caller.language = language.clone();
                }
                caller.menu = false;
                self.at_lobby(participant, meeting, caller);
            }
        }
    }

    /// A digit from a participant: the menu's or the attendant's, if it is in the lobby, else
    /// a keypad control's.
    pub(crate) fn digit(&mut self, participant: ParticipantId, digit: char) {
        let now = Instant::now();
        let Some((at, caller)) = self.participants.attendant_mut(participant) else {
            self.forget_greeting(participant);
            self.keypad_digit(now, participant, digit);
            return;
        };
        let attendant = match at {
            AtLobby::Menu { menu, .. } => {
                let outcome = menu.digit(now, digit);
                self.menu_outcome(participant, outcome);
                return;
            }
            AtLobby::Attendant(attendant) => attendant,
        };
        let limiter = self.limiter.lock().ok();
        let directory = ShellDirectory {
            engine: &self.engine,
            limiter: limiter.as_deref(),
            caller: &caller.key,
            now,
        };
        let outcomes = attendant.digit(now, digit, &directory);
        drop(limiter);
        self.carry_out(participant, outcomes);
    }

    pub(crate) fn tick_attendants(&mut self, now: Instant) {
        let limiter = self.limiter.lock().ok();
        let mut all = Vec::new();
        let mut menus = Vec::new();
        for (p, (at, caller)) in self.participants.attendants_mut() {
            let attendant = match at {
                AtLobby::Menu { menu, .. } => {
                    menus.extend(menu.tick(now).map(|o| (p, o)));
                    continue;
                }
                AtLobby::Attendant(attendant) => attendant,
            };
            let directory = ShellDirectory {
                engine: &self.engine,
                limiter: limiter.as_deref(),
                caller: &caller.key,
                now,
            };
            let outcomes = attendant.tick(now, &directory);
            if !outcomes.is_empty() {
                all.push((p, outcomes));
            }
        }
        drop(limiter);
        for (p, outcomes) in all {
            self.carry_out(p, outcomes);
        }
        for (p, outcome) in menus {
            self.menu_outcome(p, outcome);
        }
        self.participants.attendants_done();
    }

    pub(crate) fn carry_out(&mut self, participant: ParticipantId, outcomes: Vec<Outcome>) {
        for outcome in outcomes {
            let engine = Arc::clone(&self.engine);
            match outcome {
                Outcome::Play(prompt) => {
                    let language = self.language_of(participant);
                    let audio = self.config.prompts_in(&language).audio(prompt);
                    self.play_in_lobby(participant, audio);
                }
                Outcome::Join { meeting, role } => {
                    let Some(caller) = self.participants.caller(participant) else {
                        continue;
                    };
                    let admission = self.engine.admission(&meeting);
                    let admitted = admission
                        .as_ref()
                        .is_some_and(|a| a.gate.admits(caller.asserted_identity.as_deref()));
                    if !admitted {
                        self.control(
                            participant,
                            Control::Remove(participant, DisconnectReason::Rejected),
                        );
                        continue;
                    }
                    // It gave the meeting's passcode or leader PIN: that meeting's lockout
                    // (a stranger's guessing) no longer keeps its entries of that credential
                    // out. A leader keyed the PIN; an attendee keyed the passcode only if there
                    // is one (an open meeting, or `#` where only a PIN is set, proves nothing).
                    let proven = match role {
                        Role::Leader => Some(Credential::LeaderPin),
                        _ if admission.as_ref().is_some_and(|a| a.passcode.is_some()) => {
                            Some(Credential::Passcode)
                        }
                        _ => None,
                    };
                    if let Some(proven) = proven
                        && let Ok(mut limiter) = self.limiter.lock()
                    {
                        limiter.success(Instant::now(), &caller.key, &meeting, proven);
                    }
                    let joiner = Joiner {
                        display_name: caller.display_name.clone(),
                        uri: caller.uri.clone(),
                        role,
                        // Asserted or signed in, never the caller's own From.
                        identity: caller.asserted_identity.clone(),
                    };
                    // Its language goes with it into the meeting.
                    let language = caller.language.clone();
                    // A caller that proved a credential is known for a while (its gateway's
                    // flood budget); an open meeting proves nothing.
                    if proven.is_some() {
                        let key = caller.key.clone();
                        self.admitted.push(key);
                    }
                    let prompts = self.config.prompts_in(&language);
                    let ask_name = [prompts.audio(Prompt::SayName), prompts.audio(Prompt::Beep)];
                    // "Joining" (the outcome before this one) is heard out first.
                    let joining = playing_time(prompts.audio(Prompt::Joining).len());
                    self.participants.moving(participant, language.clone());
                    let moves = self.moves.clone();
                    // Several nodes: where the meeting runs, and the pass that spares the
                    // caller the passcode there.
                    let placement = self.config.placement.clone().map(|placement| Onward {
                        placement,
                        pass: self.config.hand_off.clone().map(|signer| {
                            let handed = hand_off::Handed {
                                role,
                                language: Some(language.clone()),
                            };
                            (signer, handed)
                        }),
                    });
                    tokio::spawn(async move {
                        // A meeting that says names (and would take the caller) asks for
                        // one first.
                        if says_names(&engine, &meeting, role).await {
                            tokio::time::sleep(joining).await;
                            record_name(&engine, participant, ask_name).await;
                        }
                        // The leg carries the caller's language into the meeting, whose own
                        // notices (that it is being recorded) are then said in it; a failure
                        // leaves it the default language.
                        let _ = engine.set_language(LOBBY, participant, &language).await;
                        move_to_meeting(
                            &engine,
                            participant,
                            &meeting,
                            joiner,
                            role,
                            placement,
                            &moves,
                        )
                        .await;
                    });
                }
                Outcome::Redirect { meeting } => match self.dispatcher {
                    Some(d) => self
                        .refers
                        .push((participant, format!("sip:{meeting}@{d}"))),
                    None => self.control(
                        participant,
                        Control::Remove(participant, DisconnectReason::AttendantFailed),
                    ),
                },
                Outcome::Failed { meeting } => {
                    // Counted at the entry: hanging up during the goodbye changes nothing.
                    if let (Some(caller), Ok(mut limiter)) =
                        (self.participants.caller(participant), self.limiter.lock())
                    {
                        limiter.failure(
                            Instant::now(),
                            Transport::Sip,
                            &caller.key,
                            meeting.as_deref(),
                        );
                    }
                }
                Outcome::Hangup => {
                    self.control(
                        participant,
                        Control::Remove(participant, DisconnectReason::AttendantFailed),
                    );
                }
            }
        }
    }
}

/// Moves a caller's leg from the lobby into `meeting` and says how it went on `moves`. A move
/// the meeting refuses loses the leg: the caller is told first.
/// Where meetings run when several nodes share a database, and what a caller referred to
/// another node takes with it.
struct Onward {
    placement: Arc<crate::placement::Placement>,
    /// The signer of passes, and what the caller's pass says it is.
    pass: Option<(Arc<TokenSigner>, hand_off::Handed)>,
}

async fn move_to_meeting(
    engine: &Engine,
    participant: ParticipantId,
    meeting: &str,
    joiner: Joiner,
    role: Role,
    placement: Option<Onward>,
    moves: &tokio::sync::mpsc::Sender<(ParticipantId, MoveEnd)>,
) {
    // Several nodes: the meeting runs where its lease is, and only there.
    if let Some(Onward { placement, pass }) = placement {
        let claimed = meeting.to_owned();
        // A claim in the database: off the runtime's threads.
        let placed = tokio::task::spawn_blocking(move || placement.place(&claimed)).await;
        match placed {
            Ok(Ok(Placed::Here)) => {}
            Ok(Ok(Placed::Elsewhere(owner))) => {
                let (signer, handed) = match &pass {
                    Some((signer, handed)) => (Some(&**signer), handed.clone()),
                    None => (
                        None,
                        hand_off::Handed {
                            role,
                            language: None,
                        },
                    ),
                };
                let target = hand_off::refer_target(
                    signer,
                    meeting,
                    &owner.sip,
                    &handed,
                    hand_off::unix_now(),
                );
                let _ = moves.send((participant, MoveEnd::Elsewhere(target))).await;
                return;
            }
            Ok(Err(e)) => {
                debug!(error = %e, %meeting, "attendant: placement unavailable");
                let _ = moves.send((participant, MoveEnd::Lost)).await;
                return;
            }
            // The claim panicked (a bug): the caller is hung up rather than left waiting.
            Err(_) => {
                let _ = moves.send((participant, MoveEnd::Lost)).await;
                return;
            }
        }
    }
    if let Some(refusal) = would_refuse(engine, meeting, role).await {
        let _ = moves.send((participant, MoveEnd::Refused(refusal))).await;
        return;
    }
    let _ = engine.detect_dtmf(LOBBY, participant, false);
    let moved = engine.move_leg(LOBBY, participant, meeting, joiner).await;
    if let Err(e) = &moved {
        debug!(error = %e, %meeting, "attendant: could not move the caller");
    }
    let end = match moved {
        Ok(()) => MoveEnd::In(meeting.to_owned()),
        Err(_) => MoveEnd::Lost,
    };
    let _ = moves.send((participant, end)).await;
}

/// Whether `meeting` says the names of those who enter and leave it, and would take this
/// caller now (one it refuses is not asked for a name first).
async fn says_names(engine: &Engine, meeting: &str, role: Role) -> bool {
    engine
        .policy(meeting)
        .await
        .is_ok_and(|p| p.entry_exit == EntryExit::Names)
        && would_refuse(engine, meeting, role).await.is_none()
}

/// "After the tone, say your name", the tone, and [`NAME_LENGTH`] of the caller recorded in
/// the lobby; the name goes with the leg. A caller who hangs up meanwhile is gone when the
/// move is tried, as at any other time.
async fn record_name(engine: &Engine, participant: ParticipantId, ask: [Arc<[i16]>; 2]) {
    let [say_name, beep] = ask;
    let steps: [(Option<Arc<[i16]>>, std::time::Duration); 2] = [
        (Some(Arc::clone(&say_name)), playing_time(say_name.len())),
        (Some(Arc::clone(&beep)), playing_time(beep.len())),
    ];
    for (audio, length) in steps {
        if engine.play(LOBBY, participant, audio).await.is_err() {
            // Gone (hung up): the move that follows finds so at once.
            return;
        }
        tokio::time::sleep(length).await;
    }
    if engine
        .record_name(LOBBY, participant, NAME_LENGTH)
        .await
        .is_ok()
    {
        tokio::time::sleep(NAME_LENGTH).await;
    }
}

/// How long a caller is given to say its name.
const NAME_LENGTH: std::time::Duration = crate::media::leg::name::MAX_NAME;

/// The attendant's view of the bridge: the engine's meetings (the lobby is none) and the
/// failure limiter, for one caller.
struct ShellDirectory<'a> {
    engine: &'a Engine,
    limiter: Option<&'a FailureLimiter>,
    caller: &'a str,
    now: Instant,
}

impl Directory for ShellDirectory<'_> {
    fn admission(&self, meeting: &str) -> Option<Arc<Admission>> {
        // The lobby is no meeting; neither is the access user.
        if meeting == LOBBY {
            None
        } else {
            self.engine.admission(meeting)
        }
    }

    fn locked_out(&self, attempt: Option<(&str, Credential)>) -> bool {
        // Without the limiter (a poisoned lock) nothing is let through unchecked.
        self.limiter
            .is_none_or(|l| l.locked_for(self.now, self.caller, attempt).is_some())
    }
}
