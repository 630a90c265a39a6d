//! The attendant, sans-I/O: what a dial-in caller keys, and what to do about it.
//!
//! Steps: the meeting ID then `#`; the passcode then `#` (or `*` to give a leader PIN
//! instead); the leader PIN then `#`. A wrong entry is a try; after `max_tries` the caller hears
//! goodbye and is hung up. `inter_digit` without a key ends the entry as `#` would. Digits come
//! from RFC 4733, SIP INFO or in-band detection; the shell feeds them with `now` and carries out
//! what comes back: prompts to play, a join, a hang-up, and each failed attempt, which the
//! shell counts at once (a caller who hangs up before the goodbye has still failed). While the
//! directory says a caller or meeting is locked out (too many failures), an entry is wrong
//! without being compared, and is not counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::prompts::Prompt;
use crate::conference::limiter::Credential;
use crate::conference::{Admission, Role};

/// Settings of the attendant.
#[derive(Clone, Copy, Debug)]
pub struct AttendantSettings {
    pub max_tries: u32,
    pub inter_digit: Duration,
    /// How long the goodbye prompt plays before the hang-up.
    pub goodbye: Duration,
    /// A meeting ID this node does not have is sent to the dispatcher (which may know it)
    /// rather than refused.
    pub redirect: bool,
}

impl Default for AttendantSettings {
    fn default() -> Self {
        AttendantSettings {
            max_tries: 3,
            inter_digit: Duration::from_secs(10),
            goodbye: Duration::from_secs(3),
            redirect: false,
        }
    }
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Play(Prompt),
    Join {
        meeting: String,
        role: Role,
    },
    /// Too many wrong entries: the caller was told goodbye and is to be hung up.
    Hangup,
    /// The meeting is not here: send the caller to the dispatcher with it.
    Redirect {
        meeting: String,
    },
    /// A wrong entry (not an empty one): a meeting ID that is not here (`meeting` none), or a
    /// wrong passcode or leader PIN of `meeting`.
    Failed {
        meeting: Option<String>,
    },
}

/// What the attendant asks of the bridge.
pub trait Directory {
    /// Whether a meeting exists here and what it asks for.
    fn admission(&self, meeting: &str) -> Option<Arc<Admission>>;
    /// Whether this caller, or its entries of a credential for a meeting (when given), are
    /// refused now.
    fn locked_out(&self, attempt: Option<(&str, Credential)>) -> bool;
}

/// A plain lookup is a directory that locks nobody out.
impl<F: Fn(&str) -> Option<Arc<Admission>>> Directory for F {
    fn admission(&self, meeting: &str) -> Option<Arc<Admission>> {
        self(meeting)
    }

    fn locked_out(&self, _: Option<(&str, Credential)>) -> bool {
        false
    }
}

/// Longest entry taken (more digits are a wrong entry).
const MAX_DIGITS: usize = 16;

#[derive(Debug)]
enum Step {
    MeetingId,
    Passcode {
        meeting: String,
        admission: Arc<Admission>,
    },
    LeaderPin {
        meeting: String,
        admission: Arc<Admission>,
    },
    Leaving {
        at: Instant,
    },
    Done,
}

/// One caller at the attendant.
#[derive(Debug)]
pub struct Attendant {
    settings: AttendantSettings,
    step: Step,
    digits: String,
    tries: u32,
    last_key: Instant,
}

/// Compares secrets in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

impl Attendant {
    /// A caller of the access number (`meeting` none: it is asked for), or of a meeting that
    /// wants a passcode. Returns the attendant and what to do first.
    pub fn new(
        now: Instant,
        settings: AttendantSettings,
        meeting: Option<(String, Arc<Admission>)>,
    ) -> (Self, Vec<Outcome>) {
        let (step, prompt) = match meeting {
            None => (Step::MeetingId, Prompt::Welcome),
            Some((meeting, admission)) => (Step::Passcode { meeting, admission }, Prompt::Passcode),
        };
        let a = Attendant {
            settings,
            step,
            digits: String::new(),
            tries: 0,
            last_key: now,
        };
        (a, vec![Outcome::Play(prompt)])
    }

    /// Whether the caller is done with the attendant (joined or hung up).
    pub fn finished(&self) -> bool {
        matches!(self.step, Step::Done)
    }

    /// A key. `directory` tells whether a meeting exists here and what it asks for.
    pub fn digit(&mut self, now: Instant, digit: char, directory: &dyn Directory) -> Vec<Outcome> {
        if matches!(self.step, Step::Leaving { .. } | Step::Done) {
            return Vec::new();
        }
        self.last_key = now;
        match digit {
            '#' => self.submit(now, directory),
            '*' => {
                let step = std::mem::replace(&mut self.step, Step::Done);
                match step {
                    Step::Passcode { meeting, admission } if admission.leader_pin.is_some() => {
                        self.digits.clear();
                        self.step = Step::LeaderPin { meeting, admission };
                        vec![Outcome::Play(Prompt::LeaderPin)]
                    }
                    other => {
                        self.step = other;
                        Vec::new()
                    }
                }
            }
            d if d.is_ascii_digit() => {
                if self.digits.len() <= MAX_DIGITS {
                    self.digits.push(d);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Time passing: the inter-digit timeout ends an entry, the goodbye ends the call.
    pub fn tick(&mut self, now: Instant, directory: &dyn Directory) -> Vec<Outcome> {
        match self.step {
            Step::Leaving { at } if now >= at => {
                self.step = Step::Done;
                vec![Outcome::Hangup]
            }
            Step::Leaving { .. } | Step::Done => Vec::new(),
            _ if now.saturating_duration_since(self.last_key) >= self.settings.inter_digit => {
                self.last_key = now;
                self.submit(now, directory)
            }
            _ => Vec::new(),
        }
    }

    /// A wrong entry: `failed` is what to count (none: an empty entry, or one refused
    /// unread during a lockout).
    fn wrong(&mut self, now: Instant, again: Prompt, failed: Option<Outcome>) -> Vec<Outcome> {
        self.tries += 1;
        self.digits.clear();
        let mut out: Vec<Outcome> = failed.into_iter().collect();
        if self.tries >= self.settings.max_tries {
            self.step = Step::Leaving {
                at: now + self.settings.goodbye,
            };
            out.push(Outcome::Play(Prompt::Goodbye));
        } else {
            out.push(Outcome::Play(again));
        }
        out
    }

    fn join(&mut self, meeting: String, role: Role) -> Vec<Outcome> {
        self.step = Step::Done;
        self.digits.clear();
        vec![
            Outcome::Play(Prompt::Joining),
            Outcome::Join { meeting, role },
        ]
    }

    fn submit(&mut self, now: Instant, directory: &dyn Directory) -> Vec<Outcome> {
        let entry = std::mem::take(&mut self.digits);
        let step = std::mem::replace(&mut self.step, Step::Done);
        match step {
            Step::MeetingId => {
                self.step = Step::MeetingId;
                if entry.is_empty() || directory.locked_out(None) {
                    return self.wrong(now, Prompt::Welcome, None);
                }
                if entry.len() > MAX_DIGITS {
                    let failed = Outcome::Failed { meeting: None };
                    return self.wrong(now, Prompt::Welcome, Some(failed));
                }
                match directory.admission(&entry) {
                    None if self.settings.redirect => {
                        self.step = Step::Done;
                        vec![Outcome::Redirect { meeting: entry }]
                    }
                    None => {
                        let failed = Outcome::Failed { meeting: None };
                        self.wrong(now, Prompt::UnknownMeeting, Some(failed))
                    }
                    Some(admission)
                        if admission.passcode.is_none() && admission.leader_pin.is_none() =>
                    {
                        self.join(entry, Role::Attendee)
                    }
                    Some(admission) => {
                        self.step = Step::Passcode {
                            meeting: entry,
                            admission,
                        };
                        vec![Outcome::Play(Prompt::Passcode)]
                    }
                }
            }
            Step::Passcode { meeting, admission } => {
                if directory.locked_out(Some((&meeting, Credential::Passcode))) {
                    self.step = Step::Passcode { meeting, admission };
                    return self.wrong(now, Prompt::Invalid, None);
                }
                let ok = match &admission.passcode {
                    Some(code) => same(&entry, code),
                    // No passcode (a leader PIN only): `#` alone joins as an attendee.
                    None => entry.is_empty(),
                };
                if ok {
                    self.join(meeting, Role::Attendee)
                } else {
                    let failed = (!entry.is_empty()).then(|| Outcome::Failed {
                        meeting: Some(meeting.clone()),
                    });
                    self.step = Step::Passcode { meeting, admission };
                    self.wrong(now, Prompt::Invalid, failed)
                }
            }
            Step::LeaderPin { meeting, admission } => {
                if directory.locked_out(Some((&meeting, Credential::LeaderPin))) {
                    self.step = Step::LeaderPin { meeting, admission };
                    return self.wrong(now, Prompt::Invalid, None);
                }
                let ok = admission
                    .leader_pin
                    .as_deref()
                    .is_some_and(|pin| !entry.is_empty() && same(&entry, pin));
                if ok {
                    self.join(meeting, Role::Leader)
                } else {
                    let failed = (!entry.is_empty()).then(|| Outcome::Failed {
                        meeting: Some(meeting.clone()),
                    });
                    self.step = Step::LeaderPin { meeting, admission };
                    self.wrong(now, Prompt::Invalid, failed)
                }
            }
            other => {
                self.step = other;
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(meeting: &str) -> Option<Arc<Admission>> {
        match meeting {
            "1234" => Some(Arc::new(Admission::default())),
            "5555" => Some(Arc::new(Admission {
                passcode: Some("4242".into()),
                leader_pin: Some("9999".into()),
                ..Admission::default()
            })),
            "7777" => Some(Arc::new(Admission {
                passcode: None,
                leader_pin: Some("1111".into()),
                ..Admission::default()
            })),
            _ => None,
        }
    }

    fn keys(a: &mut Attendant, now: Instant, s: &str) -> Vec<Outcome> {
        s.chars()
            .flat_map(|c| a.digit(now, c, &directory))
            .collect()
    }

    fn failed(meeting: &str) -> Outcome {
        Outcome::Failed {
            meeting: Some(meeting.into()),
        }
    }

    /// A directory whose meetings and callers are all locked out.
    struct Locked;

    impl Directory for Locked {
        fn admission(&self, meeting: &str) -> Option<Arc<Admission>> {
            directory(meeting)
        }

        fn locked_out(&self, _: Option<(&str, Credential)>) -> bool {
            true
        }
    }

    #[test]
    fn a_locked_out_caller_or_meeting_gets_nowhere_and_learns_nothing() {
        let t = Instant::now();
        let m = Some(("5555".to_owned(), directory("5555").unwrap()));
        let (mut a, _) = Attendant::new(t, AttendantSettings::default(), m);
        // The right passcode is refused exactly as a wrong one, unread and uncounted.
        let right: Vec<Outcome> = "4242#"
            .chars()
            .flat_map(|c| a.digit(t, c, &Locked))
            .collect();
        assert_eq!(right, [Outcome::Play(Prompt::Invalid)]);
        let wrong: Vec<Outcome> = "4243#"
            .chars()
            .flat_map(|c| a.digit(t, c, &Locked))
            .collect();
        assert_eq!(wrong, [Outcome::Play(Prompt::Invalid)]);
        let (mut b, _) = Attendant::new(t, AttendantSettings::default(), None);
        let id: Vec<Outcome> = "1234#"
            .chars()
            .flat_map(|c| b.digit(t, c, &Locked))
            .collect();
        assert_eq!(id, [Outcome::Play(Prompt::Welcome)]);
    }

    fn joined(meeting: &str, role: Role) -> Vec<Outcome> {
        vec![
            Outcome::Play(Prompt::Joining),
            Outcome::Join {
                meeting: meeting.into(),
                role,
            },
        ]
    }

    #[test]
    fn meeting_id_alone_joins_an_open_meeting() {
        let t = Instant::now();
        let (mut a, first) = Attendant::new(t, AttendantSettings::default(), None);
        assert_eq!(first, [Outcome::Play(Prompt::Welcome)]);
        assert_eq!(keys(&mut a, t, "1234#"), joined("1234", Role::Attendee));
        assert!(a.finished());
        assert!(keys(&mut a, t, "5#").is_empty());
    }

    #[test]
    fn passcode_and_leader_pin() {
        let t = Instant::now();
        let (mut a, _) = Attendant::new(t, AttendantSettings::default(), None);
        assert_eq!(keys(&mut a, t, "5555#"), [Outcome::Play(Prompt::Passcode)]);
        assert_eq!(keys(&mut a, t, "4242#"), joined("5555", Role::Attendee));

        let (mut b, _) = Attendant::new(t, AttendantSettings::default(), None);
        keys(&mut b, t, "5555#");
        assert_eq!(keys(&mut b, t, "*"), [Outcome::Play(Prompt::LeaderPin)]);
        assert_eq!(keys(&mut b, t, "9999#"), joined("5555", Role::Leader));

        // Dialled straight to a meeting with a passcode: the attendant starts there.
        let m = Some(("5555".to_owned(), directory("5555").unwrap()));
        let (mut c, first) = Attendant::new(t, AttendantSettings::default(), m);
        assert_eq!(first, [Outcome::Play(Prompt::Passcode)]);
        assert_eq!(keys(&mut c, t, "4242#"), joined("5555", Role::Attendee));

        // A leader PIN but no passcode: `#` alone is an attendee, `*` and the PIN a leader.
        let (mut d, _) = Attendant::new(t, AttendantSettings::default(), None);
        keys(&mut d, t, "7777#");
        assert_eq!(keys(&mut d, t, "#"), joined("7777", Role::Attendee));
    }

    #[test]
    fn three_wrong_tries_then_goodbye_and_hangup() {
        let t = Instant::now();
        let (mut a, _) = Attendant::new(t, AttendantSettings::default(), None);
        assert_eq!(
            keys(&mut a, t, "9#"),
            [
                Outcome::Failed { meeting: None },
                Outcome::Play(Prompt::UnknownMeeting)
            ]
        );
        assert_eq!(keys(&mut a, t, "5555#"), [Outcome::Play(Prompt::Passcode)]);
        assert_eq!(
            keys(&mut a, t, "1#"),
            [failed("5555"), Outcome::Play(Prompt::Invalid)]
        );
        // The failure is told with the entry, before the goodbye: a caller who hangs up while
        // it plays has failed all the same.
        assert_eq!(
            keys(&mut a, t, "4243#"),
            [failed("5555"), Outcome::Play(Prompt::Goodbye)]
        );
        // Keys after goodbye change nothing; the hang-up comes when the prompt has played.
        assert!(keys(&mut a, t, "4242#").is_empty());
        assert!(a.tick(t + Duration::from_secs(1), &directory).is_empty());
        assert_eq!(
            a.tick(t + Duration::from_secs(3), &directory),
            [Outcome::Hangup]
        );
        assert!(a.finished());
        // A wrong leader PIN is a try too; an empty one is wrong.
        let (mut b, _) = Attendant::new(t, AttendantSettings::default(), None);
        keys(&mut b, t, "5555#*");
        assert_eq!(keys(&mut b, t, "#"), [Outcome::Play(Prompt::Invalid)]);
        assert_eq!(
            keys(&mut b, t, "4242#"),
            [failed("5555"), Outcome::Play(Prompt::Invalid)]
        );
        assert_eq!(keys(&mut b, t, "9999#"), joined("5555", Role::Leader));
    }

    #[test]
    fn inter_digit_timeout_ends_an_entry() {
        let t = Instant::now();
        let s = AttendantSettings::default();
        let (mut a, _) = Attendant::new(t, s, None);
        keys(&mut a, t, "1234");
        assert!(a.tick(t + Duration::from_secs(9), &directory).is_empty());
        assert_eq!(
            a.tick(t + Duration::from_secs(10), &directory),
            joined("1234", Role::Attendee)
        );
        // Silence alone: a try each 10 s, then goodbye.
        let (mut b, _) = Attendant::new(t, s, None);
        let mut said = Vec::new();
        for second in 1..=40 {
            said.extend(b.tick(t + Duration::from_secs(second), &directory));
        }
        assert_eq!(
            said,
            [
                Outcome::Play(Prompt::Welcome),
                Outcome::Play(Prompt::Welcome),
                Outcome::Play(Prompt::Goodbye),
                Outcome::Hangup
            ]
        );
    }

    #[test]
    fn an_unknown_meeting_goes_to_the_dispatcher_when_there_is_one() {
        let t = Instant::now();
        let s = AttendantSettings {
            redirect: true,
            ..AttendantSettings::default()
        };
        let (mut a, _) = Attendant::new(t, s, None);
        assert_eq!(
            keys(&mut a, t, "8888#"),
            [Outcome::Redirect {
                meeting: "8888".into()
            }]
        );
        assert!(a.finished());
    }

    #[test]
    fn overlong_entries_and_odd_keys() {
        let t = Instant::now();
        let (mut a, _) = Attendant::new(t, AttendantSettings::default(), None);
        let long = "1".repeat(40) + "#";
        assert_eq!(
            keys(&mut a, t, &long),
            [
                Outcome::Failed { meeting: None },
                Outcome::Play(Prompt::Welcome)
            ]
        );
        assert!(keys(&mut a, t, "ABCD*").is_empty());
        assert_eq!(keys(&mut a, t, "1234#"), joined("1234", Role::Attendee));
        assert!(same("4242", "4242") && !same("4242", "424") && !same("", "1"));
    }
}
