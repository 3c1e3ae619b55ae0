//! Scopes and symbols: the names the cockpit draws with, and the glyphs
//! beside states and verdicts.

/// Every scope the cockpit draws with; shipped themes define them all.
pub const SCOPES: &[&str] = &[
    "ui.background",
    "ui.text",
    "ui.dim",
    "ui.border",
    "ui.border.focused",
    "ui.title",
    "ui.selection",
    "ui.group",
    "ui.group.production",
    "ui.needs-human",
    "ui.banner.error",
    "ui.banner.info",
    "ui.key",
    "ui.frozen",
    "state.pending",
    "state.progressing",
    "state.paused",
    "state.awaiting",
    "state.promoted",
    "state.rolled-back",
    "state.aborted",
    "state.failed",
    "verdict.pass",
    "verdict.fail",
    "verdict.inconclusive",
    "split.stable",
    "split.canary",
    "budget.auto",
    "budget.approval",
    "budget.freeze",
    "event.time",
    "event.action",
    "event.verdict",
    "event.effect",
    "event.error",
    "modal",
    "modal.danger",
    "sparkline.stable",
    "sparkline.canary",
];

/// Glyphs the cockpit draws next to states and verdicts, so meaning never
/// rests on colour alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbols {
    pub pass: String,
    pub fail: String,
    pub warn: String,
    pub paused: String,
    pub progressing: String,
    pub promoted: String,
    pub rolled_back: String,
    pub aborted: String,
    pub awaiting: String,
    pub failed: String,
    pub pending: String,
    /// Badge on production target groups.
    pub production: String,
}

impl Default for Symbols {
    fn default() -> Symbols {
        let s = |glyph: &str| glyph.to_owned();
        Symbols {
            pass: s("✓"),
            fail: s("✗"),
            warn: s("⚠"),
            paused: s("⏸"),
            progressing: s("▶"),
            promoted: s("●"),
            rolled_back: s("↺"),
            aborted: s("■"),
            awaiting: s("◇"),
            failed: s("!"),
            pending: s("·"),
            production: s("PROD"),
        }
    }
}

impl Symbols {
    /// Keys accepted in `[symbols]`, in field order, for error messages.
    pub(super) const NAMES: &'static [&'static str] = &[
        "pass",
        "fail",
        "warn",
        "paused",
        "progressing",
        "promoted",
        "rolled_back",
        "aborted",
        "awaiting",
        "failed",
        "pending",
        "production",
    ];

    pub(super) fn slot(&mut self, name: &str) -> Option<&mut String> {
        Some(match name {
            "pass" => &mut self.pass,
            "fail" => &mut self.fail,
            "warn" => &mut self.warn,
            "paused" => &mut self.paused,
            "progressing" => &mut self.progressing,
            "promoted" => &mut self.promoted,
            "rolled_back" => &mut self.rolled_back,
            "aborted" => &mut self.aborted,
            "awaiting" => &mut self.awaiting,
            "failed" => &mut self.failed,
            "pending" => &mut self.pending,
            "production" => &mut self.production,
            _ => return None,
        })
    }
}
