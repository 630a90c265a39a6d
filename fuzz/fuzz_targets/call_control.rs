//! Call control's state machines fed a caller's keys at times it chooses: the language menu
//! (`call::language_menu`) and the keypad (`call::keypad`, sequences and decisions).
//!
//! Input: `[languages][records]`, a record `[step][key]`: `step` advances the clock by that
//! many 40 ms (0 lets time stand), `key` is any byte taken as a char. Between keys the menu's
//! clock is ticked.
//! Properties: no panic; a chosen language is one the menu offers; the menu is said a bounded
//! number of times whatever is keyed (its rounds, restarted by at most `MAX_WRONG_KEYS - 1`
//! wrong keys) and chooses at the latest at its `MAX_WRONG_KEYS`-th wrong key; every action
//! keyed is decided with something to say, and volume stays within the keypad's range.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use confab::call::keypad::{Effect, KeyEntry, KeyMap, MAX_VOLUME_STEPS, Situation, decide};
use confab::call::language_menu::{
    LanguageMenu, MAX_LANGUAGES, MAX_WRONG_KEYS, MenuOutcome, ROUNDS,
};
use confab::conference::Role;
use libfuzzer_sys::fuzz_target;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let Some((&languages, records)) = data.split_first() else {
        return;
    };
    let languages = usize::from(languages % 16);
    let offered = languages.clamp(1, MAX_LANGUAGES);
    let mut now = base();
    let (mut menu, first) = LanguageMenu::new(now, languages, Duration::from_secs(4));
    assert_eq!(first.len() % 2, 0);
    let mut says = 1u32;
    let mut wrong = 0u32;
    let mut chosen = None;
    let map = KeyMap::default();
    let mut entry = KeyEntry::default();
    let mut volume = 0i8;
    let mut muted = false;
    for record in records.chunks_exact(2) {
        now += Duration::from_millis(u64::from(record[0]) * 40);
        let key = char::from(record[1]);
        if chosen.is_none() {
            let ticked = menu.tick(now);
            let keyed = Some(menu.digit(now, key));
            for outcome in [ticked, keyed].into_iter().flatten() {
                match outcome {
                    MenuOutcome::Say(_) => says += 1,
                    MenuOutcome::Wait => {}
                    MenuOutcome::Chosen(i) => {
                        assert!(i < offered, "chose {i} of {offered}");
                        chosen = Some(i);
                        break;
                    }
                }
            }
            let offers_it = key
                .to_digit(10)
                .is_some_and(|d| (1..=offered).contains(&(d as usize)));
            if !offers_it {
                wrong += 1;
            }
            assert!(
                chosen.is_some() || wrong < MAX_WRONG_KEYS,
                "{wrong} wrong keys, no choice"
            );
            assert!(
                says <= ROUNDS * MAX_WRONG_KEYS + MAX_WRONG_KEYS,
                "said {says} times"
            );
        }
        if let Some(action) = entry.key(now, key, &map) {
            let situation = Situation {
                role: if record[0] % 2 == 0 {
                    Role::Leader
                } else {
                    Role::Attendee
                },
                muted,
                locked: record[0] % 3 == 0,
                present: usize::from(record[1]),
                volume,
            };
            let decision = decide(action, situation);
            assert!(!decision.say.is_empty(), "{action:?} says nothing");
            match decision.effect {
                Some(Effect::Volume(v)) => {
                    assert!((-MAX_VOLUME_STEPS..=MAX_VOLUME_STEPS).contains(&v));
                    volume = v;
                }
                Some(Effect::Mute(on)) => muted = on,
                _ => {}
            }
        }
    }
});
