//! What a key can do in the cockpit: the `run = "…"` names of keymap files.

use std::fmt;
use std::str::FromStr;

/// A cockpit action. Rollout actions become commands sent to the engine;
/// the others only change the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Pause a running rollout, or resume a paused one.
    Pause,
    Promote,
    PromoteFull,
    StepBack,
    Abort,
    Rollback,
    Retry,
    Approve,
    OverrideFreeze,
    /// A rollback or abort seen: it stops asking for attention.
    Acknowledge,
    /// Freeze the display (never the rollout).
    FreezeView,
    Help,
    Palette,
    Filter,
    Quit,
    Up,
    Down,
    Top,
    Bottom,
    /// Scroll a page up / down (help, events).
    PageUp,
    PageDown,
    /// Open the selected rollout full-screen, with its events to scroll.
    Open,
    /// Cycle the theme (view only).
    NextTheme,
    /// In a modal or prompt: accept / dismiss.
    Confirm,
    Cancel,
}

impl Action {
    /// Every action with its keymap name, in help order.
    pub const ALL: &'static [(Action, &'static str)] = &[
        (Action::Pause, "pause"),
        (Action::Promote, "promote"),
        (Action::PromoteFull, "promote-full"),
        (Action::StepBack, "step-back"),
        (Action::Abort, "abort"),
        (Action::Rollback, "rollback"),
        (Action::Retry, "retry"),
        (Action::Approve, "approve"),
        (Action::OverrideFreeze, "override-freeze"),
        (Action::Acknowledge, "acknowledge"),
        (Action::FreezeView, "freeze-view"),
        (Action::Help, "help"),
        (Action::Palette, "palette"),
        (Action::Filter, "filter"),
        (Action::Quit, "quit"),
        (Action::Up, "up"),
        (Action::Down, "down"),
        (Action::Top, "top"),
        (Action::Bottom, "bottom"),
        (Action::PageUp, "page-up"),
        (Action::PageDown, "page-down"),
        (Action::Open, "open"),
        (Action::NextTheme, "next-theme"),
        (Action::Confirm, "confirm"),
        (Action::Cancel, "cancel"),
    ];

    pub fn name(self) -> &'static str {
        Action::ALL.iter().find(|(a, _)| *a == self).map(|(_, n)| *n).unwrap_or("?")
    }

    /// Actions that change a rollout (sent to the engine; hidden for viewers).
    pub fn is_rollout_command(self) -> bool {
        matches!(
            self,
            Action::Pause
                | Action::Promote
                | Action::PromoteFull
                | Action::StepBack
                | Action::Abort
                | Action::Rollback
                | Action::Retry
                | Action::Approve
                | Action::OverrideFreeze
                | Action::Acknowledge
        )
    }

    /// The row of the core's verb table a rollout action sends (`p` sends
    /// resume on a paused rollout: the same row's risk, none). Whether it
    /// asks first is the core's to say, never the cockpit's.
    pub fn verb(self) -> Option<&'static flightdeck_core::verbs::Verb> {
        self.is_rollout_command().then(|| flightdeck_core::verbs::verb(self.name())).flatten()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL.iter().find(|(_, n)| *n == s).map(|(a, _)| *a).ok_or_else(|| {
            let names: Vec<&str> = Action::ALL.iter().map(|(_, n)| *n).collect();
            format!("unknown action `{s}`; expected one of: {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (action, name) in Action::ALL {
            assert_eq!(name.parse::<Action>().unwrap(), *action);
            assert_eq!(action.name(), *name);
        }
        assert!("launch".parse::<Action>().unwrap_err().starts_with("unknown action `launch`"));
    }
}
