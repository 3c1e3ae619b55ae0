//! The cockpit's view state and what keys do to it. No drawing here (see
//! `view`), no I/O: keys come in, commands for the engine come out.

use super::action::Action;
use super::keymap::{KeyCombo, KeyOutcome, KeySequence, Keymap, Layer, WAYS_OUT};
use super::theme::Theme;
use crate::protocol::{CommandRequest, Output, Reply, Snapshot};
use flightdeck_core::analysis::{Metric, Verdict};
use flightdeck_core::plan::Control;
use flightdeck_core::rollout::{self as core, Actor, Command, NativeVerb, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use flightdeck_core::verbs::{self, Answer, Ask, Confirmation, Refusal};
use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, MouseEventKind};
use ratatui::layout::{Position, Rect};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tui_input::backend::crossterm::EventHandler;
use tui_input::Input;

/// Events kept for the log pane (passing verdicts only feed the sparklines).
const EVENT_LOG: usize = 2000;
/// Analysis windows kept per rollout for the sparklines.
const HISTORY: usize = 40;
/// How long the status line keeps a message; errors stay a little longer.
const TOAST_FOR: Duration = Duration::from_secs(5);
const TOAST_ERROR_FOR: Duration = Duration::from_secs(8);
/// Lines one notch of the mouse wheel scrolls.
const WHEEL_LINES: isize = 3;

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

/// Who drives the rollouts when this cockpit closes: what quitting means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// This process. Closing it leaves them undriven; with `resumes`, the
    /// same plans run again resume from their journals (a demo starts over).
    Here { resumes: bool },
    /// A `serve` process (attach, SSH): closing this cockpit changes nothing.
    Server,
}

/// A modal dialog in front of the cockpit.
#[derive(Debug, Clone)]
pub enum Modal {
    /// A command waits for "yes". What it changes is the core's dry run on
    /// the rollout as it is now, so the dialog follows a stage that moves
    /// under it (`shown` is the last one, kept if it no longer applies).
    /// `request` carries the stage the captain saw: a forward command for a
    /// stage that has passed is refused as stale; abort and rollback apply
    /// to wherever the rollout is. `typed` holds what the captain typed
    /// when the core asks for the rollout's name (production).
    Confirm { request: CommandRequest, shown: Box<Confirmation>, typed: Option<Input> },
    /// A freeze override needs a typed reason.
    Reason { request: CommandRequest, input: Input },
    /// Quitting while rollouts are mid-way (asked once): nothing drives
    /// them until flightdeck runs again.
    Quit { moving: Vec<String> },
}

/// What the status line says; it clears itself after a few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    pub text: String,
    pub error: bool,
    pub until: Instant,
}

impl Toast {
    pub fn info(text: impl Into<String>) -> Toast {
        Toast { text: text.into(), error: false, until: Instant::now() + TOAST_FOR }
    }

    pub fn error(text: impl Into<String>) -> Toast {
        Toast { text: text.into(), error: true, until: Instant::now() + TOAST_ERROR_FOR }
    }
}

/// The palette's own commands (the view's), after the core's verbs.
const VIEW_COMMANDS: &[(&str, &str)] =
    &[("theme", "name"), ("filter", "text"), ("freeze-view", ""), ("help", ""), ("quit", "")];

/// Palette commands with what may follow them, in the order Tab offers
/// them: every verb of the core's table, then the view's commands. A
/// viewer's palette offers only the view's.
pub fn palette_entries(read_only: bool) -> Vec<(&'static str, &'static str)> {
    let verbs = verbs::VERBS.iter().filter(|_| !read_only).map(|v| (v.name, v.args));
    verbs.chain(VIEW_COMMANDS.iter().copied()).collect()
}

/// The palette's command the verb names, exactly as typed (`pause` never
/// resumes, unlike the `p` key that toggles).
fn palette_command(verb: &str) -> Option<Command> {
    Some(match verb {
        "pause" => Command::Pause { reason: None },
        "resume" => Command::Resume,
        "promote" => Command::Promote,
        "promote-full" => Command::PromoteFull,
        "step-back" => Command::StepBack,
        "abort" => Command::Abort { reason: None },
        "rollback" => Command::Rollback { reason: None },
        "retry" => Command::Retry,
        "approve" => Command::Approve,
        "acknowledge" => Command::Acknowledge,
        "restart" => Command::Native { verb: NativeVerb::Restart },
        "terminate-analysis" => Command::Native { verb: NativeVerb::TerminateAnalysis },
        _ => return None,
    })
}

/// The native verbs the palette types with an argument, for the selected
/// rollout: `set-image checkout=argoproj/rollouts-demo:blue` (as `kubectl
/// argo rollouts set image`), `undo 3` or `undo --to-revision=3`.
fn palette_native(word: &str, rest: &str) -> Option<Result<Command, String>> {
    let verb = match word {
        "set-image" => match rest.split_once('=') {
            Some((container, image)) if !container.trim().is_empty() && !image.trim().is_empty() => {
                Ok(NativeVerb::SetImage { container: container.trim().into(), image: image.trim().into() })
            }
            _ => Err("set-image: type container=image (`*` for every container); nothing sent".to_string()),
        },
        "undo" => match rest.trim_start_matches("--to-revision=").parse::<u64>() {
            Ok(revision) if revision > 0 => Ok(NativeVerb::UndoTo { revision }),
            _ => Err(format!("undo: `{rest}` is not a revision number (undo 3); rollback undoes to the previous one")),
        },
        _ => return None,
    };
    Some(verb.map(|verb| Command::Native { verb }))
}

/// The `:` command line, with Tab cycling through completions.
#[derive(Debug, Clone, Default)]
pub struct Palette {
    pub input: Input,
    /// The completions Tab offered and the one shown now.
    pub cycle: Option<(Vec<String>, usize)>,
}

pub struct App {
    /// The snapshot on screen (held still while the view is frozen).
    pub view: Snapshot,
    /// The newest snapshot, even while frozen.
    latest: Snapshot,
    pub frozen: bool,
    /// Events that came while the view was frozen, shown when it thaws.
    held: Vec<Output>,
    pub events: VecDeque<Output>,
    /// Sequence number of `events[0]`: an event keeps its number while
    /// older ones are dropped, so the cursor stays on it.
    events_base: u64,
    pub history: HashMap<String, History>,
    /// Id of the selected rollout, stable while the list reorders.
    pub selected: Option<String>,
    pub filter: Input,
    pub filtering: bool,
    pub palette: Option<Palette>,
    pub modal: Option<Modal>,
    pub help: bool,
    /// First help line shown.
    pub help_scroll: u16,
    /// The selected rollout full-screen, its events to scroll through.
    pub detail: bool,
    /// The event under the cursor (its sequence number), shown in full;
    /// `None` follows the newest.
    pub event_cursor: Option<u64>,
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
    /// What quitting leaves behind.
    pub driver: Driver,
    /// Trouble with the link to the engine ("reconnecting…"), shown until it clears.
    pub link_status: Option<String>,
    /// Capture the mouse (wheel, clicks); off leaves the terminal's own
    /// text selection working (`mouse = false` in the config).
    pub mouse: bool,
    pub quit: bool,
    /// The time the view is drawn for (held while the view is frozen).
    pub now: Timestamp,
    /// Rows of the rollouts list on screen, for mouse clicks: (y, rollout id).
    pub list_rows: Vec<(u16, String)>,
    /// Where the events pane's lines are, and the first row of each event
    /// shown, for the wheel, clicks and paging.
    pub events_area: Rect,
    pub event_rows: Vec<(u16, u64)>,
    /// Lines of help that fit on screen, for paging.
    pub help_page: u16,
    /// The list's sort keys, kept while their rollouts are unchanged.
    list_order: std::cell::RefCell<ListOrder>,
}

/// Each rollout's place in the list (needs a human, then its group and
/// id in natural order), kept with the rollout it was built for. Built
/// afresh for every rollout several times a frame, the keys (a
/// `needs_human` text and two natural keys each) were most of the
/// cockpit's CPU at 1,000 rollouts; now a snapshot that changed one
/// rollout rebuilds one key.
#[derive(Default)]
struct ListOrder {
    keys: Vec<(Arc<Rollout>, ListKey)>,
    /// Indexes into `keys` (and the view's rollouts), in list order.
    order: Vec<usize>,
}

type ListKey = (bool, Vec<(String, u64)>, Vec<(String, u64)>);

impl ListOrder {
    /// Brings the order up to date with `rollouts`: only a rollout that is
    /// not the one its key was built for gets a new key.
    fn update(&mut self, rollouts: &[Arc<Rollout>]) {
        let same =
            self.keys.len() == rollouts.len() && self.keys.iter().zip(rollouts).all(|(k, r)| Arc::ptr_eq(&k.0, r));
        if same {
            return;
        }
        let mut keys = Vec::with_capacity(rollouts.len());
        for (i, r) in rollouts.iter().enumerate() {
            match self.keys.get_mut(i) {
                Some((old, key)) if Arc::ptr_eq(old, r) => keys.push((Arc::clone(r), std::mem::take(key))),
                _ => keys.push((Arc::clone(r), list_key(r))),
            }
        }
        self.keys = keys;
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        order.sort_by(|a, b| self.keys[*a].1.cmp(&self.keys[*b].1));
        self.order = order;
    }
}

fn list_key(r: &Rollout) -> ListKey {
    (attention(r).is_none(), natural(&r.plan().target.group), natural(&r.id))
}

impl App {
    pub fn new(snapshot: Snapshot, look: super::Look, actor: Actor) -> App {
        let super::Look { theme, themes, keymap } = look;
        let now = snapshot.at;
        let mut app = App {
            latest: snapshot.clone(),
            view: snapshot,
            frozen: false,
            held: Vec::new(),
            events: VecDeque::new(),
            events_base: 0,
            history: HashMap::new(),
            selected: None,
            filter: Input::default(),
            filtering: false,
            palette: None,
            modal: None,
            help: false,
            help_scroll: 0,
            detail: false,
            event_cursor: None,
            toast: None,
            base_theme: theme.clone(),
            theme,
            theme_pinned: false,
            themes,
            keymap,
            keys: KeySequence::new(),
            actor,
            read_only: false,
            driver: Driver::Here { resumes: true },
            link_status: None,
            mouse: true,
            quit: false,
            now,
            list_rows: Vec::new(),
            events_area: Rect::default(),
            event_rows: Vec::new(),
            help_page: 10,
            list_order: Default::default(),
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

    /// The time to draw for; a frozen view keeps its own.
    pub fn set_now(&mut self, now: Timestamp) {
        if !self.frozen {
            self.now = now;
        }
    }

    pub fn on_output(&mut self, output: Output) {
        if self.frozen {
            // Held for the thaw; a view frozen for hours keeps only the last ones.
            if self.held.len() >= EVENT_LOG {
                self.held.remove(0);
            }
            self.held.push(output);
        } else {
            self.record(output);
        }
    }

    fn record(&mut self, output: Output) {
        if let Output::Verdict { rollout, verdict, .. } = &output {
            self.history.entry(rollout.clone()).or_default().push(verdict);
            if matches!(verdict, Verdict::Pass { .. }) {
                return;
            }
        }
        self.events.push_back(output);
        if self.events.len() > EVENT_LOG {
            self.events.pop_front();
            self.events_base += 1;
        }
    }

    /// The selected rollout's events (sequence number, event), oldest first.
    pub fn rollout_events(&self, id: &str) -> Vec<(u64, &Output)> {
        let base = self.events_base;
        self.events.iter().enumerate().filter(|(_, o)| o.rollout() == id).map(|(i, o)| (base + i as u64, o)).collect()
    }

    /// The link to the engine was lost, is back, or is being re-made.
    pub fn on_link_status(&mut self, status: Option<String>) {
        match (&self.link_status, &status) {
            (Some(_), None) => self.toast = Some(Toast::info("connected again")),
            (_, Some(trouble)) => self.toast = Some(Toast::error(trouble.clone())),
            _ => {}
        }
        self.link_status = status;
    }

    /// The server gave this cockpit a role (again, after a reconnect):
    /// a viewer's keys and hints go, a captain's come back.
    pub fn on_role(&mut self, role: crate::protocol::Role) {
        let read_only = role == crate::protocol::Role::Viewer;
        if read_only != self.read_only {
            self.read_only = read_only;
            self.modal = None;
            let now = if read_only { "a viewer: read-only" } else { "a captain" };
            self.toast = Some(Toast::info(format!("the server now has you as {now}")));
        }
    }

    pub fn on_reply(&mut self, request: &CommandRequest, reply: &Reply) {
        let verb = request.command.verb();
        self.toast = Some(match reply {
            Reply::Ack => Toast::info(format!("{verb} sent to {}", request.rollout)),
            Reply::Rejected { reason } => Toast::error(format!("{verb} refused for {}: {reason}", request.rollout)),
        });
    }

    /// Clears a status message whose time is up.
    pub fn expire_toast(&mut self) {
        if self.toast.as_ref().is_some_and(|t| Instant::now() >= t.until) {
            self.toast = None;
        }
    }

    /// When the status line next needs a redraw to clear itself.
    pub fn toast_deadline(&self) -> Option<Instant> {
        self.toast.as_ref().map(|t| t.until)
    }

    /// The rollouts in list order: those needing a human first, then by
    /// target group, filtered by the `/` text.
    pub fn visible(&self) -> Vec<&Rollout> {
        self.visible_marked().into_iter().map(|(r, _)| r).collect()
    }

    /// [`App::visible`], each rollout with whether it needs a human (its
    /// kept sort key: the list draws its headings from it every frame).
    pub fn visible_marked(&self) -> Vec<(&Rollout, bool)> {
        let needle = self.filter.value().to_lowercase();
        let rollouts = &self.view.rollouts;
        let mut order = self.list_order.borrow_mut();
        order.update(rollouts);
        order
            .order
            .iter()
            .map(|i| (rollouts[*i].as_ref(), !order.keys[*i].1 .0))
            .filter(|(r, _)| needle.is_empty() || haystack(r).contains(&needle))
            .collect()
    }

    /// How many rollouts on screen need a human (the top bar's count).
    pub fn needing_humans(&self) -> usize {
        let mut order = self.list_order.borrow_mut();
        order.update(&self.view.rollouts);
        order.keys.iter().filter(|k| !k.1 .0).count()
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
        self.view.rollouts.iter().map(Arc::as_ref).find(|r| &r.id == id)
    }

    /// The rollout as it is now, even while the view is frozen.
    pub fn live_rollout(&self, id: &str) -> Option<&Rollout> {
        self.latest.rollouts.iter().map(Arc::as_ref).find(|r| r.id == id)
    }

    /// Keeps a valid selection when the list changes.
    fn keep_selection(&mut self) {
        let visible = self.visible();
        let still_there = self.selected.as_ref().is_some_and(|id| visible.iter().any(|r| &r.id == id));
        if !still_there {
            self.selected = visible.first().map(|r| r.id.clone());
            self.event_cursor = None;
        }
    }

    fn move_selection(&mut self, delta: isize) {
        let ids: Vec<String> = self.visible().iter().map(|r| r.id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let at = self.selected.as_ref().and_then(|id| ids.iter().position(|i| i == id)).unwrap_or(0);
        let next = (at as isize + delta).clamp(0, ids.len() as isize - 1) as usize;
        if self.selected.as_ref() != Some(&ids[next]) {
            self.event_cursor = None;
        }
        self.selected = Some(ids[next].clone());
    }

    /// Moves the event cursor of the selected rollout; from "following the
    /// newest" it starts at the newest.
    fn move_event_cursor(&mut self, delta: isize) {
        let Some(id) = self.selected.clone() else { return };
        let seqs: Vec<u64> = self.rollout_events(&id).iter().map(|(seq, _)| *seq).collect();
        let Some(&newest) = seqs.last() else { return };
        let cursor = self.event_cursor.unwrap_or(newest);
        let at = seqs.iter().position(|s| *s >= cursor).unwrap_or(seqs.len() - 1);
        let next = (at as isize + delta).clamp(0, seqs.len() as isize - 1) as usize;
        self.event_cursor = Some(seqs[next]);
    }

    fn scroll_help(&mut self, delta: isize) {
        self.help_scroll = (self.help_scroll as isize + delta).clamp(0, u16::MAX as isize) as u16;
    }

    /// The layer whose bindings apply now.
    pub fn layer(&self) -> Layer {
        if let Some(modal) = &self.modal {
            match modal {
                Modal::Reason { .. } | Modal::Confirm { typed: Some(_), .. } => Layer::Input,
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
                self.on_mouse(m.kind, Position::new(m.column, m.row));
                vec![]
            }
            _ => vec![],
        }
    }

    /// The wheel scrolls what is under it (help, events, the list); a click
    /// selects a rollout or an event.
    pub fn on_mouse(&mut self, kind: MouseEventKind, at: Position) {
        if self.modal.is_some() || self.palette.is_some() {
            return;
        }
        let step = match kind {
            MouseEventKind::ScrollDown => 1,
            MouseEventKind::ScrollUp => -1,
            MouseEventKind::Down(_) => {
                if self.help {
                    return;
                }
                if let Some((_, id)) = self.list_rows.iter().find(|(y, _)| *y == at.y).filter(|_| !self.detail) {
                    if self.selected.as_ref() != Some(id) {
                        self.event_cursor = None;
                    }
                    self.selected = Some(id.clone());
                } else if self.events_area.contains(at) {
                    let hit = self.event_rows.iter().rev().find(|(y, _)| *y <= at.y);
                    self.event_cursor = hit.map(|(_, seq)| *seq).or(self.event_cursor);
                }
                return;
            }
            _ => return,
        };
        if self.help {
            self.scroll_help(step * WHEEL_LINES);
        } else if self.events_area.contains(at) {
            self.move_event_cursor(step * WHEEL_LINES);
        } else if !self.detail {
            self.move_selection(step);
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
            // Ctrl-C asks what `q` asks (rollouts this process drives are
            // left undriven), from wherever it is; a second Ctrl-C quits.
            if *action == Action::Quit {
                if matches!(self.modal, Some(Modal::Quit { .. })) {
                    self.quit = true;
                } else {
                    self.modal = None;
                    self.palette = None;
                    self.filtering = false;
                    self.ask_to_quit();
                }
                return vec![];
            }
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
        if let Some(Modal::Reason { input, .. } | Modal::Confirm { typed: Some(input), .. }) = &mut self.modal {
            input.handle_event(&event);
        } else if self.palette.is_some() {
            match key.code {
                KeyCode::Tab => self.complete(false),
                KeyCode::BackTab => self.complete(true),
                _ => {
                    if let Some(p) = &mut self.palette {
                        p.input.handle_event(&event);
                        p.cycle = None;
                    }
                }
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
            Layer::Help => {
                self.in_help(action);
                return vec![];
            }
            _ => {}
        }
        match action {
            Action::Quit => self.ask_to_quit(),
            Action::Help => {
                self.help = true;
                self.help_scroll = 0;
            }
            Action::Cancel => self.back(),
            Action::Up | Action::Down if self.detail => {
                self.move_event_cursor(if action == Action::Up { -1 } else { 1 })
            }
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::Top if self.detail => self.move_event_cursor(isize::MIN / 2),
            Action::Bottom if self.detail => self.event_cursor = None,
            Action::Top => self.move_selection(isize::MIN / 2),
            Action::Bottom => self.move_selection(isize::MAX / 2),
            Action::PageUp | Action::PageDown => {
                let page = self.events_area.height.max(2) as isize - 1;
                self.move_event_cursor(if action == Action::PageUp { -page } else { page });
            }
            Action::Open if self.selected.is_some() => {
                self.detail = true;
                self.event_cursor = None;
            }
            Action::Filter => {
                // A new search each time, like `/` in a pager.
                self.filter.reset();
                self.filtering = true;
            }
            Action::Palette => self.palette = Some(Palette::default()),
            Action::FreezeView => self.toggle_freeze(),
            Action::NextTheme => self.next_theme(),
            a if a.is_rollout_command() => return self.command(a),
            _ => {}
        }
        vec![]
    }

    /// Keys while the help is open: scroll it or close it.
    fn in_help(&mut self, action: Action) {
        let page = self.help_page.max(2) as isize - 1;
        match action {
            Action::Up => self.scroll_help(-1),
            Action::Down => self.scroll_help(1),
            Action::PageUp => self.scroll_help(-page),
            Action::PageDown => self.scroll_help(page),
            Action::Top => self.help_scroll = 0,
            Action::Bottom => self.help_scroll = u16::MAX,
            Action::Quit => self.ask_to_quit(),
            _ => self.help = false,
        }
    }

    /// Esc in the cockpit: out of the full-screen rollout, off an event,
    /// then clears the filter.
    fn back(&mut self) {
        if self.detail {
            self.detail = false;
            self.event_cursor = None;
        } else if self.event_cursor.is_some() {
            self.event_cursor = None;
        } else if !self.filter.value().is_empty() {
            self.filter.reset();
            self.keep_selection();
        }
    }

    /// Quits, asking once when rollouts this process drives are mid-way
    /// (a cockpit attached to a server leaves them driven: it just goes).
    fn ask_to_quit(&mut self) {
        if self.driver == Driver::Server {
            self.quit = true;
            return;
        }
        let moving: Vec<String> = self
            .latest
            .rollouts
            .iter()
            .filter(|r| mid_rollout(r))
            .map(|r| format!("{} at {} %", r.plan().name, r.canary_weight))
            .collect();
        if moving.is_empty() {
            self.quit = true;
        } else {
            self.help = false;
            self.modal = Some(Modal::Quit { moving });
        }
    }

    fn toggle_freeze(&mut self) {
        self.frozen = !self.frozen;
        if !self.frozen {
            self.view = self.latest.clone();
            for output in std::mem::take(&mut self.held) {
                self.record(output);
            }
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
        self.toast = Some(Toast::info(format!("theme {}", self.theme.name)));
    }

    /// The command a key sends to the selected rollout.
    fn command(&mut self, action: Action) -> Vec<CommandRequest> {
        let Some(r) = self.selected_rollout() else { return vec![] };
        let (id, command) = (r.id.clone(), command_for(action, r, None));
        self.submit(id, command)
    }

    /// Sends `command` to rollout `id` as the captain sees it now, after
    /// asking the core (a dry run on a copy of the rollout): what it would
    /// refuse is not sent and the status line says why; what needs a "yes"
    /// opens the confirmation the dry run wrote. A freeze override asks for
    /// its reason first.
    fn submit(&mut self, id: String, command: Command) -> Vec<CommandRequest> {
        if self.read_only {
            self.toast = Some(Toast::error("read-only: viewers cannot act"));
            return vec![];
        }
        let Some(r) = self.view.rollouts.iter().find(|r| r.id == id) else { return vec![] };
        let request = CommandRequest {
            rollout: id,
            actor: self.actor.clone(),
            command,
            expected_stage: r.stage,
            expected_revision: r.canary_revision.clone(),
            expected_step: r.native_step,
        };
        if let Command::OverrideFreeze { reason } = &request.command {
            if reason.trim().is_empty() {
                // Ask the core with a stand-in reason: no typing for an override it would refuse.
                let probe =
                    CommandRequest { command: Command::OverrideFreeze { reason: "?".into() }, ..request.clone() };
                match self.ask(&probe) {
                    Some(Ask::Refused(why)) => self.toast = Some(self.refused_toast(&request, &why)),
                    Some(_) => self.modal = Some(Modal::Reason { request, input: Input::default() }),
                    None => {}
                }
                return vec![];
            }
        }
        self.send_or_confirm(request)
    }

    /// Sends what needs no "yes"; opens the confirmation for the rest.
    fn send_or_confirm(&mut self, request: CommandRequest) -> Vec<CommandRequest> {
        match self.ask(&request) {
            None => vec![],
            Some(Ask::Send) => vec![request],
            Some(Ask::Refused(why)) => {
                self.toast = Some(self.refused_toast(&request, &why));
                vec![]
            }
            Some(Ask::Confirm(shown)) => {
                let typed = matches!(shown.answer, Answer::TypeName(_)).then(Input::default);
                self.modal = Some(Modal::Confirm { request, shown: Box::new(shown), typed });
                vec![]
            }
        }
    }

    /// "abort payments: the rollout is rolled back; …" in the status line.
    fn refused_toast(&self, request: &CommandRequest, why: &Refusal) -> Toast {
        let name = self.live_rollout(&request.rollout).map_or(request.rollout.clone(), |r| r.plan().name.clone());
        Toast::error(format!("{} {name}: {why}", request.command.verb()))
    }

    /// The request as the core's command, from this cockpit's captain or viewer.
    fn core_request(&self, request: &CommandRequest) -> core::CommandRequest {
        core::CommandRequest {
            actor: request.actor.clone(),
            command: request.command.clone(),
            expected_stage: request.expected_stage,
            expected_revision: request.expected_revision.clone(),
            expected_step: request.expected_step,
            role: if self.read_only { core::Role::Viewer } else { core::Role::Captain },
            session: None,
        }
    }

    /// What the core would answer `request` now (`verbs::ask` on the
    /// rollout as it is now): refused, sent, or confirmed first.
    pub fn ask(&self, request: &CommandRequest) -> Option<Ask> {
        let r = self.live_rollout(&request.rollout)?;
        Some(verbs::ask(r, &self.core_request(request), self.latest.at))
    }

    /// Whether a rollout key would do anything on the selected rollout as
    /// shown (the core would not refuse it): for the footer's hints.
    pub fn offers(&self, action: Action) -> bool {
        let Some(r) = self.selected_rollout() else { return false };
        let command = match command_for(action, r, None) {
            // A stand-in reason: the override's reason is typed later.
            Command::OverrideFreeze { .. } => Command::OverrideFreeze { reason: "?".into() },
            other => other,
        };
        let request = CommandRequest {
            rollout: r.id.clone(),
            actor: self.actor.clone(),
            command,
            expected_stage: r.stage,
            expected_revision: r.canary_revision.clone(),
            expected_step: r.native_step,
        };
        // Judged on the rollout on screen: a frozen view keeps its footer still.
        let request = self.core_request(&request);
        !matches!(verbs::ask(r, &request, self.view.at), Ask::Refused(_))
    }

    /// The reason the core would refuse `request` now, or `None`.
    pub fn refusal(&self, request: &CommandRequest) -> Option<Refusal> {
        match self.ask(request)? {
            Ask::Refused(why) => Some(why),
            _ => None,
        }
    }

    /// A confirmed command that applies to the rollout as it is when it
    /// arrives (abort, rollback, pause: the verb table's `never_stale`)
    /// names the stage and revision it applies to, for the audit log.
    /// Forward commands keep what the captain saw.
    fn as_confirmed(&self, mut request: CommandRequest) -> CommandRequest {
        if verbs::verb_of(&request.command).never_stale {
            if let Some(r) = self.live_rollout(&request.rollout) {
                request.expected_stage = r.stage;
                request.expected_revision = r.canary_revision.clone();
                request.expected_step = r.native_step;
            }
        }
        request
    }

    /// The open confirmation as it is now: the core's dry run on the
    /// rollout as it is now (or the last one shown, if it no longer
    /// applies), and a warning when the rollout moved since the dialog
    /// opened or the command no longer applies.
    pub fn confirmation(&self, request: &CommandRequest, shown: &Confirmation) -> (Confirmation, Option<String>) {
        let Some(r) = self.live_rollout(&request.rollout) else { return (shown.clone(), None) };
        let verb = request.command.verb();
        let moved = r.stage != request.expected_stage
            || r.canary_revision != request.expected_revision
            || request.expected_step.is_some_and(|step| r.native_step != Some(step));
        let now = self.ask(&self.as_confirmed(request.clone()));
        let current = match &now {
            Some(Ask::Confirm(c)) => c.clone(),
            _ => shown.clone(),
        };
        let warning = if let Some(Ask::Refused(why)) = &now {
            Some(format!("No longer possible: {why}. Esc to close."))
        } else if moved && verbs::verb_of(&request.command).never_stale {
            Some(format!(
                "It moved since this opened: now stage {}/{} at {} %; {verb} applies to where it is now.",
                r.stage + 1,
                r.stages().len(),
                r.canary_weight
            ))
        } else if moved {
            Some(format!(
                "It moved since this opened (you saw stage {}, now {}/{}): confirming will be refused as stale. \
                 Esc, then look again.",
                request.expected_stage + 1,
                r.stage + 1,
                r.stages().len()
            ))
        } else {
            None
        };
        (current, warning)
    }

    /// The captain answered a modal, the palette or the filter.
    fn answer(&mut self, yes: bool) -> Vec<CommandRequest> {
        if let Some(modal) = self.modal.take() {
            return match modal {
                Modal::Confirm { request, shown, typed } if yes => {
                    // Production: the rollout's name, typed, and only then the confirm key.
                    let wanted = match &shown.answer {
                        Answer::TypeName(name) => Some(name.clone()),
                        Answer::Key => None,
                    };
                    let given = typed.as_ref().map(|t| t.value().trim().to_string());
                    if let Some(name) = wanted.filter(|name| given.as_deref() != Some(name.as_str())) {
                        self.toast = Some(Toast::error(format!("type {name} to confirm; nothing sent")));
                        self.modal = Some(Modal::Confirm { request, shown, typed });
                        return vec![];
                    }
                    vec![self.as_confirmed(request)]
                }
                Modal::Quit { .. } if yes => {
                    self.quit = true;
                    vec![]
                }
                Modal::Reason { mut request, input } if yes => {
                    let reason = input.value().trim().to_string();
                    if reason.is_empty() {
                        self.toast = Some(Toast::error("a freeze override needs a reason"));
                        self.modal = Some(Modal::Reason { request, input });
                        return vec![];
                    }
                    request.command = Command::OverrideFreeze { reason };
                    self.send_or_confirm(request)
                }
                _ => vec![],
            };
        }
        if let Some(palette) = self.palette.take() {
            return if yes { self.run_palette(palette.input.value()) } else { vec![] };
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

    /// Runs a palette line: `pause` (the selected rollout), `pause
    /// user-profile` (that one), `theme light`, `q`.
    pub fn run_palette(&mut self, line: &str) -> Vec<CommandRequest> {
        // Each palette line's answer replaces the last one's: an old error
        // must not stand beside a later command that worked.
        self.toast = None;
        let line = line.trim();
        let (word, rest) = line.split_once(' ').map_or((line, ""), |(w, r)| (w, r.trim()));
        if let Some(command) = palette_command(word) {
            if let Some(request) = super::release::palette_request(self, &command, rest) {
                return vec![request];
            }
            let target = if rest.is_empty() {
                self.selected.clone().ok_or("no rollout selected".into())
            } else {
                self.resolve(rest)
            };
            return match target {
                Ok(id) => self.submit(id, command),
                Err(why) => {
                    self.toast = Some(Toast::error(format!("{word}: {why}")));
                    vec![]
                }
            };
        }
        match word {
            "" => {}
            "q" | "quit" => self.ask_to_quit(),
            "q!" | "quit!" => self.quit = true,
            "override-freeze" => {
                let Some(id) = self.selected.clone() else { return vec![] };
                return self.submit(id, Command::OverrideFreeze { reason: rest.to_string() });
            }
            "set-image" | "undo" => {
                let Some(id) = self.selected.clone() else {
                    self.toast = Some(Toast::error(format!("{word}: no rollout selected")));
                    return vec![];
                };
                match palette_native(word, rest) {
                    Some(Ok(command)) => return self.submit(id, command),
                    Some(Err(why)) => self.toast = Some(Toast::error(why)),
                    None => {}
                }
            }
            "theme" => match self.themes.iter().find(|t| t.name == rest) {
                Some(t) => {
                    self.theme = t.clone();
                    self.base_theme = t.clone();
                    self.theme_pinned = true;
                }
                None => self.toast = Some(Toast::error(format!("no theme named `{rest}`"))),
            },
            "filter" => {
                self.filter = Input::new(rest.to_string());
                self.keep_selection();
            }
            other => match other.parse::<Action>() {
                Ok(action) if !action.is_rollout_command() => return self.run(action),
                _ => {
                    let names: Vec<&str> = palette_entries(self.read_only).iter().map(|(n, _)| *n).collect();
                    self.toast =
                        Some(Toast::error(format!("unknown command `{other}`; commands: {}", names.join(", "))));
                }
            },
        }
        vec![]
    }

    /// The rollout a typed name means: its id, or its plan name when only
    /// one rollout has it. Anything else is an error that sends nothing.
    pub fn resolve(&self, name: &str) -> Result<String, String> {
        let rollouts = &self.latest.rollouts;
        if let Some(r) = rollouts.iter().find(|r| r.id == name) {
            return Ok(r.id.clone());
        }
        let named: Vec<&Rollout> = rollouts.iter().map(Arc::as_ref).filter(|r| r.plan().name == name).collect();
        match named.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => {
                let close: Vec<String> = self
                    .rollout_names()
                    .into_iter()
                    .filter(|(shown, id)| starts(shown, id, name))
                    .map(|n| n.0)
                    .collect();
                Err(if close.is_empty() {
                    format!("no rollout named `{name}`; nothing sent")
                } else {
                    format!(
                        "no rollout named `{name}` (did you mean {}? Tab completes); nothing sent",
                        close.join(", ")
                    )
                })
            }
            many => {
                let ids: Vec<&str> = many.iter().map(|r| r.id.as_str()).collect();
                Err(format!("`{name}` is ambiguous: {}; type the full name; nothing sent", ids.join(", ")))
            }
        }
    }

    /// Every rollout as the palette names it (the plan name, or the full id
    /// when two share a name) with its id, in list order.
    pub fn rollout_names(&self) -> Vec<(String, String)> {
        let all = &self.latest.rollouts;
        let mut list: Vec<&Rollout> = all.iter().map(Arc::as_ref).collect();
        list.sort_by_cached_key(|r| (attention(r).is_none(), natural(&r.plan().target.group), natural(&r.id)));
        list.iter()
            .map(|r| {
                let shared = all.iter().filter(|o| o.plan().name == r.plan().name).count() > 1;
                (if shared { r.id.clone() } else { r.plan().name.clone() }, r.id.clone())
            })
            .collect()
    }

    /// What Tab offers for the palette text: command names, then rollout
    /// (or theme) names after a command that takes one.
    pub fn candidates(&self, text: &str) -> Vec<String> {
        let Some((word, rest)) = text.split_once(' ') else {
            let entries = palette_entries(self.read_only);
            return entries.iter().filter(|(n, _)| n.starts_with(text)).map(|(n, _)| n.to_string()).collect();
        };
        let rest = rest.trim_start();
        let names: Vec<String> = if palette_command(word).is_some() {
            self.rollout_names().into_iter().filter(|(shown, id)| starts(shown, id, rest)).map(|n| n.0).collect()
        } else if word == "theme" {
            self.themes.iter().map(|t| t.name.clone()).filter(|n| n.starts_with(rest)).collect()
        } else {
            vec![]
        };
        names.into_iter().map(|n| format!("{word} {n}")).collect()
    }

    /// Tab (or Shift-Tab): the next (previous) completion; from new text,
    /// the first one.
    fn complete(&mut self, backwards: bool) {
        let Some(p) = &self.palette else { return };
        let text = p.input.value().to_string();
        if let Some((offered, at)) = &p.cycle {
            if offered.get(*at) == Some(&text) && offered.len() > 1 {
                let n = offered.len();
                let next = if backwards { (at + n - 1) % n } else { (at + 1) % n };
                let shown = offered[next].clone();
                if let Some(p) = &mut self.palette {
                    p.input = Input::new(shown);
                    p.cycle.as_mut().expect("cycling").1 = next;
                }
                return;
            }
        }
        let offered = self.candidates(&text);
        if let Some(p) = &mut self.palette {
            if let Some(first) = offered.first() {
                p.input = Input::new(first.clone());
                p.cycle = Some((offered, 0));
            }
        }
    }

    /// What the palette shows under the text: the completions on offer,
    /// and which one Tab put in the field.
    pub fn palette_hints(&self) -> (Vec<String>, Option<usize>) {
        let Some(p) = &self.palette else { return (vec![], None) };
        if let Some((offered, at)) = &p.cycle {
            if offered.get(*at).map(String::as_str) == Some(p.input.value()) {
                return (offered.clone(), Some(*at));
            }
        }
        (self.candidates(p.input.value()), None)
    }

    /// For the terminal after the cockpit closes: one line per rollout,
    /// after a line on what "held" means when some are mid-way.
    pub fn quit_summary(&self) -> Vec<String> {
        let rollouts = &self.latest.rollouts;
        let mut lines = Vec::new();
        let held = rollouts.iter().map(Arc::as_ref).any(mid_rollout);
        match self.driver {
            Driver::Here { resumes: true } if held => lines.push(
                "flightdeck stopped; held rollouts keep their traffic where it is until flightdeck runs them \
                 again (they resume from their journals):"
                    .to_string(),
            ),
            Driver::Here { resumes: false } if held => lines.push(
                "flightdeck stopped; the demo's rollouts ended where they were (a demo starts over when run again):"
                    .to_string(),
            ),
            _ => {}
        }
        lines.extend(rollouts.iter().map(Arc::as_ref).map(summary_line));
        lines
    }
}

/// Prefix match on the shown name or the id.
fn starts(shown: &str, id: &str, prefix: &str) -> bool {
    shown.starts_with(prefix) || id.starts_with(prefix)
}

/// A rollout this cockpit drives that has traffic on the way: quitting
/// leaves it where it is.
fn mid_rollout(r: &Rollout) -> bool {
    r.control == Control::Driven
        && matches!(r.phase, Phase::Progressing { .. } | Phase::Paused { .. } | Phase::AwaitingApproval { .. })
}

fn summary_line(r: &Rollout) -> String {
    let held = if mid_rollout(r) { " · held" } else { "" };
    format!(
        "{}: {} · stage {}/{} · canary {} {} %{held}",
        r.id,
        state_label(r),
        r.stage + 1,
        r.stages().len(),
        r.canary_revision,
        r.canary_weight
    )
}

use flightdeck_core::view::attention;
pub use flightdeck_core::view::state_label;

/// A sort key that orders numbers by value: `notifications-2` before
/// `notifications-10`, `prod-eu-2` before `prod-eu-10`.
fn natural(s: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                key.push((std::mem::take(&mut text), digits.parse().unwrap_or(u64::MAX)));
                digits.clear();
            }
            text.push(c);
        }
    }
    key.push((text, if digits.is_empty() { 0 } else { digits.parse().unwrap_or(u64::MAX) }));
    key
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
        Action::Acknowledge => Command::Acknowledge,
        _ => Command::OverrideFreeze { reason: reason.unwrap_or_default() },
    }
}

#[cfg(test)]
mod tests {
    use super::natural;

    #[test]
    fn names_sort_by_the_numbers_in_them() {
        let mut names = vec!["notifications-10", "notifications-2", "notifications", "checkout", "notifications-1"];
        names.sort_by_key(|n| natural(n));
        assert_eq!(names, ["checkout", "notifications", "notifications-1", "notifications-2", "notifications-10"]);
        let mut groups = vec!["prod-eu-10", "prod-eu-9", "prod-ap-1"];
        groups.sort_by_key(|g| natural(g));
        assert_eq!(groups, ["prod-ap-1", "prod-eu-9", "prod-eu-10"]);
    }
}
