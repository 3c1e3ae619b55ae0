use super::*;
use crate::ui::action::Action;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use std::path::{Path, PathBuf};

fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, modifiers)
}

fn char_key(c: char) -> KeyEvent {
    press(KeyCode::Char(c), KeyModifiers::NONE)
}

fn shipped(name: &str) -> Keymap {
    Keymap::load(name, Path::new("/nonexistent/flightdeck-test")).unwrap_or_else(|e| panic!("{e}"))
}

fn keys(names: &[&str]) -> Vec<KeyCombo> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

/// Feeds `names` in order and returns the outcome of the last key.
fn feed_all(keymap: &Keymap, layer: Layer, names: &[&str]) -> KeyOutcome {
    let mut sequence = KeySequence::new();
    let mut outcome = KeyOutcome::NoMatch;
    for key in keys(names) {
        outcome = sequence.feed(keymap, layer, &press(key.code, key.modifiers));
    }
    outcome
}

#[test]
fn shipped_keymaps_bind_every_cockpit_action() {
    let needed = Action::ALL.iter().map(|(a, _)| *a).filter(|a| a.is_rollout_command()).chain([
        Action::Help,
        Action::Palette,
        Action::Filter,
        Action::Quit,
    ]);
    for name in shipped_names() {
        let keymap = shipped(name);
        for action in needed.clone() {
            assert!(keymap.key_for(Layer::Cockpit, action).is_some(), "{name}: nothing runs {action}");
        }
        for layer in [Layer::Confirm, Layer::Input, Layer::Help] {
            assert!(keymap.key_for(layer, Action::Cancel).is_some(), "{name}: no way out of {layer}");
        }
    }
}

#[test]
fn shipped_descriptions_fit_the_footer() {
    for name in shipped_names() {
        for (layer, _) in Layer::ALL {
            for b in shipped(name).bindings(layer) {
                assert!(b.desc.chars().count() <= 24, "{name}: {layer} `{}`: {:?} is too long", b.key_name(), b.desc);
            }
        }
    }
}

#[test]
fn shipped_rollout_keys_cannot_confirm_themselves() {
    // Pressing a rollout key twice (or key repeat) must not confirm it:
    // whether it asks is the core's to say, per rollout, so no key that
    // sends a command may also confirm one.
    for name in shipped_names() {
        let keymap = shipped(name);
        for b in keymap.bindings(Layer::Cockpit).iter().filter(|b| b.action.is_rollout_command()) {
            let outcome = feed_all(&keymap, Layer::Confirm, &[&b.keys[0].to_string()]);
            assert_ne!(outcome, KeyOutcome::Matched(Action::Confirm), "{name}: `{}` confirms", b.key_name());
        }
    }
}

#[test]
fn shipped_input_layers_leave_printable_keys_to_the_text_field() {
    for name in shipped_names() {
        for b in shipped(name).bindings(Layer::Input) {
            let printable = matches!(b.keys[0].code, KeyCode::Char(_)) && b.keys[0].modifiers.is_empty();
            assert!(!printable, "{name}: input binds `{}`", b.key_name());
        }
    }
}

#[test]
fn freeze_view_and_pause_are_different_keys() {
    for name in shipped_names() {
        let keymap = shipped(name);
        assert_ne!(keymap.key_for(Layer::Cockpit, Action::Pause), keymap.key_for(Layer::Cockpit, Action::FreezeView));
    }
}

#[test]
fn key_for_gives_the_first_binding() {
    let keymap = shipped("default");
    assert_eq!(keymap.key_for(Layer::Cockpit, Action::Pause).as_deref(), Some("p"));
    assert_eq!(keymap.key_for(Layer::Cockpit, Action::Down).as_deref(), Some("j"));
    assert_eq!(keymap.key_for(Layer::Confirm, Action::Cancel).as_deref(), Some("<Esc>"));
    assert_eq!(keymap.key_for(Layer::Input, Action::Help), None);
    assert_eq!(shipped("vim").key_for(Layer::Cockpit, Action::Top).as_deref(), Some("gg"));
}

#[test]
fn key_names_round_trip_to_canonical_form() {
    let cases = [
        ("p", "p"),
        ("P", "P"),
        ("<S-p>", "P"),
        ("?", "?"),
        ("<", "<"),
        ("<Space>", "<Space>"),
        ("<esc>", "<Esc>"),
        ("<C-c>", "<C-c>"),
        ("<c-C>", "<C-C>"),
        ("<A-C-x>", "<C-A-x>"),
        ("<C-->", "<C-->"),
        ("<S-Tab>", "<S-Tab>"),
        ("<BackTab>", "<S-Tab>"),
        ("<F12>", "<F12>"),
        ("<S-Up>", "<S-Up>"),
        ("<PageDown>", "<PageDown>"),
    ];
    for (name, canonical) in cases {
        let key: KeyCombo = name.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.to_string(), canonical, "{name}");
        assert_eq!(canonical.parse::<KeyCombo>().unwrap(), key, "{canonical}");
    }
    for bad in ["", " ", "\t", "gg", "<Ctrl-x>", "<F13>", "<F0>", "<C->", "<>", "<X-a>"] {
        assert!(bad.parse::<KeyCombo>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn single_key_matches() {
    let keymap = shipped("default");
    let mut sequence = KeySequence::new();
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('p')), KeyOutcome::Matched(Action::Pause));
    let ctrl_c = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &ctrl_c), KeyOutcome::Matched(Action::Quit));
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('z')), KeyOutcome::NoMatch);
    assert!(sequence.pending().is_empty());
}

#[test]
fn sequence_waits_then_matches() {
    let keymap = shipped("vim");
    let mut sequence = KeySequence::new();
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Pending);
    assert_eq!(sequence.pending(), keys(&["g"]));
    assert_eq!(sequence_name(sequence.pending()), "g");
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Matched(Action::Top));
    assert!(sequence.pending().is_empty());
}

#[test]
fn wrong_second_key_drops_the_sequence() {
    let keymap = shipped("vim");
    let mut sequence = KeySequence::new();
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Pending);
    // `j` alone is bound, but after `g` it does not complete anything.
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('j')), KeyOutcome::NoMatch);
    assert!(sequence.pending().is_empty());
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('j')), KeyOutcome::Matched(Action::Down));
}

#[test]
fn changing_layer_drops_the_sequence() {
    let keymap = shipped("vim");
    let mut sequence = KeySequence::new();
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('Z')), KeyOutcome::Pending);
    assert_eq!(sequence.feed(&keymap, Layer::Help, &char_key('Z')), KeyOutcome::Pending);
    assert_eq!(sequence.feed(&keymap, Layer::Help, &char_key('Z')), KeyOutcome::Matched(Action::Cancel));
}

#[test]
fn uppercase_matches_with_or_without_shift() {
    let keymap = shipped("default");
    for modifiers in [KeyModifiers::NONE, KeyModifiers::SHIFT] {
        let outcome = KeySequence::new().feed(&keymap, Layer::Cockpit, &press(KeyCode::Char('R'), modifiers));
        assert_eq!(outcome, KeyOutcome::Matched(Action::Rollback), "{modifiers:?}");
    }
    // Some terminals (kitty protocol) report the base key plus SHIFT.
    let lower_shift = press(KeyCode::Char('r'), KeyModifiers::SHIFT);
    assert_eq!(KeySequence::new().feed(&keymap, Layer::Cockpit, &lower_shift), KeyOutcome::Matched(Action::Rollback));
    let question = press(KeyCode::Char('?'), KeyModifiers::SHIFT);
    assert_eq!(KeySequence::new().feed(&keymap, Layer::Cockpit, &question), KeyOutcome::Matched(Action::Help));
    let shift_tab = KeyCombo::new(KeyCode::BackTab, KeyModifiers::SHIFT);
    assert_eq!(shift_tab, "<S-Tab>".parse().unwrap());
}

#[test]
fn release_events_are_ignored() {
    let keymap = shipped("vim");
    let mut sequence = KeySequence::new();
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Pending);
    let mut release = char_key('g');
    release.kind = KeyEventKind::Release;
    release.state = KeyEventState::NONE;
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &release), KeyOutcome::NoMatch);
    assert_eq!(sequence.pending(), keys(&["g"]));
    assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Matched(Action::Top));
}

fn with_user_file(text: &str) -> Keymap {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(USER_FILE), text).unwrap();
    Keymap::load("default", dir.path()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn user_prepend_overrides_shipped_keys() {
    let keymap = with_user_file(
        r#"
        [cockpit]
        prepend_keymap = [
          { on = "p", run = "freeze-view", desc = "Freeze" },
          { on = "<C-p>", run = "pause", desc = "Pause" },
        ]
        "#,
    );
    let cockpit = keymap.bindings(Layer::Cockpit);
    assert_eq!((cockpit[0].key_name().as_str(), cockpit[0].action), ("p", Action::FreezeView));
    assert_eq!(feed_all(&keymap, Layer::Cockpit, &["p"]), KeyOutcome::Matched(Action::FreezeView));
    // The shipped `p` → pause can no longer fire, so help must not list it.
    assert_eq!(cockpit.iter().filter(|b| b.key_name() == "p").count(), 1);
    assert_eq!(keymap.key_for(Layer::Cockpit, Action::Pause).as_deref(), Some("<C-p>"));
    assert_eq!(feed_all(&keymap, Layer::Cockpit, &["q"]), KeyOutcome::Matched(Action::Quit));
}

#[test]
fn user_prepended_sequence_hides_its_prefix() {
    let keymap = with_user_file("[cockpit]\nprepend_keymap = [ { on = [\"g\", \"g\"], run = \"top\" } ]\n");
    assert_eq!(feed_all(&keymap, Layer::Cockpit, &["g"]), KeyOutcome::Pending);
    assert_eq!(feed_all(&keymap, Layer::Cockpit, &["g", "g"]), KeyOutcome::Matched(Action::Top));
    assert_eq!(keymap.key_for(Layer::Cockpit, Action::Top).as_deref(), Some("gg"));
    assert_eq!(keymap.bindings(Layer::Cockpit)[0].desc, "top", "desc defaults to the action name");
}

#[test]
fn user_append_adds_keys_last() {
    let keymap = with_user_file(
        "[cockpit]\nappend_keymap = [ { on = \"z\", run = \"abort\", desc = \"Abort\" }, { on = \"q\", run = \"abort\" } ]\n",
    );
    let cockpit = keymap.bindings(Layer::Cockpit);
    assert_eq!(cockpit.last().unwrap().key_name(), "z");
    assert_eq!(keymap.key_for(Layer::Cockpit, Action::Abort).as_deref(), Some("a"));
    // An appended key the shipped keymap already binds stays shadowed.
    assert_eq!(feed_all(&keymap, Layer::Cockpit, &["q"]), KeyOutcome::Matched(Action::Quit));
}

#[test]
fn user_keymap_replaces_a_layer_only() {
    let keymap = with_user_file("[confirm]\nkeymap = [ { on = \"<Enter>\", run = \"confirm\", desc = \"OK\" } ]\n");
    assert_eq!(keymap.bindings(Layer::Confirm).len(), 1);
    assert_eq!(feed_all(&keymap, Layer::Confirm, &["y"]), KeyOutcome::NoMatch);
    assert_eq!(keymap.bindings(Layer::Cockpit), shipped("default").bindings(Layer::Cockpit));
}

#[test]
fn missing_user_file_is_fine_and_unknown_shipped_name_is_not() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Keymap::load("default", dir.path()).unwrap(), shipped("default"));
    let e = Keymap::load("emacs", dir.path()).unwrap_err();
    assert_eq!(e.to_string(), "keymaps/emacs.toml:1:1: keymap: no shipped keymap named `emacs`; shipped: default, vim");
}

#[test]
fn user_file_errors_name_the_user_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(USER_FILE), "[cockpit]\nappend_keymap = [ { on = \"x\", run = \"launch\" } ]\n")
        .unwrap();
    let e = Keymap::load("default", dir.path()).unwrap_err();
    assert_eq!(e.file, dir.path().join(USER_FILE).display().to_string());
    assert_eq!((e.line, e.column, e.field.as_str()), (2, 37, "cockpit.append_keymap[0].run"));
}

#[test]
fn positions_count_characters_not_bytes() {
    let e = Keymap::parse("u.toml", "[help]\nkeymap = [ { desc = \"é\", on = \"<é>\", run = \"x\" } ]\n").unwrap_err();
    assert_eq!((e.line, e.column, e.field.as_str()), (2, 44, "help.keymap[0].run"));
}

#[test]
fn array_of_tables_form_parses() {
    let keymap = Keymap::parse("t.toml", "[[cockpit.keymap]]\non = \"p\"\nrun = \"pause\"\n").unwrap();
    assert_eq!(keymap.key_for(Layer::Cockpit, Action::Pause).as_deref(), Some("p"));
}

/// Every `tests/invalid_keymaps/NAME.toml` fails with exactly the text
/// of `NAME.expected`.
#[test]
fn invalid_keymaps_fail_with_the_expected_message() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/invalid_keymaps"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "fixtures missing");
    let mut failures = Vec::new();
    for path in files {
        let name = format!("tests/invalid_keymaps/{}", path.file_name().unwrap().to_string_lossy());
        let got = match Keymap::parse(&name, &std::fs::read_to_string(&path).unwrap()) {
            Ok(_) => "parsed without error".to_string(),
            Err(e) => e.to_string(),
        };
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap_or_default();
        if got != expected.trim_end() {
            failures.push(format!("{name}\n  expected: {}\n  got:      {got}", expected.trim_end()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
