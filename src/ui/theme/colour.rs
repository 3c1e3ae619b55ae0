//! Colour modes: what the terminal can show (truecolor, the 16 ANSI
//! colours, none), and how a theme's colours come down to it.

use ratatui::style::Color;

/// What the terminal can show; decides how theme colours are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// 24-bit RGB as written in the theme.
    TrueColor,
    /// RGB mapped to the nearest of the 16 ANSI colours.
    Ansi16,
    /// No colours, modifiers only (`NO_COLOR`).
    Mono,
}

impl ColorMode {
    /// NO_COLOR (set, any value) → Mono; COLORTERM = truecolor|24bit →
    /// TrueColor; else Ansi16. Reads the real environment, which over SSH is
    /// the session's, not the host's.
    pub fn detect() -> ColorMode {
        let no_color = std::env::var("NO_COLOR").ok();
        let colorterm = std::env::var("COLORTERM").ok();
        ColorMode::from_env(no_color.as_deref(), colorterm.as_deref())
    }

    /// The decision of [`ColorMode::detect`] on given variable values.
    pub fn from_env(no_color: Option<&str>, colorterm: Option<&str>) -> ColorMode {
        // no-color.org: presence alone disables colour, whatever the value.
        if no_color.is_some() {
            return ColorMode::Mono;
        }
        match colorterm.map(str::to_ascii_lowercase).as_deref() {
            Some("truecolor" | "24bit") => ColorMode::TrueColor,
            _ => ColorMode::Ansi16,
        }
    }

    /// The colour to draw in this mode; `None` leaves the terminal default.
    pub(super) fn adapt(self, color: Color) -> Option<Color> {
        match (self, color) {
            (ColorMode::Mono, _) => None,
            (ColorMode::Ansi16, Color::Rgb(r, g, b)) => Some(nearest_ansi(r, g, b)),
            _ => Some(color),
        }
    }
}

const ANSI: &[(&str, Color)] = &[
    ("black", Color::Black),
    ("red", Color::Red),
    ("green", Color::Green),
    ("yellow", Color::Yellow),
    ("blue", Color::Blue),
    ("magenta", Color::Magenta),
    ("cyan", Color::Cyan),
    ("gray", Color::Gray),
    ("darkgray", Color::DarkGray),
    ("lightred", Color::LightRed),
    ("lightgreen", Color::LightGreen),
    ("lightyellow", Color::LightYellow),
    ("lightblue", Color::LightBlue),
    ("lightmagenta", Color::LightMagenta),
    ("lightcyan", Color::LightCyan),
    ("white", Color::White),
    ("reset", Color::Reset),
];

pub(super) const ANSI_HINT: &str = "an ANSI name (black, red, green, yellow, blue, magenta, cyan, gray, darkgray, \
lightred, lightgreen, lightyellow, lightblue, lightmagenta, lightcyan, white, reset)";

pub(super) fn ansi_color(name: &str) -> Option<Color> {
    ANSI.iter().find(|(known, _)| *known == name).map(|(_, color)| *color)
}

/// The standard xterm values of the 16 ANSI colours, and whether each is a gray.
const XTERM: &[(Color, (u8, u8, u8), bool)] = &[
    (Color::Black, (0, 0, 0), true),
    (Color::Red, (205, 0, 0), false),
    (Color::Green, (0, 205, 0), false),
    (Color::Yellow, (205, 205, 0), false),
    (Color::Blue, (0, 0, 238), false),
    (Color::Magenta, (205, 0, 205), false),
    (Color::Cyan, (0, 205, 205), false),
    (Color::Gray, (229, 229, 229), true),
    (Color::DarkGray, (127, 127, 127), true),
    (Color::LightRed, (255, 0, 0), false),
    (Color::LightGreen, (0, 255, 0), false),
    (Color::LightYellow, (255, 255, 0), false),
    (Color::LightBlue, (92, 92, 255), false),
    (Color::LightMagenta, (255, 0, 255), false),
    (Color::LightCyan, (0, 255, 255), false),
    (Color::White, (255, 255, 255), true),
];

/// Nearest ANSI colour by squared RGB distance. Gray entries count triple:
/// xterm's grays sit close to every muted tint, and plain distance would
/// turn a soft green "pass" or pink "fail" gray, losing its meaning.
fn nearest_ansi(r: u8, g: u8, b: u8) -> Color {
    let distance = |&(_, (xr, xg, xb), gray): &(Color, (u8, u8, u8), bool)| {
        let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).pow(2);
        let sum = d(r, xr) + d(g, xg) + d(b, xb);
        if gray {
            sum * 3
        } else {
            sum
        }
    };
    XTERM.iter().min_by_key(|entry| distance(entry)).map_or(Color::Reset, |(color, _, _)| *color)
}
