//! The cockpit's view state and what keys do to it. No drawing here (see
//! `view`), no I/O: keys come in, commands for the engine come out.

use super::action::Action;
use super::keymap::{KeyCombo, KeyOutcome, KeySequence, Keymap, Layer, WAYS_OUT};
use super::theme::Theme;
use crate::protocol::{CommandRequest, Output, Reply, Snapshot};
use flightdeck_core::analysis::{Metric, Verdict};
use flightdeck_core::rollout::{Actor, Command, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use ratatui::crossterm::event::{Event as TermEvent, KeyEvent, KeyEventKind, MouseEventKind};
use std::collections::{HashMap, VecDeque};
use tui_input::backend::crossterm::EventHandler;
use tui_input::Input;

/// Events kept for the log pane.
const EVENT_LOG: usize = 500;
/// Analysis windows kept per rollout for the sparklines.
const HISTORY: usize = 40;

/// The last windows of one rollout, for sparklines.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Per metric: (stable, canary) values, oldest first.
    pub series: HashMap<Metric, VecDeque<(f64, f64)>>,
}

impl History {
    fn push(&mut self, verdict: &Verdict) {
        for check in verdict.checks() {
            if let (Some(s), Some(c)) = (check.stable, check.canary) {
                let series = self.series.entry(check.metric).or_default();
                series.push_back((s, c));
                if series.len() > HISTORY {
                    series.pop_front();
                }
            }
        }
    }
}

/// A modal dialog in front of the cockpit.
#[derive(Debug, Clone)]
pub enum Modal {
    /// A dangerous command waits for "yes". `request` carries the stage the
    /// captain saw when they pressed the key, so a rollout that moved while
    /// the modal was open refuses it as stale.
    Confirm { request: CommandRequest, title: String, change: String },
    /// A freeze override needs a typed reason.
    Reason { request: CommandRequest, input: Input },
}

/// What the bottom line says after a command was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    pub text: String,
    pub error: bool,
}

/// Names the palette completes, with whether they take an argument.
pub const PALETTE: &[&str] = &[
    "pause",
    "resume",
    "promote",
    "promote-full",
    "step-back",
    "abort",
    "rollback",
    "retry",
    "approve",
    "override-freeze ",
    "theme ",
    "filter ",
    "freeze-view",
    "help",
    "quit",
];

pub struct App {
    /// The snapshot on screen (held still while the view is frozen).
    pub view: Snapshot,
    /// The newest snapshot, even while frozen.
    latest: Snapshot,
    pub frozen: bool,
    pub events: VecDeque<Output>,
    pub history: HashMap<String, History>,
    /// Id of the selected rollout, stable while the list reorders.
    pub selected: Option<String>,
    pub filter: Input,
    pub filtering: bool,
    pub palette: Option<Input>,
    pub modal: Option<Modal>,
    pub help: bool,
    pub toast: Option<Toast>,
    pub theme: Theme,
    /// The theme the captain chose (config, --theme, `T`, `:theme`).
    base_theme: Theme,
    /// A theme picked by hand wins over the one a plan names.
    theme_pinned: bool,
    pub themes: Vec<Theme>,
    pub keymap: Keymap,
    pub keys: KeySequence,
    pub actor: Actor,
    /// Viewers see everything but cannot act.
    pub read_only: bool,
    pub quit: bool,
    /// The time the view is drawn for (set by the loop before each draw).
    pub now: Timestamp,
    /// Rows of the rollouts list on screen, for mouse clicks: (y, rollout id).
    pub list_rows: Vec<(u16, String)>,
}

impl App {
    pub fn new(snapshot: Snapshot, theme: Theme, themes: Vec<Theme>, keymap: Keymap, actor: Actor) -> App {
        let selected = None;
        let now = snapshot.at;
        let mut app = App {
            latest: snapshot.clone(),
            view: snapshot,
            frozen: false,
            events: VecDeque::new(),
            history: HashMap::new(),
            selected,
            filter: Input::default(),
            filtering: false,
            palette: None,
            modal: None,
            help: false,
            toast: None,
            base_theme: theme.clone(),
            theme,
            theme_pinned: false,
            themes,
            keymap,
            keys: KeySequence::new(),
            actor,
            read_only: false,
            quit: false,
            now,
            list_rows: Vec::new(),
        };
        app.keep_selection();
        app
    }

    pub fn on_snapshot(&mut self, snapshot: Snapshot) {
        self.latest = snapshot;
        if !self.frozen {
            self.view = self.latest.clone();
            self.keep_selection();
        }
    }

    pub fn on_output(&mut self, output: Output) {
        if let Output::Verdict { rollout, verdict, .. } = &output {
            self.history.entry(rollout.clone()).or_default().push(verdict);
        }
        self.events.push_back(output);
        if self.events.len() > EVENT_LOG {
            self.events.pop_front();
        }
    }

    pub fn on_reply(&mut self, request: &CommandRequest, reply: &Reply) {
        let verb = request.command.verb();
        self.toast = Some(match reply {
            Reply::Ack => Toast { text: format!("{verb} sent to {}", request.rollout), error: false },
            Reply::Rejected { reason } => {
                Toast { text: format!("{verb} refused for {}: {reason}", request.rollout), error: true }
            }
        });
    }

    /// The rollouts in list order: those needing a human first, then by
    /// target group, filtered by the `/` text.
    pub fn visible(&self) -> Vec<&Rollout> {
        let needle = self.filter.value().to_lowercase();
        let mut list: Vec<&Rollout> =
            self.view.rollouts.iter().filter(|r| needle.is_empty() || haystack(r).contains(&needle)).collect();
        list.sort_by_cached_key(|r| (r.needs_human().is_none(), r.plan().target.group.clone(), r.id.clone()));
        list
    }

    /// Keeps the current theme whatever a plan names (an explicit `--theme`).
    pub fn pin_theme(&mut self) {
        self.theme_pinned = true;
    }

    /// The selected rollout's plan may name a theme (so prod never looks
    /// like staging); a theme the captain picked by hand wins.
    pub fn apply_rollout_theme(&mut self) {
        if self.theme_pinned {
            return;
        }
        let wanted = self.selected_rollout().and_then(|r| r.plan().theme.clone());
        let theme = wanted.and_then(|name| self.themes.iter().find(|t| t.name == name)).unwrap_or(&self.base_theme);
        if theme.name != self.theme.name {
            self.theme = theme.clone();
        }
    }

    pub fn selected_rollout(&self) -> Option<&Rollout> {
        let id = self.selected.as_ref()?;
        self.view.rollouts.iter().find(|r| &r.id == id)
    }

    /// Keeps a valid selection when the list changes.
    fn keep_selection(&mut self) {
        let visible = self.visible();
        let still_there = self.selected.as_ref().is_some_and(|id| visible.iter().any(|r| &r.id == id));
        if !still_there {
            self.selected = visible.first().map(|r| r.id.clone());
        }
    }

    fn move_selection(&mut self, delta: isize) {
        let ids: Vec<String> = self.visible().iter().map(|r| r.id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let at = self.selected.as_ref().and_then(|id| ids.iter().position(|i| i == id)).unwrap_or(0);
        let next = (at as isize + delta).clamp(0, ids.len() as isize - 1) as usize;
        self.selected = Some(ids[next].clone());
    }

    /// The layer whose bindings apply now.
    pub fn layer(&self) -> Layer {
        if self.modal.is_some() {
            match self.modal {
                Some(Modal::Reason { .. }) => Layer::Input,
                _ => Layer::Confirm,
            }
        } else if self.filtering || self.palette.is_some() {
            Layer::Input
        } else if self.help {
            Layer::Help
        } else {
            Layer::Cockpit
        }
    }

    /// Handles a terminal event; returns the commands to send to the engine.
    pub fn on_event(&mut self, event: &TermEvent) -> Vec<CommandRequest> {
        match event {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key),
            TermEvent::Mouse(m) => {
                match m.kind {
                    MouseEventKind::ScrollDown => self.move_selection(1),
                    MouseEventKind::ScrollUp => self.move_selection(-1),
                    MouseEventKind::Down(_) => {
                        if let Some((_, id)) = self.list_rows.iter().find(|(y, _)| *y == m.row) {
                            self.selected = Some(id.clone());
                        }
                    }
                    _ => {}
                }
                vec![]
            }
            _ => vec![],
        }
    }

    pub fn on_key(&mut self, key: &KeyEvent) -> Vec<CommandRequest> {
        let layer = self.layer();
        // Ways out no keymap can take away: Ctrl-C quits from anywhere, Esc
        // closes whatever is open (keymaps that bind them otherwise are refused).
        let pressed = KeyCombo::from(key);
        let way_out = WAYS_OUT
            .iter()
            .find(|(k, _, layers, _)| layers.contains(&layer) && k.parse::<KeyCombo>().is_ok_and(|k| k == pressed));
        if let Some((_, action, _, _)) = way_out {
            self.keys.clear();
            return self.run(*action);
        }
        let outcome = self.keys.feed(&self.keymap, layer, key);
        match (layer, outcome) {
            (_, KeyOutcome::Matched(action)) => self.run(action),
            (Layer::Input, _) => {
                self.type_into_field(key);
                vec![]
            }
            _ => vec![],
        }
    }

    /// Printable keys in the filter, palette or reason field.
    fn type_into_field(&mut self, key: &KeyEvent) {
        let event = TermEvent::Key(*key);
        if let Some(Modal::Reason { input, .. }) = &mut self.modal {
            input.handle_event(&event);
        } else if let Some(input) = &mut self.palette {
            if key.code == ratatui::crossterm::event::KeyCode::Tab {
                complete(input);
            } else {
                input.handle_event(&event);
            }
        } else if self.filtering {
            self.filter.handle_event(&event);
            self.keep_selection();
        }
    }

    /// Runs an action; rollout actions may return a command to send.
    pub fn run(&mut self, action: Action) -> Vec<CommandRequest> {
        match self.layer() {
            Layer::Confirm | Layer::Input if matches!(action, Action::Confirm | Action::Cancel) => {
                return self.answer(action == Action::Confirm)
            }
            _ => {}
        }
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.help = !self.help,
            Action::Cancel => self.help = false,
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::Top => self.move_selection(isize::MIN / 2),
            Action::Bottom => self.move_selection(isize::MAX / 2),
            Action::Filter => {
                // A new search each time, like `/` in a pager.
                self.filter.reset();
                self.filtering = true;
            }
            Action::Palette => self.palette = Some(Input::default()),
            Action::FreezeView => self.toggle_freeze(),
            Action::NextTheme => self.next_theme(),
            Action::Confirm => {}
            a if a.is_rollout_command() => return self.command(a, None),
            _ => {}
        }
        vec![]
    }

    fn toggle_freeze(&mut self) {
        self.frozen = !self.frozen;
        if !self.frozen {
            self.view = self.latest.clone();
            self.keep_selection();
        }
    }

    fn next_theme(&mut self) {
        if self.themes.is_empty() {
            return;
        }
        let at = self.themes.iter().position(|t| t.name == self.theme.name).map_or(0, |i| i + 1);
        self.theme = self.themes[at % self.themes.len()].clone();
        self.base_theme = self.theme.clone();
        self.theme_pinned = true;
        self.toast = Some(Toast { text: format!("theme {}", self.theme.name), error: false });
    }

    /// Sends one exact command to the selected rollout (the palette's verbs).
    fn send(&mut self, command: Command) -> Vec<CommandRequest> {
        if self.read_only {
            self.toast = Some(Toast { text: "read-only: viewers cannot act".into(), error: true });
            return vec![];
        }
        let Some(r) = self.selected_rollout() else { return vec![] };
        vec![CommandRequest {
            rollout: r.id.clone(),
            actor: self.actor.clone(),
            command,
            expected_stage: r.stage,
            expected_revision: r.canary_revision.clone(),
        }]
    }

    /// Builds the command for `action` on the selected rollout. Dangerous
    /// ones open a modal instead and are sent on "yes".
    fn command(&mut self, action: Action, reason: Option<String>) -> Vec<CommandRequest> {
        if self.read_only {
            self.toast = Some(Toast { text: "read-only: viewers cannot act".into(), error: true });
            return vec![];
        }
        let Some(r) = self.selected_rollout() else { return vec![] };
        let request = CommandRequest {
            rollout: r.id.clone(),
            actor: self.actor.clone(),
            command: command_for(action, r, reason),
            expected_stage: r.stage,
            expected_revision: r.canary_revision.clone(),
        };
        if let Command::OverrideFreeze { reason } = &request.command {
            if reason.is_empty() {
                self.modal = Some(Modal::Reason { request, input: Input::default() });
                return vec![];
            }
        }
        if action.is_dangerous() {
            let (title, change) = describe(&request.command, r);
            self.modal = Some(Modal::Confirm { request, title, change });
            return vec![];
        }
        vec![request]
    }

    /// The captain answered a modal, the palette or the filter.
    fn answer(&mut self, yes: bool) -> Vec<CommandRequest> {
        if let Some(modal) = self.modal.take() {
            return match modal {
                Modal::Confirm { request, .. } if yes => vec![request],
                Modal::Reason { mut request, input } if yes => {
                    let reason = input.value().trim().to_string();
                    if reason.is_empty() {
                        self.toast = Some(Toast { text: "a freeze override needs a reason".into(), error: true });
                        self.modal = Some(Modal::Reason { request, input });
                        return vec![];
                    }
                    request.command = Command::OverrideFreeze { reason };
                    let Some(r) = self.view.rollouts.iter().find(|r| r.id == request.rollout) else {
                        return vec![];
                    };
                    let (title, change) = describe(&request.command, r);
                    self.modal = Some(Modal::Confirm { request, title, change });
                    vec![]
                }
                _ => vec![],
            };
        }
        if let Some(input) = self.palette.take() {
            return if yes { self.run_palette(input.value()) } else { vec![] };
        }
        if self.filtering {
            self.filtering = false;
            if !yes {
                self.filter.reset();
                self.keep_selection();
            }
        }
        vec![]
    }

    /// Runs a palette line such as `promote` or `theme light`.
    pub fn run_palette(&mut self, line: &str) -> Vec<CommandRequest> {
        let line = line.trim();
        let (word, rest) = line.split_once(' ').map_or((line, ""), |(w, r)| (w, r.trim()));
        match word {
            "resume" => self.send(Command::Resume),
            "override-freeze" if !rest.is_empty() => self.command(Action::OverrideFreeze, Some(rest.to_string())),
            "theme" => {
                match self.themes.iter().find(|t| t.name == rest) {
                    Some(t) => {
                        self.theme = t.clone();
                        self.base_theme = t.clone();
                        self.theme_pinned = true;
                    }
                    None => self.toast = Some(Toast { text: format!("no theme named `{rest}`"), error: true }),
                }
                vec![]
            }
            "filter" => {
                self.filter = Input::new(rest.to_string());
                self.keep_selection();
                vec![]
            }
            other => match other.parse::<Action>() {
                Ok(action) => self.run(action),
                Err(e) => {
                    self.toast = Some(Toast { text: e, error: true });
                    vec![]
                }
            },
        }
    }
}

/// Tab in the palette: complete to the only name starting with the text.
fn complete(input: &mut Input) {
    let text = input.value().to_string();
    let matches: Vec<&&str> = PALETTE.iter().filter(|p| p.starts_with(&text)).collect();
    if let [one] = matches.as_slice() {
        *input = Input::new(one.to_string());
    }
}

/// Completions for the palette text, for display.
pub fn completions(text: &str) -> Vec<&'static str> {
    PALETTE.iter().copied().filter(|p| p.trim_end().starts_with(text.trim_end()) || text.is_empty()).collect()
}

fn haystack(r: &Rollout) -> String {
    format!("{} {} {} {}", r.id, r.canary_revision, r.phase.label(), r.plan().strategy_name()).to_lowercase()
}

/// The command an action sends for this rollout's state.
pub fn command_for(action: Action, r: &Rollout, reason: Option<String>) -> Command {
    match action {
        Action::Pause if matches!(r.phase, Phase::Paused { .. }) => Command::Resume,
        Action::Pause => Command::Pause { reason: None },
        Action::Promote => Command::Promote,
        Action::PromoteFull => Command::PromoteFull,
        Action::StepBack => Command::StepBack,
        Action::Abort => Command::Abort { reason },
        Action::Rollback => Command::Rollback { reason },
        Action::Retry => Command::Retry,
        Action::Approve => Command::Approve,
        _ => Command::OverrideFreeze { reason: reason.unwrap_or_default() },
    }
}

/// Where traffic is shifted, in the words of the rollout's backend.
pub fn target_label(r: &Rollout) -> String {
    let t = &r.plan().target;
    let p = |k: &str| t.params.get(k).cloned().unwrap_or_default();
    match t.backend {
        flightdeck_core::plan::BackendKind::Haproxy => format!("haproxy {}", p("backend")),
        flightdeck_core::plan::BackendKind::Envoy => format!("envoy {}", p("canary_cluster")),
        flightdeck_core::plan::BackendKind::Nginx => format!("nginx upstream {}", p("upstream")),
        // Kubernetes targets always show their context: which cluster matters most.
        flightdeck_core::plan::BackendKind::ArgoRollouts => {
            format!("argo {}{}/{}", context(&p("context")), p("namespace"), p("rollout"))
        }
        flightdeck_core::plan::BackendKind::Deployment => {
            format!("deployment {}{}/{}", context(&p("context")), p("namespace"), p("canary_deployment"))
        }
        other => format!("{} {}", other.name(), t.group),
    }
}

fn context(name: &str) -> String {
    if name.is_empty() {
        "current-context:".into()
    } else {
        format!("{name}:")
    }
}

/// The confirmation text: exactly what will change.
pub fn describe(command: &Command, r: &Rollout) -> (String, String) {
    let on = target_label(r);
    let name = &r.plan().name;
    match command {
        Command::PromoteFull => (
            format!("Promote {name} all the way?"),
            format!("canary weight {} % → 100 % on {on}; remaining bakes and analysis are skipped", r.canary_weight),
        ),
        Command::Abort { .. } if matches!(r.plan().strategy, flightdeck_core::plan::Strategy::Rolling { .. }) => (
            format!("Abort {name}?"),
            format!(
                "the rolling update stops on {on}: no more {} replicas, {} keeps serving",
                r.canary_revision, r.stable_revision
            ),
        ),
        Command::Abort { .. } => (
            format!("Abort {name}?"),
            format!(
                "canary weight {} % → 0 % on {on}; canary {} keeps running for debugging",
                r.canary_weight, r.canary_revision
            ),
        ),
        Command::Rollback { .. } => (
            format!("Roll back {name}?"),
            format!(
                "canary weight {} % → 0 % on {on} and canary {} scaled down; {} serves everything",
                r.canary_weight, r.canary_revision, r.stable_revision
            ),
        ),
        Command::OverrideFreeze { reason } => (
            format!("Override the budget freeze for {name}?"),
            format!("promotions resume despite the frozen error budget; recorded reason: “{reason}”"),
        ),
        other => (format!("{} {name}?", other.verb()), String::new()),
    }
}
