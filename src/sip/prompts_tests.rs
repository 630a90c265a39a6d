//! The prompts: the list, the built-in languages and sounds, loading from a folder.

use std::sync::OnceLock;

use confab_dsp::signal::level_dbov;

use super::*;

/// Every built-in language, loaded once for all the tests.
fn built_in() -> &'static [Prompts] {
    static ALL: OnceLock<Vec<Prompts>> = OnceLock::new();
    ALL.get_or_init(|| {
        LANGUAGES
            .iter()
            .map(|l| Prompts::embedded_language(l).unwrap())
            .collect()
    })
}

fn secs(a: f64, b: f64) -> std::ops::Range<Duration> {
    Duration::from_secs_f64(a)..Duration::from_secs_f64(b)
}

/// How long a speech prompt may be.
fn speech_length(p: Prompt) -> std::ops::Range<Duration> {
    match p {
        Prompt::Number(_) => secs(0.2, 1.5),
        Prompt::LanguageSelect
        | Prompt::ThereAre
        | Prompt::Participants
        | Prompt::MoreThanTwenty
        | Prompt::HasJoined
        | Prompt::HasLeft => secs(0.4, 4.0),
        Prompt::Help => secs(5.0, 25.0),
        _ => secs(0.5, 8.0),
    }
}

#[test]
fn the_list_names_every_prompt_once() {
    for (i, p) in Prompt::ALL.iter().enumerate() {
        assert_eq!(p.index(), Some(i), "{p:?}");
    }
    let mut names: Vec<_> = Prompt::ALL.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Prompt::ALL.len());
    let sounds: Vec<_> = Prompt::ALL.iter().filter(|p| p.is_sound()).collect();
    assert_eq!(
        sounds,
        [
            &Prompt::Music,
            &Prompt::EnterTone,
            &Prompt::ExitTone,
            &Prompt::Beep
        ]
    );
    for (_, files) in EMBEDDED {
        assert_eq!(files.len(), Prompt::ALL.len() - sounds.len());
    }
}

#[test]
fn numbers_are_one_to_twenty() {
    assert_eq!(Prompt::number(0), None);
    assert_eq!(Prompt::number(21), None);
    assert_eq!(Prompt::number(256 + 3), None);
    for n in 1..=Prompt::MAX_NUMBER {
        let p = Prompt::number(n).unwrap();
        assert_eq!(p.name(), format!("number_{n}"));
        assert!(Prompt::ALL.contains(&p));
    }
    // Made by hand out of range: nothing to play, no panic.
    let p = built_in()[0].clone();
    assert!(p.audio(Prompt::Number(0)).is_empty());
    assert_eq!(p.duration(Prompt::Number(21)), Duration::ZERO);
}

#[test]
fn every_language_is_built_in_and_its_speech_is_loud_and_the_right_length() {
    assert_eq!(Prompts::embedded().unwrap().language(), "en");
    for p in built_in() {
        for prompt in Prompt::ALL.into_iter().filter(|p| !p.is_sound()) {
            let d = p.duration(prompt);
            let range = speech_length(prompt);
            assert!(range.contains(&d), "{} {prompt:?}: {d:?}", p.language());
            let loud = level_dbov(&p.audio(prompt));
            assert!(
                loud > -30.0,
                "{} {prompt:?} is nearly silent: {loud} dBov",
                p.language()
            );
        }
    }
}

#[test]
fn languages_say_their_own_words() {
    let all = built_in();
    for prompt in Prompt::ALL.into_iter().filter(|p| !p.is_sound()) {
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(
                    a.audio(prompt) != b.audio(prompt),
                    "{prompt:?}: {} and {} are the same",
                    a.language(),
                    b.language()
                );
            }
        }
    }
}

#[test]
fn sounds_are_shared_and_music_loops_without_a_click() {
    let all = built_in();
    let en = &all[0];
    for p in &all[1..] {
        for sound in Prompt::ALL.into_iter().filter(|p| p.is_sound()) {
            assert!(p.audio(sound) == en.audio(sound), "{sound:?}");
        }
    }
    let music = en.audio(Prompt::Music);
    let d = en.duration(Prompt::Music);
    assert!(secs(10.0, 30.0).contains(&d), "music: {d:?}");
    let level = level_dbov(&music);
    assert!((-26.0..-15.0).contains(&level), "music: {level} dBov");
    let ms10 = Rate::Hz48000.samples(10);
    // The resampler's flush leaves zeros at the very end; the last 10 ms of the music
    // itself is before them.
    let end = music.iter().rposition(|s| *s != 0).unwrap_or(0) + 1;
    for (at, edge) in [
        ("start", &music[..ms10]),
        ("end", &music[end.saturating_sub(ms10)..end]),
    ] {
        let peak = edge.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak < 400, "music {at}: peak {peak}");
    }
    for tone in [Prompt::EnterTone, Prompt::ExitTone, Prompt::Beep] {
        let d = en.duration(tone);
        assert!(secs(0.15, 1.0).contains(&d), "{tone:?}: {d:?}");
        let loud = level_dbov(&en.audio(tone));
        assert!(loud > -30.0, "{tone:?} is nearly silent: {loud} dBov");
    }
    assert!(en.audio(Prompt::EnterTone) != en.audio(Prompt::ExitTone));
}

#[test]
fn an_unknown_built_in_language_is_named() {
    let e = Prompts::embedded_language("it").unwrap_err().to_string();
    assert!(e.contains("\"it\"") && e.contains("en, de, fr, es"), "{e}");
    let e = Prompts::embedded_language("../en").unwrap_err().to_string();
    assert!(e.contains("not a language name"), "{e}");
}

#[test]
fn a_book_holds_the_languages_asked_for() {
    let langs = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let book = PromptBook::embedded(&langs(&["de", "fr", "de"])).unwrap();
    assert_eq!(book.languages(), langs(&["de", "fr"]));
    assert_eq!(book.default_language(), "de");
    assert_eq!(book.get("fr").language(), "fr");
    assert_eq!(book.get("FR-ca").language(), "fr");
    assert_eq!(book.get("es").language(), "de");
    assert_eq!(book.get("").language(), "de");
    assert!(
        Arc::ptr_eq(
            &book.get("de").audio(Prompt::Music),
            &book.get("fr").audio(Prompt::Music)
        ),
        "sounds are loaded once"
    );
    assert!(matches!(
        PromptBook::embedded(&[]),
        Err(PromptError::NoLanguages)
    ));
    assert!(PromptBook::load(None, &langs(&["en", "xx"])).is_err());
    let en = PromptBook::load(None, &langs(&["en"])).unwrap();
    assert_eq!(en.languages(), langs(&["en"]));
}

#[test]
fn another_language_is_a_folder_and_bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let fr = dir.path().join("fr");
    std::fs::create_dir_all(&fr).unwrap();
    for (name, bytes) in EMBEDDED[2].1 {
        std::fs::write(fr.join(format!("{name}.wav")), bytes).unwrap();
    }
    // No sounds folder: the built-in sounds.
    let loaded = Prompts::load(dir.path(), "fr").unwrap();
    assert!(loaded.audio(Prompt::Music) == built_in()[0].audio(Prompt::Music));
    assert!(loaded.audio(Prompt::Help) == built_in()[2].audio(Prompt::Help));
    let book = PromptBook::load(Some(dir.path()), &["fr".to_owned()]).unwrap();
    assert_eq!(book.default_language(), "fr");

    std::fs::write(fr.join("goodbye.wav"), b"RIFF....WAVEjunk").unwrap();
    let e = Prompts::load(dir.path(), "fr").unwrap_err().to_string();
    assert!(e.contains("goodbye.wav"), "{e}");
    std::fs::remove_file(fr.join("goodbye.wav")).unwrap();
    let e = Prompts::load(dir.path(), "fr").unwrap_err().to_string();
    assert!(e.contains("goodbye.wav"), "{e}");
    assert!(Prompts::load(dir.path(), "de").is_err());
    std::fs::write(fr.join("goodbye.wav"), EMBEDDED[2].1[6].1).unwrap();

    // A sounds folder is used, and must be whole.
    let sounds = dir.path().join("sounds");
    std::fs::create_dir_all(&sounds).unwrap();
    for (name, bytes) in EMBEDDED_SOUNDS {
        std::fs::write(sounds.join(format!("{name}.wav")), bytes).unwrap();
    }
    assert!(Prompts::load(dir.path(), "fr").is_ok());
    std::fs::remove_file(sounds.join("beep.wav")).unwrap();
    let e = Prompts::load(dir.path(), "fr").unwrap_err().to_string();
    assert!(e.contains("beep.wav"), "{e}");
    let e = PromptBook::load(Some(dir.path()), &["fr".to_owned()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("beep.wav"), "{e}");
}

#[test]
fn a_prompt_in_every_language_comes_default_first_and_each_in_its_own_voice() {
    let book = PromptBook::embedded(&["de".to_owned(), "en".to_owned(), "fr".to_owned()]).unwrap();
    let voices = book.voices(Prompt::Restarting);
    let languages: Vec<&str> = voices.iter().map(|(l, _)| &**l).collect();
    assert_eq!(languages, ["de", "en", "fr"]);
    for (language, audio) in voices.iter() {
        assert_eq!(audio, &book.get(language).audio(Prompt::Restarting));
    }
    // The recordings differ: each language is its own speech, not the default's.
    assert_ne!(voices[0].1, voices[1].1);
    assert_ne!(voices[1].1, voices[2].1);
}
