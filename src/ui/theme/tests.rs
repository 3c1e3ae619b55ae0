use super::colour::*;
use super::read::*;
use super::*;
use ratatui::style::{Color, Modifier};
use std::path::PathBuf;

const MODES: [ColorMode; 3] = [ColorMode::TrueColor, ColorMode::Ansi16, ColorMode::Mono];

fn repo(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(sub)
}

fn shipped(name: &str, mode: ColorMode) -> Theme {
    let empty = tempfile::tempdir().unwrap();
    Theme::load(name, empty.path(), mode).unwrap_or_else(|e| panic!("{e}"))
}

/// A config dir whose `themes/` holds the given files.
fn config_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("themes")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("themes").join(name), text).unwrap();
    }
    dir
}

/// Loads from `files` with the folder labelled `themes`, as in fixtures.
fn load_files(name: &str, files: &[(&str, &str)]) -> Result<Theme, ThemeError> {
    let config = config_with(files);
    Library { dir: &config.path().join("themes"), label: "themes" }.load(name, ColorMode::TrueColor)
}

#[test]
fn every_shipped_theme_loads_in_every_mode() {
    for name in Theme::shipped() {
        for mode in MODES {
            assert_eq!(shipped(name, mode).name, name);
        }
    }
}

#[test]
fn every_shipped_theme_defines_every_cockpit_scope() {
    for name in Theme::shipped() {
        let theme = shipped(name, ColorMode::TrueColor);
        let missing: Vec<&&str> = SCOPES.iter().filter(|s| !theme.scopes.contains_key(**s)).collect();
        assert!(missing.is_empty(), "{name} lacks {missing:?}");
    }
}

#[test]
fn shipped_list_is_sorted_and_matches_the_themes_folder() {
    let names = Theme::shipped();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    let mut files: Vec<String> = std::fs::read_dir(repo("themes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort_unstable();
    assert_eq!(names, files);
}

#[test]
fn a_theme_exists_when_shipped_or_in_the_user_folder() {
    let config = config_with(&[("mine.toml", "")]);
    assert!(Theme::exists("prod", config.path()));
    assert!(Theme::exists("mine", config.path()));
    assert!(!Theme::exists("prdo", config.path()));
    assert!(!Theme::exists("../themes/mine", config.path()));
    assert!(!Theme::exists("", config.path()));
}

#[test]
fn mono_theme_has_no_colours_and_marks_the_selection() {
    let mono = shipped("mono", ColorMode::TrueColor);
    assert!(mono.scopes.values().all(|s| s.fg.is_none() && s.bg.is_none()));
    assert!(mono.style("ui.selection").add_modifier.contains(Modifier::REVERSED));
    assert!(mono.style("verdict.fail").add_modifier.contains(Modifier::BOLD));
}

#[test]
fn themes_differ_where_it_matters() {
    let prod = shipped("prod", ColorMode::TrueColor);
    let staging = shipped("staging", ColorMode::TrueColor);
    assert_ne!(prod.style("ui.border"), staging.style("ui.border"));
    assert_eq!(prod.symbols.production, "PROD");
    let colorblind = shipped("colorblind", ColorMode::TrueColor);
    assert_ne!(colorblind.symbols.pass, colorblind.symbols.fail);
    assert_ne!(colorblind.symbols.promoted, colorblind.symbols.failed);
}

#[test]
fn dotted_scopes_fall_back_to_their_parents() {
    let theme = load_files("t", &[("t.toml", "verdict = \"#ff0000\"\n\"ui.border\" = \"blue\"\n")]).unwrap();
    let red = Style::default().fg(Color::Rgb(255, 0, 0));
    assert_eq!(theme.style("verdict.fail"), red);
    assert_eq!(theme.style("verdict"), red);
    assert_eq!(theme.style("ui.border.focused"), Style::default().fg(Color::Blue));
    assert_eq!(theme.style("ui.text"), Style::default());
    assert_eq!(theme.style("nothing.like.this"), Style::default());
}

#[test]
fn children_override_scopes_and_merge_palettes_and_symbols() {
    let parent = "modal = { fg = \"main\", modifiers = [\"bold\"] }\nui = \"other\"\n\
                  [palette]\nmain = \"#010203\"\nother = \"#0a0b0c\"\n[symbols]\npass = \"P\"\nfail = \"F\"\n";
    let child = "inherits = \"parent\"\nui = { bg = \"main\" }\n\
                 [palette]\nmain = \"#ffffff\"\n[symbols]\npass = \"ok\"\n";
    let theme = load_files("child", &[("parent.toml", parent), ("child.toml", child)]).unwrap();
    // The parent's scope sees the child's palette entry.
    assert_eq!(theme.style("modal"), Style::default().fg(Color::Rgb(255, 255, 255)).add_modifier(Modifier::BOLD));
    // The child's scope replaces the parent's whole, fg included.
    assert_eq!(theme.style("ui"), Style::default().bg(Color::Rgb(255, 255, 255)));
    assert_eq!((theme.symbols.pass.as_str(), theme.symbols.fail.as_str()), ("ok", "F"));
    assert_eq!(theme.symbols.warn, Symbols::default().warn);
}

#[test]
fn shipped_children_are_complete_through_inheritance() {
    let default = shipped("default", ColorMode::TrueColor);
    let prod = shipped("prod", ColorMode::TrueColor);
    assert_eq!(prod.style("verdict.pass"), default.style("verdict.pass"));
    assert_ne!(prod.style("ui.group.production"), default.style("ui.group.production"));
}

#[test]
fn user_themes_override_shipped_ones() {
    let config = config_with(&[("default.toml", "\"ui.text\" = \"#123456\"\n")]);
    let theme = Theme::load("default", config.path(), ColorMode::TrueColor).unwrap();
    assert_eq!(theme.style("ui.text"), Style::default().fg(Color::Rgb(0x12, 0x34, 0x56)));
    assert_eq!(theme.style("verdict.pass"), Style::default(), "the shipped default is replaced whole");
}

#[test]
fn a_user_theme_may_extend_the_shipped_theme_of_its_name() {
    let config = config_with(&[("default.toml", "inherits = \"default\"\n\"ui.text\" = \"#123456\"\n")]);
    let theme = Theme::load("default", config.path(), ColorMode::TrueColor).unwrap();
    assert_eq!(theme.style("ui.text"), Style::default().fg(Color::Rgb(0x12, 0x34, 0x56)));
    assert_eq!(theme.style("verdict.pass"), shipped("default", ColorMode::TrueColor).style("verdict.pass"));
}

#[test]
fn user_file_errors_name_the_full_path() {
    let config = config_with(&[("x.toml", "modal = \"nope\"\n")]);
    let e = Theme::load("x", config.path(), ColorMode::TrueColor).unwrap_err();
    assert_eq!(e.file, config.path().join("themes").join("x.toml").display().to_string());
    assert_eq!((e.line, e.column, e.field.as_str()), (1, 9, "modal"));
}

#[test]
fn unknown_theme_names_are_errors() {
    let e = load_files("nope", &[]).unwrap_err();
    assert_eq!(e.file, "themes/nope.toml");
    assert!(e.message.contains("shipped themes are colorblind, default"), "{e}");
    let e = load_files("../etc/passwd", &[]).unwrap_err();
    assert_eq!(e.message, NAME_RULE);
}

#[test]
fn colour_mode_comes_from_the_environment() {
    let table = [
        (Some(""), Some("truecolor"), ColorMode::Mono),
        (Some("1"), None, ColorMode::Mono),
        (None, Some("truecolor"), ColorMode::TrueColor),
        (None, Some("24bit"), ColorMode::TrueColor),
        (None, Some("TrueColor"), ColorMode::TrueColor),
        (None, Some("yes"), ColorMode::Ansi16),
        (None, None, ColorMode::Ansi16),
    ];
    for (no_color, colorterm, mode) in table {
        assert_eq!(ColorMode::from_env(no_color, colorterm), mode, "{no_color:?} {colorterm:?}");
    }
}

#[test]
fn ansi16_maps_rgb_to_the_nearest_ansi_colour() {
    for (rgb, expected) in [
        ((255, 0, 0), [Color::LightRed, Color::Red]),
        ((0xd0, 0x10, 0x10), [Color::Red, Color::LightRed]),
        ((0x10, 0x12, 0x18), [Color::Black, Color::Black]),
        ((0xf8, 0xf8, 0xf8), [Color::White, Color::White]),
    ] {
        let got = ColorMode::Ansi16.adapt(Color::Rgb(rgb.0, rgb.1, rgb.2)).unwrap();
        assert!(expected.contains(&got), "{rgb:?} → {got:?}");
    }
    assert_eq!(ColorMode::Ansi16.adapt(Color::Blue), Some(Color::Blue));
}

#[test]
fn ansi16_keeps_the_meaning_of_pass_and_fail() {
    let reds = [Color::Red, Color::LightRed];
    let greens = [Color::Green, Color::LightGreen];
    let blues = [Color::Blue, Color::LightBlue, Color::Cyan, Color::LightCyan];
    for name in Theme::shipped().into_iter().filter(|n| *n != "mono") {
        let theme = shipped(name, ColorMode::Ansi16);
        // A coloured block (bg) carries the meaning when there is one.
        let colour = |scope: &str| theme.style(scope).bg.or(theme.style(scope).fg).unwrap();
        let pass_hues = if name == "colorblind" { &blues[..] } else { &greens[..] };
        assert!(pass_hues.contains(&colour("verdict.pass")), "{name}: pass is {:?}", colour("verdict.pass"));
        assert!(reds.contains(&colour("verdict.fail")), "{name}: fail is {:?}", colour("verdict.fail"));
        assert!(theme.scopes.values().all(|s| !matches!(s.fg.or(s.bg), Some(Color::Rgb(..)))));
    }
}

#[test]
fn mono_drops_colours_but_keeps_modifiers() {
    let theme = shipped("default", ColorMode::Mono);
    assert!(theme.scopes.values().all(|s| s.fg.is_none() && s.bg.is_none()));
    assert!(theme.style("ui.selection").add_modifier.contains(Modifier::BOLD));
    assert!(theme.style("verdict.fail").add_modifier.contains(Modifier::BOLD));
}

#[test]
fn every_symbol_name_has_a_field() {
    let mut symbols = Symbols::default();
    for name in Symbols::NAMES {
        assert!(symbols.slot(name).is_some(), "{name}");
    }
}

#[test]
fn invalid_themes_report_their_exact_error() {
    let dir = repo("tests/invalid_themes");
    let (mut checked, mut wrong) = (0, Vec::new());
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let expected =
            std::fs::read_to_string(path.with_extension("expected")).unwrap_or_else(|e| panic!("{name}.expected: {e}"));
        let library = Library { dir: &dir, label: "themes" };
        let error = library.load(name, ColorMode::TrueColor).expect_err(name).to_string();
        if error != expected.trim_end() {
            wrong.push(format!("{name}.expected:\n  want {}\n  got  {error}", expected.trim_end()));
        }
        checked += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked >= 9, "only {checked} fixtures");
}
