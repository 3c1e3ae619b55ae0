//! The cockpit's panes, each a function from view state to widgets.

use super::app::{target_label, App};
use super::theme::Theme;
use crate::protocol::Output;
use flightdeck_core::analysis::{Check, CheckOutcome, DeltaUnit, Metric, Verdict};
use flightdeck_core::budget::DeployPolicy;
use flightdeck_core::plan::{StageAction, Strategy};
use flightdeck_core::rollout::{Gate, Phase, Rollout};
use flightdeck_core::time::{clock, stamp, Timestamp};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
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

/// Time left in words for the list: bake countdown, or what it waits on.
fn time_left(r: &Rollout, now: Timestamp) -> String {
    match &r.phase {
        Phase::Progressing { .. } => r.eta(now).map(clock).unwrap_or_default(),
        Phase::AwaitingApproval { .. } => "approve".into(),
        Phase::Paused { .. } => "paused".into(),
        _ => String::new(),
    }
}

/// The rollouts list, grouped: those needing a human on top, then by target.
pub fn rollouts(f: &mut Frame, area: Rect, app: &mut App) {
    let title = if app.filtering || !app.filter.value().is_empty() {
        format!(" Rollouts / {}{} ", app.filter.value(), if app.filtering { "▏" } else { "" })
    } else {
        " Rollouts ".to_string()
    };
    let b = block(&app.theme, title, true);
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
fn list_lines<'a>(app: &App, inner: Rect) -> (Vec<Line<'a>>, Vec<(u16, String)>) {
    let theme = &app.theme;
    let mut entries = Vec::new();
    let mut group: Option<String> = None;
    for r in app.visible() {
        let heading =
            if r.needs_human().is_some() { "▲ needs a human".to_string() } else { r.plan().target.group.clone() };
        if group.as_ref() != Some(&heading) {
            entries.push(Entry::Heading(r, heading.clone()));
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
    let skip = (selected + 2).saturating_sub(inner.height as usize);
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    for (i, entry) in entries.iter().enumerate().skip(skip).take(inner.height as usize) {
        match entry {
            Entry::Heading(r, heading) => lines.push(group_heading(theme, r, heading)),
            Entry::Row(r) => {
                rows.push((inner.y + (i - skip) as u16, r.id.clone()));
                let selected = app.selected.as_deref() == Some(r.id.as_str());
                lines.push(list_row(theme, r, selected, app.now, inner.width));
            }
        }
    }
    (lines, rows)
}

fn group_heading<'a>(theme: &Theme, r: &Rollout, heading: &str) -> Line<'a> {
    if r.needs_human().is_some() {
        return Line::styled(heading.to_string(), theme.style("ui.needs-human"));
    }
    let mut spans = vec![Span::styled(heading.to_string(), theme.style("ui.group"))];
    if r.plan().target.production {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(theme.symbols.production.clone(), theme.style("ui.group.production")));
    }
    Line::from(spans)
}

fn list_row<'a>(theme: &Theme, r: &Rollout, selected: bool, now: Timestamp, width: u16) -> Line<'a> {
    let (state_style, icon) = phase_look(theme, &r.phase);
    let (verdict_style, verdict) = verdict_look(theme, r.last_verdict.as_ref());
    let name_width = (width as usize).saturating_sub(22).max(6);
    let mut name = r.plan().name.clone();
    if name.chars().count() > name_width {
        name = name.chars().take(name_width - 1).collect::<String>() + "…";
    }
    let spans = vec![
        Span::styled(format!("{icon} "), state_style),
        Span::raw(format!("{name:<name_width$} ")),
        Span::raw(format!("{}/{} ", r.stage + 1, r.stages().len())),
        Span::raw(format!("{:>3}% ", r.canary_weight)),
        Span::styled(format!("{verdict} "), verdict_style),
        Span::styled(format!("{:>7}", time_left(r, now)), theme.style("ui.dim")),
    ];
    let line = Line::from(spans);
    if selected {
        line.style(theme.style("ui.selection"))
    } else {
        line
    }
}

/// Name, strategy, backend, revisions, state and who acted last.
pub fn header(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let (state_style, icon) = phase_look(theme, &r.phase);
    let mut first = vec![
        Span::styled(r.plan().name.clone(), theme.style("ui.title").add_modifier(Modifier::BOLD)),
        Span::raw(format!("  {} · {}", r.plan().strategy_name(), target_label(r))),
    ];
    if r.plan().target.production {
        first.push(Span::raw(" "));
        first.push(Span::styled(theme.symbols.production.clone(), theme.style("ui.group.production")));
    }
    first.push(Span::raw(format!("  {} → {}  ", r.stable_revision, r.canary_revision)));
    first.push(Span::styled(format!("{icon} {}", r.phase.label()), state_style));
    let mut second = vec![];
    if let Some(why) = phase_why(&r.phase) {
        second.push(Span::styled(why, state_style));
        second.push(Span::raw("  "));
    }
    if let Some(detail) = &r.native_detail {
        second.push(Span::styled(format!("{detail}  "), theme.style("ui.text")));
    }
    if let Some(a) = &r.last_action {
        second.push(Span::styled(
            format!("last: {} {} at {} (stage {})", a.actor, a.action, stamp(a.at), a.stage + 1),
            theme.style("ui.dim"),
        ));
    }
    f.render_widget(Paragraph::new(vec![Line::from(first), Line::from(second)]), area);
}

fn phase_why(phase: &Phase) -> Option<String> {
    match phase {
        // The core's default reasons already name the actor ("paused by alice").
        Phase::Paused { by, reason, .. } if reason.contains(&by.0) => Some(reason.clone()),
        Phase::Paused { by, reason, .. } => Some(format!("paused by {by}: {reason}")),
        Phase::RolledBack { reason, .. } | Phase::Aborted { reason, .. } | Phase::Failed { reason, .. } => {
            Some(reason.clone())
        }
        Phase::AwaitingApproval { gate, next, .. } => Some(match gate {
            Gate::Stage => format!("waiting for approval to enter stage {}", next + 1),
            Gate::Budget => "error budget low: approve each promotion".into(),
            Gate::Freeze => "error budget frozen: override with a reason".into(),
        }),
        _ => None,
    }
}

/// `v1 90% │ v2 10%` as a bar, in the strategy's words.
pub fn split(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let w = r.canary_weight as usize;
    let (left, right) = match r.plan().strategy {
        Strategy::BlueGreen { .. } => {
            let (active, preview) = if w == 100 {
                (&r.canary_revision, &r.stable_revision)
            } else {
                (&r.stable_revision, &r.canary_revision)
            };
            (format!("active {active} 100%"), format!("preview {preview}"))
        }
        Strategy::Rolling { .. } => (
            format!("old {} {}% of replicas", r.stable_revision, 100 - w),
            format!("updated {} {w}%", r.canary_revision),
        ),
        Strategy::Canary { .. } => {
            (format!("{} {}%", r.stable_revision, 100 - w), format!("{} {w}%", r.canary_revision))
        }
    };
    let observed = match r.observed_weight {
        Some(o) if o as usize != w => format!("  (backend shows {o}%)"),
        _ => String::new(),
    };
    let label_width = left.chars().count() + right.chars().count() + observed.chars().count() + 4;
    let bar = (area.width as usize).saturating_sub(label_width).max(4);
    // Round up so a 1 % canary still shows.
    let canary_cells =
        if matches!(r.plan().strategy, Strategy::BlueGreen { .. }) { 0 } else { (bar * w).div_ceil(100) };
    let line = Line::from(vec![
        Span::styled(format!("{left} "), theme.style("split.stable")),
        Span::styled("█".repeat(bar - canary_cells), theme.style("split.stable")),
        Span::raw("│"),
        Span::styled("█".repeat(canary_cells), theme.style("split.canary")),
        Span::styled(format!(" {right}"), theme.style("split.canary")),
        Span::styled(observed, theme.style("verdict.inconclusive")),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

/// Every stage with its weight, the current one marked, gates, countdown, ETA.
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
    let mut second = vec![Span::styled(format!("Stage {}/{}", r.stage + 1, r.stages().len()), theme.style("ui.text"))];
    if let (Some(left), Some(stage)) = (r.bake_remaining(app.now), r.current_stage()) {
        second.push(Span::raw(format!("  bake {} left of {}", clock(left), clock(stage.bake))));
    }
    if let Some(eta) = r.eta(app.now) {
        second.push(Span::raw(format!("  ETA 100% in {}", clock(eta))));
    }
    second.push(Span::styled(format!("  {}", r.next_step(app.now)), theme.style("ui.title")));
    f.render_widget(Paragraph::new(vec![Line::from(spans), Line::from(second)]), area);
}

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of the canary's last windows, scaled to its own range.
pub fn sparkline(values: &[f64], width: usize) -> String {
    let values = &values[values.len().saturating_sub(width)..];
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
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
        (Metric::Requests, Some(v)) => format!("{v:.1}/s"),
        (Metric::ErrorRate, Some(v)) => format!("{v:.2}%"),
        (_, Some(v)) => format!("{v:.0}ms"),
    }
}

fn delta(c: &Check) -> String {
    match (c.delta, c.unit) {
        (None, _) => "—".into(),
        (Some(d), DeltaUnit::Pp) => format!("{d:+.2}pp"),
        (Some(d), DeltaUnit::Percent) => format!("{d:+.1}%"),
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

/// Stable's baseline against the stage's canary per metric, with delta,
/// limit, sample and how far the evidence has come toward a pass or a fail,
/// a verdict per row and per-window sparklines; the interval, the time to a
/// decision and the reason in words below.
pub fn deltas(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let verdict = r.last_verdict.as_ref();
    let (vstyle, vsym) = verdict_look(theme, verdict);
    let title = Line::from(vec![
        Span::raw(" Canary analysis "),
        Span::styled(format!("{vsym} {} ", verdict.map_or("waiting for a window", |v| v.label())), vstyle),
    ]);
    let b = block(theme, title, false);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let Some(verdict) = verdict else {
        let text = "no analysis window yet";
        f.render_widget(Paragraph::new(Line::styled(text, theme.style("ui.dim"))), inner);
        return;
    };
    let history = app.history.get(&r.id);
    let spark_width = (inner.width as usize).saturating_sub(70).min(24);
    let requests = verdict.checks().iter().find(|c| c.metric == Metric::Requests);
    let sample = requests.and_then(|c| c.canary).map_or(String::new(), |v| format!("{v:.0}/s"));
    let rows: Vec<Row> = verdict
        .checks()
        .iter()
        .map(|c| {
            let (style, sym) = outcome_look(theme, c.outcome);
            let evidence = evidence_cell(c);
            let spark = history
                .and_then(|h| h.series.get(&c.metric))
                .map(|s| sparkline(&s.iter().map(|(_, canary)| *canary).collect::<Vec<_>>(), spark_width))
                .unwrap_or_default();
            let sym = if c.threshold.is_none() && c.outcome == CheckOutcome::Pass { " " } else { sym };
            Row::new(vec![
                Cell::from(c.metric.label()),
                Cell::from(number(c.metric, c.stable)),
                Cell::from(number(c.metric, c.canary)),
                Cell::from(delta(c)),
                Cell::from(limit(c)),
                Cell::from(if c.metric == Metric::Requests { sample.clone() } else { evidence }),
                Cell::from(Span::styled(sym.to_string(), style)),
                Cell::from(Span::styled(spark, theme.style("sparkline.canary"))),
            ])
        })
        .collect();
    let header = Row::new(vec!["metric", "stable", "canary", "Δ", "limit", "evidence", "", "trend"])
        .style(theme.style("ui.dim").add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(2),
        Constraint::Min(0),
    ];
    let table_height = (rows.len() as u16 + 1).min(inner.height);
    let table = Table::new(rows, widths).header(header).column_spacing(1);
    f.render_widget(table, Rect { height: table_height, ..inner });
    let reason_area = Rect { y: inner.y + table_height, height: inner.height.saturating_sub(table_height), ..inner };
    if reason_area.height > 0 {
        let mut lines = vec![Line::styled(stage_evidence(verdict), theme.style("ui.dim"))];
        if !matches!(verdict, Verdict::Pass { .. }) {
            lines.push(Line::styled(format!("Why: {}", verdict.summary()), vstyle));
        }
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), reason_area);
    }
}

/// "✓62%" (toward a pass) or "✗40%" (toward a fail), whichever leads; the
/// row's outcome already says when one is reached.
fn evidence_cell(c: &Check) -> String {
    match (c.toward_pass, c.toward_fail) {
        _ if c.outcome == CheckOutcome::Fail => "fail".to_string(),
        _ if c.outcome == CheckOutcome::Pass && c.threshold.is_some() => "pass".to_string(),
        (Some(p), Some(f)) if f > p => format!("✗{:.0}%", (f * 100.0).min(99.0)),
        (Some(p), _) => format!("✓{:.0}%", (p * 100.0).min(99.0)),
        (None, Some(f)) => format!("✗{:.0}%", (f * 100.0).min(99.0)),
        (None, None) => String::new(),
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
    let bar_width = (inner.width as usize).saturating_sub(24).clamp(4, 40);
    let filled = (bar_width as f64 * budget.remaining_pct.clamp(0.0, 100.0) / 100.0).round() as usize;
    let gauge = format!("{}{}", "█".repeat(filled), "░".repeat(bar_width - filled));
    let slo = &r.plan().slo;
    let mut lines = vec![
        Line::from(vec![
            Span::styled(gauge, style),
            Span::raw(if budget.unknown {
                " left: unknown (no valid availability reading)".to_string()
            } else {
                format!(" {:.0} s left ({:.1} %)", budget.remaining_s, budget.remaining_pct)
            }),
        ]),
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
    f.render_widget(Paragraph::new(lines), inner);
}

fn humantime(d: Duration) -> String {
    let days = d.as_secs() / 86_400;
    if days > 0 && d.as_secs().is_multiple_of(86_400) {
        format!("{days}d")
    } else {
        clock(d)
    }
}

/// The event and audit log of the selected rollout, newest last.
pub fn events(f: &mut Frame, area: Rect, app: &App, r: &Rollout) {
    let theme = &app.theme;
    let b = block(theme, " Events ", false);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let lines: Vec<Line> = app
        .events
        .iter()
        .filter(|o| o.rollout() == r.id && !matches!(o, Output::Verdict { verdict: Verdict::Pass { .. }, .. }))
        .map(|o| event_line(theme, o))
        .collect();
    let skip = lines.len().saturating_sub(inner.height as usize);
    f.render_widget(Paragraph::new(lines[skip..].to_vec()), inner);
}

fn event_line<'a>(theme: &Theme, o: &Output) -> Line<'a> {
    let at = |t: &Timestamp| Span::styled(format!("{:>8} ", stamp(*t)), theme.style("event.time"));
    match o {
        Output::Started { at: t, resumed, .. } => {
            Line::from(vec![at(t), Span::raw(if *resumed { "resumed from journal" } else { "started" })])
        }
        Output::Transition { at: t, from, to, stage, stages, weight, reason, .. } => Line::from(vec![
            at(t),
            Span::raw(format!("{from} → {to} · stage {}/{stages} · {weight}%", stage + 1)),
            Span::styled(reason.as_ref().map(|r| format!(" — {r}")).unwrap_or_default(), theme.style("ui.dim")),
        ]),
        Output::Verdict { at: t, verdict, .. } => Line::from(vec![
            at(t),
            Span::styled(format!("verdict {}: {}", verdict.label(), verdict.summary()), theme.style("event.verdict")),
        ]),
        Output::Effect { at: t, effect, ok, error, attempts, .. } => {
            let (text, scope) = match error {
                Some(e) if !ok => (format!("FAILED {effect} after {attempts} tries: {e}"), "event.error"),
                _ => (format!("applied {effect}"), "event.effect"),
            };
            Line::from(vec![at(t), Span::styled(text, theme.style(scope))])
        }
        Output::Action { at: t, actor, command, stage, accepted, reason, .. } => {
            let text = match reason {
                Some(r) if !accepted => format!("{actor} {command} (stage {}) refused: {r}", stage + 1),
                _ => format!("{actor} {command} (from stage {})", stage + 1),
            };
            let scope = if *accepted { "event.action" } else { "event.error" };
            Line::from(vec![at(t), Span::styled(text, theme.style(scope))])
        }
        Output::Notice { at: t, level, message, .. } => {
            let scope = if level == "warning" { "event.error" } else { "ui.text" };
            Line::from(vec![at(t), Span::styled(message.clone(), theme.style(scope))])
        }
    }
}
