//! The attendant's language menu, sans-I/O: before the attendant asks for the meeting ID, a
//! caller of the access number hears "for English press 1, für Deutsch drücken Sie die 2, …",
//! each offer in its own language, and keys a digit. A key that offers nothing repeats the
//! menu (once it has been said: keys while it is being said do not restart it); a caller who
//! keys nothing gets the menu again after a pause and then, after [`ROUNDS`] rounds, the first
//! (default) language, as does a caller who keys [`MAX_WRONG_KEYS`] keys that offer nothing.
//! So nobody stays at the menu longer than its rounds, and keys cannot make it say more.

use std::time::{Duration, Instant};

use crate::sip::prompts::Prompt;

/// Languages a menu can offer: one key each, `1` to `9`.
pub const MAX_LANGUAGES: usize = 9;
/// Times the menu is said before the default language is taken.
pub const ROUNDS: u32 = 2;
/// Keys that offer nothing before the first language is taken.
pub const MAX_WRONG_KEYS: u32 = 3;
/// Silence after the menu before it is said again (counted from when it was asked for, plus
/// the time it takes to say, which the shell passes in).
pub const PAUSE: Duration = Duration::from_secs(5);

/// One piece of the menu: `prompt` in the menu's `language`-th language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Said {
    pub language: usize,
    pub prompt: Prompt,
}

/// What the shell is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MenuOutcome {
    /// Play these, in order.
    Say(Vec<Said>),
    /// Nothing now (a wrong key while the menu is being said).
    Wait,
    /// The caller's language (an index into the menu's languages).
    Chosen(usize),
}

/// One caller at the menu.
#[derive(Debug)]
pub struct LanguageMenu {
    languages: usize,
    /// When the menu is said again (or, after the last round, the default taken).
    next: Instant,
    rounds: u32,
    /// Keys that offered nothing.
    wrong: u32,
    /// Until when the menu is being said.
    saying_until: Instant,
    /// How long the menu takes to say.
    length: Duration,
}

impl LanguageMenu {
    /// A menu of `languages` entries (at most [`MAX_LANGUAGES`] are offered), which takes
    /// `length` to say; returns it and what to say first.
    pub fn new(now: Instant, languages: usize, length: Duration) -> (Self, Vec<Said>) {
        let mut menu = LanguageMenu {
            languages: languages.clamp(1, MAX_LANGUAGES),
            next: now,
            rounds: 0,
            wrong: 0,
            saying_until: now,
            length,
        };
        let said = menu.say(now);
        (menu, said)
    }

    /// A key from the caller.
    pub fn digit(&mut self, now: Instant, digit: char) -> MenuOutcome {
        match digit.to_digit(10).and_then(|d| usize::try_from(d).ok()) {
            Some(d @ 1..) if d <= self.languages => MenuOutcome::Chosen(d - 1),
            _ => {
                self.wrong += 1;
                if self.wrong >= MAX_WRONG_KEYS {
                    return MenuOutcome::Chosen(0);
                }
                if now < self.saying_until {
                    return MenuOutcome::Wait;
                }
                // A key that offers nothing, after the menu: the rounds start again.
                self.rounds = 0;
                MenuOutcome::Say(self.say(now))
            }
        }
    }

    /// Time passing without a key.
    pub fn tick(&mut self, now: Instant) -> Option<MenuOutcome> {
        if now < self.next {
            return None;
        }
        if self.rounds >= ROUNDS {
            return Some(MenuOutcome::Chosen(0));
        }
        Some(MenuOutcome::Say(self.say(now)))
    }

    fn say(&mut self, now: Instant) -> Vec<Said> {
        self.rounds += 1;
        self.saying_until = now + self.length;
        self.next = self.saying_until + PAUSE;
        offers(self.languages)
    }
}

/// What a menu of `languages` says: each language's offer in itself, and its key.
pub fn offers(languages: usize) -> Vec<Said> {
    (0..languages.clamp(1, MAX_LANGUAGES))
        .flat_map(|language| {
            let key = Prompt::number(language + 1);
            std::iter::once(Prompt::LanguageSelect)
                .chain(key)
                .map(move |prompt| Said { language, prompt })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENGTH: Duration = Duration::from_secs(6);

    #[test]
    fn each_language_is_offered_in_itself_with_its_key() {
        let now = Instant::now();
        let (_, said) = LanguageMenu::new(now, 3, LENGTH);
        let expected: Vec<Said> = (0..3)
            .flat_map(|language| {
                [
                    Said {
                        language,
                        prompt: Prompt::LanguageSelect,
                    },
                    Said {
                        language,
                        prompt: Prompt::number(language + 1).unwrap(),
                    },
                ]
            })
            .collect();
        assert_eq!(said, expected);
    }

    #[test]
    fn a_key_chooses_and_a_key_that_offers_nothing_repeats() {
        let now = Instant::now();
        let (mut menu, first) = LanguageMenu::new(now, 4, LENGTH);
        assert_eq!(menu.digit(now, '3'), MenuOutcome::Chosen(2));
        assert_eq!(menu.digit(now, '1'), MenuOutcome::Chosen(0));
        assert_eq!(menu.digit(now, '4'), MenuOutcome::Chosen(3));
        // While the menu is said a wrong key is only counted; after it, the menu is said again.
        assert_eq!(menu.digit(now, '0'), MenuOutcome::Wait);
        let after = now + LENGTH;
        assert_eq!(menu.digit(after, '5'), MenuOutcome::Say(first.clone()));
        assert_eq!(
            menu.tick(after + LENGTH),
            None,
            "said again: the pause starts anew"
        );
        for wrong in ['0', '5', '9', '*', '#', 'A'] {
            let (mut menu, _) = LanguageMenu::new(now, 4, LENGTH);
            assert_eq!(menu.digit(after, wrong), MenuOutcome::Say(first.clone()));
        }
    }

    #[test]
    fn keying_wrong_keys_fast_ends_at_the_default_not_in_an_endless_menu() {
        let now = Instant::now();
        let (mut menu, _) = LanguageMenu::new(now, 3, LENGTH);
        let mut outcomes = Vec::new();
        for i in 0..100u32 {
            let at = now + Duration::from_millis(u64::from(i) * 10);
            let o = menu.digit(at, '#');
            outcomes.push(o.clone());
            if matches!(o, MenuOutcome::Chosen(_)) {
                break;
            }
        }
        assert_eq!(outcomes.len(), MAX_WRONG_KEYS as usize);
        assert_eq!(outcomes.last(), Some(&MenuOutcome::Chosen(0)));
        assert!(!outcomes.iter().any(|o| matches!(o, MenuOutcome::Say(_))));
    }

    #[test]
    fn silence_repeats_the_menu_then_takes_the_default() {
        let t0 = Instant::now();
        let (mut menu, first) = LanguageMenu::new(t0, 2, LENGTH);
        let again = t0 + LENGTH + PAUSE;
        assert_eq!(menu.tick(again - Duration::from_millis(1)), None);
        assert_eq!(menu.tick(again), Some(MenuOutcome::Say(first)));
        let last = again + LENGTH + PAUSE;
        assert_eq!(menu.tick(last - Duration::from_millis(1)), None);
        assert_eq!(menu.tick(last), Some(MenuOutcome::Chosen(0)));
    }

    #[test]
    fn a_menu_is_bounded_to_the_keys_there_are() {
        let now = Instant::now();
        let (mut menu, said) = LanguageMenu::new(now, 40, LENGTH);
        assert_eq!(said.len(), 2 * MAX_LANGUAGES);
        assert_eq!(menu.digit(now, '9'), MenuOutcome::Chosen(8));
        let (mut none, said) = LanguageMenu::new(now, 0, LENGTH);
        assert_eq!(said.len(), 2);
        assert_eq!(none.digit(now, '1'), MenuOutcome::Chosen(0));
    }
}
