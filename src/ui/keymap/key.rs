//! Key combos: one key press, normalised, and the names keymaps give it.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::fmt;
use std::str::FromStr;

/// One key press, normalised so that a press compares equal to its name
/// in a keymap however the terminal reports it. Build it with
/// [`KeyCombo::new`], from a [`KeyEvent`], or by parsing a key name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyCombo {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl KeyCombo {
    pub fn new(code: KeyCode, modifiers: KeyModifiers) -> Self {
        // Terminals disagree on whether a shifted character also carries
        // SHIFT ('P' alone, 'P' + SHIFT, even 'p' + SHIFT). The character
        // already says it, so the case goes into the character and the flag
        // is dropped. Shift+Tab likewise arrives as Tab + SHIFT or BackTab.
        let shifted = modifiers.contains(KeyModifiers::SHIFT);
        let code = match code {
            KeyCode::Char(c) if shifted => KeyCode::Char(uppercase(c)),
            KeyCode::Tab if shifted => KeyCode::BackTab,
            other => other,
        };
        let modifiers = match code {
            KeyCode::Char(_) | KeyCode::BackTab => modifiers.difference(KeyModifiers::SHIFT),
            _ => modifiers,
        };
        KeyCombo { code, modifiers }
    }
}

impl From<&KeyEvent> for KeyCombo {
    fn from(event: &KeyEvent) -> Self {
        KeyCombo::new(event.code, event.modifiers)
    }
}

fn uppercase(c: char) -> char {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c, // 'ß' and friends have no single-character uppercase
    }
}

/// Named keys, in the spelling [`KeyCombo`]'s `Display` uses.
const NAMED_KEYS: &[(&str, KeyCode)] = &[
    ("Space", KeyCode::Char(' ')),
    ("Esc", KeyCode::Esc),
    ("Enter", KeyCode::Enter),
    ("Tab", KeyCode::Tab),
    ("BackTab", KeyCode::BackTab),
    ("Backspace", KeyCode::Backspace),
    ("Up", KeyCode::Up),
    ("Down", KeyCode::Down),
    ("Left", KeyCode::Left),
    ("Right", KeyCode::Right),
    ("Home", KeyCode::Home),
    ("End", KeyCode::End),
    ("PageUp", KeyCode::PageUp),
    ("PageDown", KeyCode::PageDown),
];

const KEY_FORMS: &str = "use one character (\"p\", \"P\", \"?\") or <Name> with Name one of Space, Esc, Enter, Tab, \
     S-Tab, BackTab, Backspace, Up, Down, Left, Right, Home, End, PageUp, PageDown, F1..F12 or a character, \
     after modifiers C- (Ctrl), A- (Alt), S- (Shift) as in <C-c> or <C-A-x>; a sequence is an array: \
     on = [\"g\", \"g\"]";

impl FromStr for KeyCombo {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let mut chars = name.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => single_character(c),
            _ => name
                .strip_prefix('<')
                .and_then(|n| n.strip_suffix('>'))
                .and_then(bracketed)
                .ok_or_else(|| format!("`{name}` is not a key name; {KEY_FORMS}")),
        }
    }
}

fn single_character(c: char) -> Result<KeyCombo, String> {
    match c {
        ' ' => Err("a space is written \"<Space>\"".to_string()),
        // Tabs, newlines and control characters are invisible in the file.
        c if c.is_whitespace() || c.is_control() => Err(format!("{c:?} is not a key name; {KEY_FORMS}")),
        c => Ok(KeyCombo::new(KeyCode::Char(c), KeyModifiers::NONE)),
    }
}

/// The inside of `<…>`: modifiers, then a key.
fn bracketed(inner: &str) -> Option<KeyCombo> {
    let mut modifiers = KeyModifiers::NONE;
    let mut rest = inner;
    while let Some((flag, tail)) = split_modifier(rest) {
        modifiers |= flag;
        rest = tail;
    }
    Some(KeyCombo::new(named_code(rest)?, modifiers))
}

/// `C-x` → (CONTROL, "x"); `None` when `s` does not start with a modifier
/// followed by a key ("C-" alone, or "-" as the key in "<C-->", is a key).
fn split_modifier(s: &str) -> Option<(KeyModifiers, &str)> {
    let tail = s.get(2..).filter(|t| !t.is_empty())?;
    if s.as_bytes()[1] != b'-' {
        return None;
    }
    let flag = match s.as_bytes()[0].to_ascii_uppercase() {
        b'C' => KeyModifiers::CONTROL,
        b'A' => KeyModifiers::ALT,
        b'S' => KeyModifiers::SHIFT,
        _ => return None,
    };
    Some((flag, tail))
}

fn named_code(name: &str) -> Option<KeyCode> {
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return (!c.is_whitespace() && !c.is_control()).then_some(KeyCode::Char(c));
    }
    if let Some(n) = name.strip_prefix(['F', 'f']).and_then(|n| n.parse::<u8>().ok()) {
        return (1..=12).contains(&n).then_some(KeyCode::F(n));
    }
    NAMED_KEYS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, code)| *code)
}

impl fmt::Display for KeyCombo {
    /// The canonical name: "p", "P", "<C-c>", "<Esc>", "<S-Tab>".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            KeyCode::Char(c) if c != ' ' && self.modifiers.is_empty() => return write!(f, "{c}"),
            _ => {}
        }
        f.write_str("<")?;
        for (flag, prefix) in [(KeyModifiers::CONTROL, "C-"), (KeyModifiers::ALT, "A-"), (KeyModifiers::SHIFT, "S-")] {
            if self.modifiers.contains(flag) {
                f.write_str(prefix)?;
            }
        }
        match self.code {
            KeyCode::BackTab => f.write_str("S-Tab")?,
            KeyCode::Char(' ') => f.write_str("Space")?,
            KeyCode::Char(c) => write!(f, "{c}")?,
            KeyCode::F(n) => write!(f, "F{n}")?,
            code => match NAMED_KEYS.iter().find(|(_, c)| *c == code) {
                Some((name, _)) => f.write_str(name)?,
                None => write!(f, "{code:?}")?, // keys no keymap can name, e.g. Insert
            },
        }
        f.write_str(">")
    }
}

/// The name of a key sequence: "p", "gg", "<C-w>j".
pub fn sequence_name(keys: &[KeyCombo]) -> String {
    keys.iter().map(KeyCombo::to_string).collect()
}
