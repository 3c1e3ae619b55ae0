//! The cockpit's panes, each a function from view state to widgets.

use super::app::App;
use super::text::{self, cut, cut_middle, fit, wrap};
use super::theme::Theme;
use crate::protocol::Output;
use flightdeck_core::analysis::{Check, CheckOutcome, DeltaUnit, Metric, Verdict};
use flightdeck_core::budget::DeployPolicy;
use flightdeck_core::plan::{Control, StageAction, Strategy};
use flightdeck_core::rollout::{Gate, Phase, Rollout};
use flightdeck_core::time::{ago, clock, countdown, is_simulated, stamp, Timestamp};
use flightdeck_core::view::{attention, budget_numbers, eta_text, next_gate, next_text, state_label, target_label};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use std::time::Duration;

/// The theme scope and symbol of a phase.
pub fn phase_look<'a>(theme: &'a Theme, phase: &Phase) -> (Style, &'a str) {
    let s = &theme.symbols;
    let (scope, symbol) = match phase {
        Phase::Pending => ("state.pending", &s.pending),
        Phase::Progressing { .. } => ("state.progressing", &s.progressing),
        Phase::Paused { .. } => ("state.paused", &s.paused),
        Phase::AwaitingApproval { .. } => ("state.awaiting", &s.awaiting),
        Phase::Promoted { .. } => ("state.promoted", &s.promoted),
        Phase::Aborted { .. } => ("state.aborted", &s.aborted),
        Phase::RolledBack { .. } => ("state.rolled-back", &s.rolled_back),
        Phase::Failed { .. } => ("state.failed", &s.failed),
    };
    (theme.style(scope), symbol.as_str())
}

fn verdict_look<'a>(theme: &'a Theme, verdict: Option<&Verdict>) -> (Style, &'a str) {
    match verdict {
        Some(Verdict::Pass { .. }) => (theme.style("verdict.pass"), theme.symbols.pass.as_str()),
        Some(Verdict::Fail { .. }) => (theme.style("verdict.fail"), theme.symbols.fail.as_str()),
        Some(Verdict::Inconclusive { .. }) => (theme.style("verdict.inconclusive"), theme.symbols.warn.as_str()),
        None => (theme.style("ui.dim"), "·"),
    }
}

fn outcome_look(theme: &Theme, outcome: CheckOutcome) -> (Style, &str) {
    match outcome {
        CheckOutcome::Pass => (theme.style("verdict.pass"), theme.symbols.pass.as_str()),
        CheckOutcome::Fail => (theme.style("verdict.fail"), theme.symbols.fail.as_str()),
        CheckOutcome::Inconclusive => (theme.style("verdict.inconclusive"), theme.symbols.warn.as_str()),
    }
}

pub fn block<'a>(theme: &Theme, title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let border = if focused { "ui.border.focused" } else { "ui.border" };
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(border))
        .title(title.into().style(theme.style("ui.title")))
}

/// Time left in words for the list: the ETA when nothing ahead waits for
/// a human, the time to the next gate (marked) when something does, or
/// what it waits on now.
fn time_left(theme: &Theme, r: &Rollout, now: Timestamp) -> String {
    match &r.phase {
        Phase::AwaitingApproval { gate: Gate::Freeze, .. } => "freeze".into(),
        Phase::AwaitingApproval { .. } => "approve".into(),
        Phase::Paused { .. } => "paused".into(),
        Phase::Progressing { .. } | Phase::Pending => match next_gate(r, now) {
            Some((_, Some(wait))) => format!("{}{}", theme.symbols.awaiting, countdown(wait)),
            Some((_, None)) => "approve".into(),
            None => r.eta(now).map(countdown).unwrap_or_default(),
        },
        _ => String::new(),
    }
}

/// The rollouts list, grouped: those needing a human on top, then by target.
pub fn rollouts(f: &mut Frame, area: Rect, app: &mut App) {
    // Where the selection is in a long list: "12/1000".
    let visible = app.visible();
    let at = app.selected.as_ref().and_then(|id| visible.iter().position(|r| &r.id == id));
    let position = at.map_or(String::new(), |i| format!("{}/{} ", i + 1, visible.len()));
    let title = if app.filtering || !app.filter.value().is_empty() {
        format!(" Rollouts {position}/ {}{} ", app.filter.value(), if app.filtering { "▏" } else { "" })
    } else {
        format!(" Rollouts {position}")
    };
    let b = block(&app.theme, cut(&title, area.width.saturating_sub(2) as usize), true);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let (lines, rows) = list_lines(app, inner);
    app.list_rows = rows;
    f.render_widget(Paragraph::new(lines), inner);
}

/// One list entry: a group heading or a rollout.
enum Entry<'a> {
    Heading(&'a Rollout, String),
    Row(&'a Rollout),
}

/// The visible lines of the list (only those: a fleet of thousands costs
/// what fits on screen) and, for mouse clicks, the screen row of each rollout.
fn list_lines(app: &App, inner: Rect) -> (Vec<Line<'static>>, Vec<(u16, String)>) {
    let theme = &app.theme;
    let mut entries = Vec::new();
    let mut group: Option<&str> = None;
    let visible = app.visible_marked();
    for &(r, needs_human) in &visible {
        let heading = if needs_human { "▲ needs a human" } else { r.plan().target.group.as_str() };
        if group != Some(heading) {
            entries.push(Entry::Heading(r, heading.to_string()));
            group = Some(heading);
        }
        entries.push(Entry::Row(r));
    }
    if entries.is_empty() {
        return (vec![Line::styled("no rollouts match", theme.style("ui.dim"))], vec![]);
    }
    // Keep the selection on screen in a long list.
    let selected = entries
        .iter()
        .position(|e| matches!(e, Entry::Row(r) if app.selected.as_deref() == Some(r.id.as_str())))
        .unwrap_or(0);
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    // A column header, as k9s has, when there is room for it and a row.
    let header = inner.height >= 3;
    if header {
        lines.push(fit(list_header(theme, inner.width), inner.width));
    }
    let room = inner.height.saturating_sub(header as u16);
    let skip = (selected + 2).saturating_sub(room as usize);
    for (i, entry) in entries.iter().enumerate().skip(skip).take(room as usize) {
        match entry {
            Entry::Heading(r, heading) => lines.push(fit(group_heading(theme, r, heading), inner.width)),
            Entry::Row(r) => {
                rows.push((inner.y + header as u16 + (i - skip) as u16, r.id.clone()));
                let selected = app.selected.as_deref() == Some(r.id.as_str());
                lines.push(fit(list_row(theme, r, selected, app.now, inner.width), inner.width));
            }
        }
    }
    (lines, rows)
}

/// The widths of a list row besides the name: marker and state symbol,
/// then stage, weight, verdict and time left (see [`list_row`]).
const ROW_FIXED: usize = 23;

/// The list's column header, aligned with [`list_row`].
fn list_header<'a>(theme: &Theme, width: u16) -> Line<'a> {
    let name_width = (width as usize).saturating_sub(ROW_FIXED).max(4);
    let text = format!("   {:<name_width$} {:<4}{:>4} {:<2}{:>7}", "ROLLOUT", "STG", "WT", "V", "NEXT");
    Line::styled(text, theme.style("ui.dim").add_modifier(Modifier::BOLD))
}

fn group_heading<'a>(theme: &Theme, r: &Rollout, heading: &str) -> Line<'a> {
    if attention(r).is_some() {
        return Line::styled(format!(" {heading}"), theme.style("ui.needs-human"));
    }
    let mut spans = vec![Span::styled(format!(" {heading}"), theme.style("ui.group"))];
    if r.plan().target.production {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(theme.symbols.production.clone(), theme.style("ui.group.production")));
    }
    Line::from(spans)
}

/// `>▶ checkout… 2/4  10% ✓   24:59`: the selected row is marked with `>`
/// as well as its style, so it shows without colour (NO_COLOR, mono).
fn list_row<'a>(theme: &Theme, r: &Rollout, selected: bool, now: Timestamp, width: u16) -> Line<'a> {
    let (state_style, icon) = phase_look(theme, &r.phase);
    let (verdict_style, verdict) = verdict_look(theme, r.last_verdict.as_ref());
    let name_width = (width as usize).saturating_sub(ROW_FIXED).max(4);
    // Cut in the middle: copies of a plan differ at their end.
    let name = cut_middle(&r.plan().name, name_width);
    let pad = name_width.saturating_sub(text::width(&name));
    // The weight the backend shows; `!` (and the warning colour) when the
    // weight flightdeck wants is not there yet.
    let (weight, weight_style) = match pending_weight(r, now) {
        Some(p) => (format!("{:>3}%!", p.shown.unwrap_or(p.wanted)), pending_style(theme, &p)),
        None => (format!("{:>3}% ", r.canary_weight), Style::default()),
    };
    let spans = vec![
        // Only the selected row's marker takes the selection's colours: an
        // unselected row's blank must not paint a stripe down the list.
        if selected {
            Span::styled(">", theme.style("ui.selection").add_modifier(Modifier::BOLD))
        } else {
            Span::raw(" ")
        },
        Span::styled(format!("{icon} "), state_style),
        Span::raw(format!("{name}{} ", " ".repeat(pad))),
        Span::raw(format!("{}/{} ", r.stage + 1, r.stages().len())),
        Span::styled(weight, weight_style),
        Span::styled(format!("{verdict} "), verdict_style),
        Span::styled(format!("{:>7}", time_left(theme, r, now)), theme.style("ui.dim")),
    ];
    let line = Line::from(spans);
    if selected {
        line.style(theme.style("ui.selection"))
    } else {
        line
    }
}

/// Three lines: name with state, stage and weight (never cut: the name
/// gives way); strategy, target and revisions; why it is in this state
/// and who acted last.
pub fn header(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let (state_style, icon) = phase_look(theme, &r.phase);
    let mut facts = vec![
        Span::styled(format!("{icon} {}", state_label(r)), state_style.add_modifier(Modifier::BOLD)),
        Span::raw(format!(" · stage {}/{} · ", r.stage + 1, r.stages().len())),
    ];
    match pending_weight(r, app.now) {
        Some(p) => {
            let shown = p.shown.map_or("?".to_string(), |o| format!("{o} %"));
            facts.push(Span::styled(format!("{shown}→{} %", p.wanted), pending_style(theme, &p)));
        }
        None => facts.push(Span::raw(format!("{} %", r.canary_weight))),
    }
    // The name is never cut while the state can be said shorter: first the
    // state's words give way to its symbol, then the name is cut in the middle.
    let name = &r.plan().name;
    let width_of = |spans: &[Span]| spans.iter().map(|s| text::width(&s.content)).sum::<usize>();
    let fits = |facts: &[Span]| text::width(name) + 2 + width_of(facts) <= area.width as usize;
    if !fits(&facts) {
        facts[1] = Span::raw(format!(" {}/{} ", r.stage + 1, r.stages().len()));
    }
    if !fits(&facts) {
        facts[0] = Span::styled(icon.to_string(), state_style.add_modifier(Modifier::BOLD));
    }
    let name_room = (area.width as usize).saturating_sub(width_of(&facts) + 2);
    let mut first = vec![
        Span::styled(cut_middle(name, name_room.max(4)), theme.style("ui.title").add_modifier(Modifier::BOLD)),
        Span::raw("  "),
    ];
    first.extend(facts);
    let mut second = vec![Span::raw(format!("{} · {}", r.plan().strategy_name(), target_label(r)))];
    if r.plan().target.production {
        second.push(Span::raw(" "));
        second.push(Span::styled(theme.symbols.production.clone(), theme.style("ui.group.production")));
    }
    second.push(Span::styled(format!(" · {} → {}", r.stable_revision, r.canary_revision), theme.style("ui.text")));
    let mut third = vec![];
    if let Some(why) = phase_why(r) {
        third.push(Span::styled(why, state_style));
        third.push(Span::raw("  "));
    }
    if let Some(detail) = &r.native_detail {
        third.push(Span::styled(format!("{detail}  "), theme.style("ui.text")));
    }
    if let Some(a) = &r.last_action {
        third.push(Span::styled(
            format!("last: {} {} at {} (stage {})", a.actor, a.action, stamp(a.at), a.stage + 1),
            theme.style("ui.dim"),
        ));
    }
    let lines: Vec<Line> = [first, second, third].into_iter().map(|l| fit(Line::from(l), area.width)).collect();
    f.render_widget(Paragraph::new(lines), area);
}

fn phase_why(r: &Rollout) -> Option<String> {
    match &r.phase {
        // The core's default reasons already name the actor ("paused by alice").
        Phase::Paused { by, reason, .. } if reason.contains(&by.0) => Some(reason.clone()),
        Phase::Paused { by, reason, .. } => Some(format!("paused by {by}: {reason}")),
        Phase::RolledBack { reason, .. } | Phase::Aborted { reason, .. } | Phase::Failed { reason, .. } => {
            Some(reason.clone())
        }
        Phase::AwaitingApproval { gate, next, .. } => Some(match gate {
            Gate::Stage => format!("waiting for approval to enter stage {}", next + 1),
            Gate::Budget => format!("approve each promotion: {}, below 50 %", budget_numbers(r)),
            Gate::Freeze => format!("{}, at most 25 % freezes: override with a reason", budget_numbers(r)),
        }),
        _ => None,
    }
}

/// A canary weight flightdeck wants but the backend does not show.
pub struct PendingWeight {
    /// What the backend shows, when it can say.
    pub shown: Option<u8>,
    pub wanted: u8,
    /// Applying it failed (the backend refused or was unreachable).
    pub failed: bool,
}

/// The wanted weight when the backend does not show it: applying it
/// failed, or a whole analysis window after the change the backend still
/// reads back something else. (Right after a change that applied, the
/// last reading is simply older than the change: that is not pending.)
pub fn pending_weight(r: &Rollout, now: Timestamp) -> Option<PendingWeight> {
    if r.control == Control::Observed {
        return None;
    }
    let failed = r.backend_error.is_some();
    let waited = r.weight_since.map(|since| now.since(since));
    let overdue = waited.is_none_or(|w| w > r.plan().analysis.interval);
    match r.observed_weight {
        Some(o) if o != r.canary_weight && (failed || overdue) => {
            Some(PendingWeight { shown: Some(o), wanted: r.canary_weight, failed })
        }
        None if failed => Some(PendingWeight { shown: None, wanted: r.canary_weight, failed }),
        _ => None,
    }
}

fn pending_style(theme: &Theme, p: &PendingWeight) -> Style {
    if p.failed {
        theme.style("verdict.fail").add_modifier(Modifier::BOLD)
    } else {
        theme.style("verdict.inconclusive")
    }
}

/// Rows the split pane needs: a second one says what is pending.
pub fn split_height(r: &Rollout, now: Timestamp) -> u16 {
    1 + pending_weight(r, now).is_some() as u16
}

/// `v1 90% │ v2 10%` as a bar, in the strategy's words, at the weight the
/// backend shows; a weight flightdeck wants but the backend does not show
/// is said below in words and colour, with how long it has been waiting.
pub fn split(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let pending = pending_weight(r, app.now);
    let w = pending.as_ref().and_then(|p| p.shown).unwrap_or(r.canary_weight) as usize;
    let (left, right) = match r.plan().strategy {
        Strategy::BlueGreen { .. } => {
            // After the switch the old side is a standby kept for a fast
            // switch back, not a preview.
            if w == 100 {
                (format!("active {} 100%", r.canary_revision), format!("standby {}", r.stable_revision))
            } else {
                (format!("active {} 100%", r.stable_revision), format!("preview {}", r.canary_revision))
            }
        }
        Strategy::Rolling { .. } => (
            format!("old {} {}% of replicas", r.stable_revision, 100 - w),
            format!("updated {} {w}%", r.canary_revision),
        ),
        Strategy::Canary { .. } => {
            (format!("{} {}%", r.stable_revision, 100 - w), format!("{} {w}%", r.canary_revision))
        }
    };
    let label_width = text::width(&left) + text::width(&right) + 3;
    let bar = (area.width as usize).saturating_sub(label_width).max(4);
    // Round up so a 1 % canary still shows.
    let canary_cells =
        if matches!(r.plan().strategy, Strategy::BlueGreen { .. }) { 0 } else { (bar * w).div_ceil(100).min(bar) };
    let mut lines = vec![fit(
        Line::from(vec![
            Span::styled(format!("{left} "), theme.style("split.stable")),
            Span::styled("█".repeat(bar - canary_cells), theme.style("split.stable")),
            Span::raw("│"),
            Span::styled("█".repeat(canary_cells), theme.style("split.canary")),
            Span::styled(format!(" {right}"), theme.style("split.canary")),
        ]),
        area.width,
    )];
    if let Some(p) = pending {
        let waited = r.weight_since.map(|since| format!(" for {}", clock(app.now.since(since)))).unwrap_or_default();
        // The bar above is what the backend shows (or, when it cannot say, the wanted weight).
        let text = match (p.failed, p.shown) {
            (true, Some(_)) => format!("{} wants {} %: NOT APPLIED{waited}", theme.symbols.fail, p.wanted),
            (true, None) => format!("{} {} %: NOT APPLIED{waited}, backend cannot say", theme.symbols.fail, p.wanted),
            (false, _) => format!("{} wants {} %: backend still shows other{waited}", theme.symbols.warn, p.wanted),
        };
        lines.push(fit(Line::styled(text, pending_style(theme, &p)), area.width));
    }
    f.render_widget(Paragraph::new(lines), area);
}

/// Spans joined by two spaces, each only if it fits whole: the first
/// always (cut with `…` if it must), the others dropped rather than cut.
fn packed(segments: Vec<Span<'static>>, width: u16) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for (i, seg) in segments.into_iter().enumerate() {
        let w = text::width(&seg.content) + if i == 0 { 0 } else { 2 };
        if i == 0 || used + w <= width as usize {
            if i > 0 {
                spans.push(Span::raw("  "));
            }
            spans.push(seg);
            used += w;
        }
    }
    fit(Line::from(spans), width)
}

/// Every stage with its weight, the current one marked, gates, countdown,
/// what is next and the ETA (which waits for approval when a gate is ahead).
pub fn timeline(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let mut spans = vec![Span::styled("Stages ", theme.style("ui.dim"))];
    for (i, stage) in r.stages().iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" ── ", theme.style("ui.dim")));
        }
        if stage.approval {
            spans.push(Span::styled(format!("{} ", theme.symbols.awaiting), theme.style("state.awaiting")));
        }
        let label = match stage.action {
            StageAction::Preview => "preview".to_string(),
            StageAction::Switch => "switch".to_string(),
            _ => format!("{}%", stage.weight),
        };
        let done = i < r.stage || matches!(r.phase, Phase::Promoted { .. });
        let style = if i == r.stage && !r.phase.is_finished() {
            theme.style("ui.selection").add_modifier(Modifier::BOLD)
        } else if done {
            theme.style("verdict.pass")
        } else {
            theme.style("ui.dim")
        };
        let text = if i == r.stage && !r.phase.is_finished() { format!("[{label}]") } else { label };
        spans.push(Span::styled(text, style));
    }
    // In the order they give way when the line is short: the bake's
    // detail first, the stage and what is next last.
    let mut second = vec![Span::styled(format!("Stage {}/{}", r.stage + 1, r.stages().len()), theme.style("ui.text"))];
    second.push(Span::styled(next_text(r, app.now), theme.style("ui.title")));
    if let Some(eta) = eta_text(r, app.now) {
        second.push(Span::raw(eta));
    }
    if let (Some(left), Some(stage)) = (r.bake_remaining(app.now), r.current_stage()) {
        second.push(Span::raw(format!("bake {} left of {}", clock(left), clock(stage.bake))));
    }
    f.render_widget(Paragraph::new(vec![fit(Line::from(spans), area.width), packed(second, area.width)]), area);
}

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of the canary's last windows, scaled to its range but to
/// no less than `min_span` around its middle: a wobble smaller than the
/// check's limit (248 → 244 ms against a 25 ms limit) stays flat instead of
/// looking like a cliff.
pub fn sparkline(values: &[f64], width: usize, min_span: f64) -> String {
    let values = &values[values.len().saturating_sub(width)..];
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (lo, hi) = if hi - lo < min_span { ((lo + hi - min_span) / 2.0, (lo + hi + min_span) / 2.0) } else { (lo, hi) };
    values
        .iter()
        .map(|v| {
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
            SPARKS[((t * 7.0).round() as usize).min(7)]
        })
        .collect()
}

fn number(metric: Metric, v: Option<f64>) -> String {
    match (metric, v) {
        (_, None) => "—".into(),
        (Metric::Requests, Some(v)) if v.abs() >= 100.0 => format!("{v:.0}/s"),
        (Metric::Requests, Some(v)) => format!("{v:.1}/s"),
        (Metric::ErrorRate, Some(v)) => format!("{v:.2}%"),
        (_, Some(v)) => format!("{v:.0}ms"),
    }
}

fn delta(c: &Check, wide: bool) -> String {
    if c.metric == Metric::Requests {
        return match (c.stable, c.canary) {
            // "10% share", or "10%" where the cell is narrower.
            (Some(s), Some(k)) if s + k > 0.0 && wide => format!("{:.0}% share", 100.0 * k / (s + k)),
            (Some(s), Some(k)) if s + k > 0.0 => format!("{:.0}%", 100.0 * k / (s + k)),
            _ => "—".into(),
        };
    }
    match (c.delta, c.unit) {
        (None, _) => "—".into(),
        (Some(d), DeltaUnit::Pp) => format!("{d:+.2}pp"),
        (Some(d), DeltaUnit::Percent) => format!("{d:+.1}%"),
        (Some(d), DeltaUnit::PerSecond) if d.abs() >= 100.0 => format!("{d:+.0}/s"),
        (Some(d), DeltaUnit::PerSecond) => format!("{d:+.1}/s"),
    }
}

fn limit(c: &Check) -> String {
    match (c.threshold, c.unit) {
        (None, _) => "".into(),
        (Some(t), DeltaUnit::Pp) => format!("≤{t:.1}pp"),
        (Some(t), _) => format!("≤{t:.0}%"),
    }
}

/// A metric's name in a narrow table.
fn short_label(metric: Metric) -> &'static str {
    match metric {
        Metric::Requests => "req",
        Metric::ErrorRate => "errors",
        other => other.label(),
    }
}

/// The analysis pane's title in the strategy's words.
fn analysis_title(r: &Rollout) -> &'static str {
    match (&r.plan().strategy, r.current_stage().map(|s| s.action)) {
        (Strategy::BlueGreen { .. }, Some(StageAction::Preview)) => " Preview analysis ",
        (Strategy::BlueGreen { .. }, _) => " Verification analysis ",
        (Strategy::Rolling { .. }, _) => " Rollout analysis ",
        (Strategy::Canary { .. }, _) => " Canary analysis ",
    }
}

/// Which columns of the analysis table fit, widest layout first.
#[derive(Clone, Copy, PartialEq)]
enum Columns {
    /// metric, stable, canary, Δ, limit, evidence, verdict, trend.
    Full,
    /// metric, stable, canary, Δ, evidence, verdict.
    Narrow,
    /// metric, canary, Δ, verdict.
    Tiny,
}

/// Stable's baseline against the stage's canary per metric, with delta,
/// limit, sample and how far the evidence has come toward a pass or a fail,
/// a verdict per row and per-window sparklines; the interval, the time to a
/// decision and the reason in words below. Narrow panes drop the trend and
/// the limit first; every cell that must be cut ends in `…`.
pub fn deltas(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let verdict = r.last_verdict.as_ref();
    let (vstyle, vsym) = verdict_look(theme, verdict);
    let title = fit(
        Line::from(vec![
            Span::raw(analysis_title(r)),
            Span::styled(format!("{vsym} {} ", verdict.map_or("waiting for a window", |v| v.label())), vstyle),
        ]),
        area.width.saturating_sub(2),
    );
    let b = block(theme, title, false);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let Some(verdict) = verdict else {
        let text = "no analysis window yet";
        f.render_widget(Paragraph::new(Line::styled(text, theme.style("ui.dim"))), inner);
        return;
    };
    let columns = match inner.width {
        70.. => Columns::Full,
        41.. => Columns::Narrow,
        _ => Columns::Tiny,
    };
    let history = app.history.get(&r.id);
    let spark_width = (inner.width as usize).saturating_sub(70).min(24);
    let (headers, widths): (Vec<&str>, Vec<u16>) = match columns {
        Columns::Full => (
            vec!["metric", "stable", "canary", "Δ", "limit", "toward", "", "trend"],
            vec![10, 9, 9, 9, 8, 9, 2, spark_width as u16],
        ),
        Columns::Narrow => (vec!["", "stable", "canary", "Δ", "evid.", ""], vec![6, 8, 8, 8, 5, 1]),
        Columns::Tiny => (vec!["", "canary", "Δ", ""], vec![6, 8, 8, 1]),
    };
    let rows: Vec<Row> = verdict
        .checks()
        .iter()
        .map(|c| {
            let (style, sym) = outcome_look(theme, c.outcome);
            let sym = if c.threshold.is_none() && c.outcome == CheckOutcome::Pass { " " } else { sym };
            // Requests are not judged against stable: their row says the
            // canary's share of traffic instead of a meaningless difference.
            let evidence = if c.metric == Metric::Requests { String::new() } else { evidence_cell(c, columns) };
            let spark = history
                .and_then(|h| h.series.get(&c.metric))
                .map(|s| sparkline(&s.iter().map(|(_, canary)| *canary).collect::<Vec<_>>(), spark_width, span(c)))
                .unwrap_or_default();
            let label = if columns == Columns::Full { c.metric.label() } else { short_label(c.metric) };
            let texts: Vec<String> = match columns {
                Columns::Full => vec![
                    label.into(),
                    number(c.metric, c.stable),
                    number(c.metric, c.canary),
                    delta(c, true),
                    limit(c),
                    evidence,
                    sym.into(),
                    spark,
                ],
                Columns::Narrow => vec![
                    label.into(),
                    number(c.metric, c.stable),
                    number(c.metric, c.canary),
                    delta(c, false),
                    evidence,
                    sym.into(),
                ],
                Columns::Tiny => vec![label.into(), number(c.metric, c.canary), delta(c, false), sym.into()],
            };
            let last = texts.len() - 1;
            let sym_at = if columns == Columns::Full { last - 1 } else { last };
            Row::new(texts.into_iter().zip(&widths).enumerate().map(|(i, (t, w))| {
                let t = cut(&t, *w as usize);
                if i == sym_at {
                    Cell::from(Span::styled(t, style))
                } else if columns == Columns::Full && i == last {
                    Cell::from(Span::styled(t, theme.style("sparkline.canary")))
                } else {
                    Cell::from(t)
                }
            }))
        })
        .collect();
    let header = Row::new(headers.into_iter().zip(&widths).map(|(h, w)| Cell::from(cut(h, *w as usize))))
        .style(theme.style("ui.dim").add_modifier(Modifier::BOLD));
    let constraints: Vec<Constraint> = widths.iter().map(|w| Constraint::Length(*w)).collect();
    let table_height = (rows.len() as u16 + 1).min(inner.height);
    let table = Table::new(rows, constraints).header(header).column_spacing(1);
    f.render_widget(table, Rect { height: table_height, ..inner });
    let reason_area = Rect { y: inner.y + table_height, height: inner.height.saturating_sub(table_height), ..inner };
    if reason_area.height > 0 {
        let mut lines: Vec<Line> = wrap(&stage_evidence(verdict), reason_area.width as usize)
            .into_iter()
            .map(|l| Line::styled(l, theme.style("ui.dim")))
            .collect();
        if !matches!(verdict, Verdict::Pass { .. }) {
            let why = format!("Why: {}", verdict.summary());
            lines.extend(wrap(&why, reason_area.width as usize).into_iter().map(|l| Line::styled(l, vstyle)));
        }
        f.render_widget(Paragraph::new(clipped(lines, reason_area)), reason_area);
    }
}

/// The lines that fit in `area`; when some are left out, the last one shown
/// ends in `…` so nothing looks complete that is not.
fn clipped(mut lines: Vec<Line<'static>>, area: Rect) -> Vec<Line<'static>> {
    let rows = area.height as usize;
    if lines.len() > rows && rows > 0 {
        lines.truncate(rows);
        let last = lines.pop().expect("at least one row");
        let text: String = last.spans.iter().map(|s| s.content.as_ref()).collect();
        let style = last.spans.first().map(|s| s.style).unwrap_or_default();
        let marked = if text::width(&text) < area.width as usize {
            format!("{text}…")
        } else {
            cut(&format!("{text}…"), area.width as usize)
        };
        lines.push(Line::styled(marked, style));
    }
    lines
}

/// How far the evidence has come toward a decision, whichever leads:
/// `62%→pass` (or `✓62%` in a narrow table), `40%→fail`; the row's outcome
/// says when one is reached.
fn evidence_cell(c: &Check, columns: Columns) -> String {
    let toward = |share: f64, words: &str, sym: &str| {
        let pct = (share * 100.0).min(99.0);
        if columns == Columns::Full {
            format!("{pct:.0}%→{words}")
        } else {
            format!("{sym}{pct:.0}%")
        }
    };
    match (c.toward_pass, c.toward_fail) {
        _ if c.outcome == CheckOutcome::Fail => "fail".to_string(),
        _ if c.outcome == CheckOutcome::Pass && c.threshold.is_some() => "pass".to_string(),
        (Some(p), Some(f)) if f > p => toward(f, "fail", "✗"),
        (Some(p), _) => toward(p, "pass", "✓"),
        (None, Some(f)) => toward(f, "fail", "✗"),
        (None, None) => String::new(),
    }
}

/// The smallest change a metric's sparkline shows as a full swing: its
/// limit (in its own units), so a move within the limit stays low.
fn span(c: &Check) -> f64 {
    match (c.unit, c.threshold, c.stable) {
        (DeltaUnit::Pp, Some(t), _) => t,
        (DeltaUnit::Percent, Some(t), Some(s)) => s.abs() * t / 100.0,
        (_, _, Some(s)) => s.abs() * 0.2,
        _ => 0.0,
    }
}

/// One line on the stage's accumulated evidence: canary requests this stage,
/// the interval for the error-rate difference, and the time to a decision.
fn stage_evidence(verdict: &Verdict) -> String {
    let errors = verdict.checks().iter().find(|c| c.metric == Metric::ErrorRate);
    let sample = errors.map_or(0, |c| c.sample);
    let mut text = format!("Stage: {sample} canary req");
    if let Some((lo, hi)) = errors.and_then(|c| c.interval) {
        text += &format!(" · error Δ in [{lo:+.2}, {hi:+.2}] pp");
    }
    if let Some(estimate) = verdict.estimate_text() {
        text += &format!(" · {estimate}");
    }
    text
}

/// Remaining budget in seconds and percent, a gauge, burn rates and the policy.
pub fn budget(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let b = block(theme, " Error budget ", false);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let Some(budget) = r.budget else {
        f.render_widget(Paragraph::new(Line::styled("no SLO data yet", theme.style("ui.dim"))), inner);
        return;
    };
    let scope = match budget.policy {
        DeployPolicy::Auto => "budget.auto",
        DeployPolicy::ApprovalRequired => "budget.approval",
        DeployPolicy::Freeze => "budget.freeze",
    };
    let style = theme.style(scope);
    let left = if budget.unknown {
        " left: unknown (no valid availability reading)".to_string()
    } else {
        format!(" {:.0} s left ({:.1} %)", budget.remaining_s, budget.remaining_pct)
    };
    let bar_width = (inner.width as usize).saturating_sub(text::width(&left)).clamp(4, 40);
    let filled = (bar_width as f64 * budget.remaining_pct.clamp(0.0, 100.0) / 100.0).round() as usize;
    let gauge = format!("{}{}", "█".repeat(filled), "░".repeat(bar_width - filled));
    let slo = &r.plan().slo;
    let mut lines = vec![
        Line::from(vec![Span::styled(gauge, style), Span::raw(left)]),
        Line::from(format!(
            "burn 1h {:.1}× 5m {:.1}× · 6h {:.1}× 30m {:.1}×",
            budget.burn_1h, budget.burn_5m, budget.burn_6h, budget.burn_30m
        )),
        Line::from(vec![
            Span::raw("policy: "),
            Span::styled(budget.policy.label(), style.add_modifier(Modifier::BOLD)),
            Span::styled(format!("  (SLO {}% / {})", slo.objective_pct, humantime(slo.window)), theme.style("ui.dim")),
        ]),
    ];
    if budget.fast_burn() {
        lines.push(Line::styled("FAST BURN: 1h and 5m above 14.4×", theme.style("verdict.fail")));
    }
    if let Some(o) = &r.freeze_override {
        lines.push(Line::styled(format!("override by {}: {}", o.actor, o.action), theme.style("budget.freeze")));
    }
    let lines = lines.into_iter().map(|l| fit(l, inner.width)).collect();
    f.render_widget(Paragraph::new(clipped(lines, inner)), inner);
}

fn humantime(d: Duration) -> String {
    let days = d.as_secs() / 86_400;
    if days > 0 && d.as_secs().is_multiple_of(86_400) {
        format!("{days}d")
    } else {
        clock(d)
    }
}

/// The event and audit log of the selected rollout, newest last. One line
/// per event, cut with `…`; the event under the cursor (in the full-screen
/// view, the newest unless the captain moved) is shown whole, wrapped.
/// Records where each event is for the mouse and for paging.
pub fn events(f: &mut Frame, area: Rect, app: &mut App, r: &Rollout) {
    let theme = &app.theme;
    let events = app.rollout_events(&r.id);
    let focused = app.detail || app.event_cursor.is_some();
    let anchor = match app.event_cursor {
        Some(seq) => events.iter().position(|(s, _)| *s >= seq).unwrap_or(events.len().saturating_sub(1)),
        None => events.len().saturating_sub(1),
    };
    // Which clock the times are on: simulated time since the run began, or UTC.
    let clock = if is_simulated(app.now) { "sim time" } else { "UTC" };
    let title = match (focused, events.is_empty()) {
        (true, false) => format!(" Events {}/{} · {clock} ", anchor + 1, events.len()),
        _ => format!(" Events · {clock} "),
    };
    let b = block(theme, cut(&title, area.width.saturating_sub(2) as usize), focused);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let width = inner.width as usize;
    let height = inner.height as usize;
    // Only the events that can be on screen are laid out (each takes a line
    // at least, so at most `height` either side of the anchor): a long log
    // costs a frame no more than a short one.
    let shown = anchor.saturating_sub(height)..(anchor + height + 1).min(events.len());
    let skipped = shown.start;
    let anchor = anchor - skipped;
    // Each event's lines: one, or all of the one under the cursor.
    let rendered: Vec<(u64, Vec<Line<'static>>)> = events[shown]
        .iter()
        .enumerate()
        .map(|(i, (seq, o))| {
            let (text, scope) = event_text(o);
            let time = Span::styled(format!("{:>8} ", stamp(o.at())), theme.style("event.time"));
            if focused && i == anchor {
                let style = theme.style(scope).add_modifier(Modifier::BOLD);
                let text = format!("{text} ({})", ago(app.now.since(o.at())));
                let body = wrap(&text, width.saturating_sub(9).max(1));
                let lines = body
                    .into_iter()
                    .enumerate()
                    .map(|(j, l)| {
                        let lead = if j == 0 { time.clone() } else { Span::raw(" ".repeat(9)) };
                        fit(Line::from(vec![lead, Span::styled(l, style)]), inner.width)
                    })
                    .collect();
                (*seq, lines)
            } else {
                (*seq, vec![fit(Line::from(vec![time, Span::styled(text, theme.style(scope))]), inner.width)])
            }
        })
        .collect();
    // Show the anchor whole, then as many earlier events as fit above it,
    // then later ones below.
    let mut first = anchor.min(rendered.len());
    let mut used = rendered.get(anchor).map_or(0, |(_, l)| l.len().min(height));
    while first > 0 && used + rendered[first - 1].1.len() <= height {
        first -= 1;
        used += rendered[first].1.len();
    }
    let mut last = (anchor + 1).min(rendered.len());
    while last < rendered.len() && used + rendered[last].1.len() <= height {
        used += rendered[last].1.len();
        last += 1;
    }
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    for (seq, event_lines) in &rendered[first..last] {
        rows.push((inner.y + lines.len() as u16, *seq));
        lines.extend(event_lines.iter().cloned());
    }
    lines.truncate(height);
    app.events_area = inner;
    app.event_rows = rows;
    f.render_widget(Paragraph::new(lines), inner);
}

/// An event in words, with the theme scope it is drawn in.
fn event_text(o: &Output) -> (String, &'static str) {
    match o {
        Output::Started { resumed, .. } => {
            ((if *resumed { "resumed from journal" } else { "started" }).to_string(), "ui.text")
        }
        Output::Transition { from, to, stage, stages, weight, still_at, reason, .. } => {
            let why = reason.as_ref().map(|r| format!(" — {r}")).unwrap_or_default();
            // A weight that failed to apply is not claimed.
            let weight = match still_at {
                Some(shown) => format!("still {shown}% (wanted {weight}%)"),
                None => format!("{weight}%"),
            };
            // Same phase, new stage: say what moved, not "progressing → progressing".
            let text = if from == to {
                format!("{to}: stage {}/{stages} · {weight}{why}", stage + 1)
            } else {
                format!("{from} → {to} · stage {}/{stages} · {weight}{why}", stage + 1)
            };
            (text, "ui.text")
        }
        Output::Verdict { verdict, .. } => {
            (format!("verdict {}: {}", verdict.label(), verdict.summary()), "event.verdict")
        }
        Output::Effect { effect, ok, error, attempts, .. } => match error {
            Some(e) if !ok => (format!("FAILED {effect} after {attempts} tries: {e}"), "event.error"),
            _ => (format!("applied {effect}"), "event.effect"),
        },
        Output::Action { actor, command, stage, accepted, reason, detail, session, .. } => {
            let typed = detail.as_ref().map(|d| format!(": “{d}”")).unwrap_or_default();
            // Where it came from, when that is not this process's own cockpit.
            let from = session.as_deref().filter(|s| *s != "local").map(|s| format!(" via {s}")).unwrap_or_default();
            let text = match reason {
                Some(r) if !accepted => format!("{actor}{from} {command}{typed} (stage {}) refused: {r}", stage + 1),
                _ => format!("{actor}{from} {command}{typed} (from stage {})", stage + 1),
            };
            (text, if *accepted { "event.action" } else { "event.error" })
        }
        Output::Notice { level, message, .. } => {
            (message.clone(), if level == "warning" { "event.error" } else { "ui.text" })
        }
    }
}
