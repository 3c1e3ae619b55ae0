//! Releases in the cockpit: each release is one row above the rollouts
//! list (its state, the live wave, what it waits for, the time to the next
//! wave) that opens into its waves and their rollouts, one line per
//! region with the rollout's state, weight and latest verdict, while a
//! rollout of that release is selected (or when it is the only release
//! and there is room). Drawn from the snapshot's releases only.

use super::app::App;
use super::panes::{block, phase_look};
use super::text::{cut, fit, wrap};
use super::theme::Theme;
use crate::protocol::CommandRequest;
use flightdeck_core::analysis::Verdict;
use flightdeck_core::release::{Release, ReleasePhase};
use flightdeck_core::rollout::{Command, Rollout};
use flightdeck_core::time::{countdown, Timestamp};
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use std::sync::Arc;

/// The scope and symbol a release's phase is drawn with (the rollout
/// phases' own: a halted release looks like a rollback).
fn release_look<'a>(theme: &'a Theme, phase: &ReleasePhase) -> (Style, &'a str) {
    let s = &theme.symbols;
    let (scope, symbol) = match phase {
        ReleasePhase::Pending => ("state.pending", &s.pending),
        ReleasePhase::AwaitingApproval { .. } => ("state.awaiting", &s.awaiting),
        ReleasePhase::Running { .. } | ReleasePhase::Baking { .. } => ("state.progressing", &s.progressing),
        ReleasePhase::Paused { .. } => ("state.paused", &s.paused),
        ReleasePhase::Promoted { .. } => ("state.promoted", &s.promoted),
        ReleasePhase::Halted { .. } => ("state.rolled-back", &s.rolled_back),
        ReleasePhase::Aborted { .. } => ("state.aborted", &s.aborted),
    };
    (theme.style(scope), symbol.as_str())
}

/// Lines of what a release waits for, at most.
const WAITS_LINES: usize = 3;

/// Whether a release shows its waves: a rollout of it is selected.
fn opened(app: &App, release: &Release) -> bool {
    app.selected.as_ref().is_some_and(|id| release.states.contains_key(id))
}

/// The release's row: `▶ storefront-4.1 baking 1/3 8:00` (the time to the next wave).
fn row(theme: &Theme, r: &Release, now: Timestamp) -> Line<'static> {
    let (style, icon) = release_look(theme, &r.phase);
    let waves = r.spec.waves.len();
    let when = match &r.phase {
        ReleasePhase::AwaitingApproval { .. } => "approve".to_string(),
        _ => r.next_wave_in(now).map(countdown).unwrap_or_default(),
    };
    Line::from(vec![
        Span::styled(format!(" {icon} "), style),
        Span::styled(format!("{} ", r.name()), theme.style("ui.title")),
        Span::styled(r.phase.label().to_string(), style),
        Span::raw(format!(" {}/{waves} ", (r.wave + 1).min(waves))),
        Span::styled(when, theme.style("ui.dim")),
    ])
}

/// One region of a wave: its rollout's state, weight and latest verdict.
fn member_line(theme: &Theme, r: &Release, id: &str, region: &str, rollout: Option<&Rollout>) -> Line<'static> {
    let never = !r.started.contains(id) && r.phase.is_finished();
    let Some(rollout) = rollout else {
        return Line::styled(format!("     {region}  (not in this view)"), theme.style("ui.dim"));
    };
    if never {
        return Line::styled(format!("     · {region}  never starts"), theme.style("ui.dim"));
    }
    let (style, icon) = phase_look(theme, &rollout.phase);
    let (verdict_style, verdict) = match &rollout.last_verdict {
        Some(Verdict::Pass { .. }) => (theme.style("verdict.pass"), theme.symbols.pass.clone()),
        Some(Verdict::Fail { .. }) => (theme.style("verdict.fail"), theme.symbols.fail.clone()),
        Some(Verdict::Inconclusive { .. }) => (theme.style("verdict.inconclusive"), theme.symbols.warn.clone()),
        None => (theme.style("ui.dim"), "·".to_string()),
    };
    Line::from(vec![
        Span::styled(format!("     {icon} "), style),
        Span::raw(format!("{region} {:>3}% ", rollout.canary_weight)),
        Span::styled(format!("{verdict} "), verdict_style),
        Span::styled(rollout.phase.label().to_string(), style),
    ])
}

/// Every line of one release: its row, what it waits for, and (opened)
/// each wave with its regions.
fn release_lines(app: &App, r: &Release, open: bool, width: u16) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let now = app.now;
    let mut lines = vec![row(theme, r, now)];
    // What it waits for, over up to three lines: the region that halted it
    // comes first and is never cut off; a long reason ends in `…` (the
    // rollout's own panes show it whole).
    let room = (width as usize).saturating_sub(3);
    let parts = wrap(&r.waits_for(now), room);
    let more = parts.len() > WAITS_LINES;
    for (i, part) in parts.into_iter().take(WAITS_LINES).enumerate() {
        let part = if more && i + 1 == WAITS_LINES { cut(&format!("{part} …"), room) } else { part };
        lines.push(Line::styled(format!("   {part}"), theme.style("ui.dim")));
    }
    if !open {
        return lines;
    }
    for (i, wave) in r.spec.waves.iter().enumerate() {
        let status = if i < r.wave || (i == r.wave && matches!(r.phase, ReleasePhase::Promoted { .. })) {
            "promoted".to_string()
        } else if i == r.wave {
            r.phase.label().to_string()
        } else if r.phase.is_finished() {
            "never starts".to_string()
        } else if wave.approval {
            "waits (approval)".to_string()
        } else {
            "waits".to_string()
        };
        let live = if i == r.wave && !r.phase.is_finished() { ">" } else { " " };
        lines.push(Line::from(vec![
            Span::styled(format!(" {live} {} {}  ", i + 1, wave.name), theme.style("ui.title")),
            Span::styled(status, theme.style("ui.dim")),
        ]));
        for m in &wave.members {
            let rollout = app.view.rollouts.iter().map(Arc::as_ref).find(|x| x.id == m.rollout);
            lines.push(member_line(theme, r, &m.rollout, &m.region, rollout));
        }
    }
    lines
}

/// Lines every release needs now.
fn all_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let only = app.view.releases.len() == 1;
    app.view.releases.iter().flat_map(|r| release_lines(app, r, opened(app, r) || only, width)).collect()
}

/// Rows the releases pane takes of `column` (the list's): nothing
/// without releases, at most half the column.
pub fn height(app: &App, column: Rect) -> u16 {
    if app.view.releases.is_empty() {
        return 0;
    }
    let want = all_lines(app, column.width.saturating_sub(2)).len() as u16 + 2;
    want.min(column.height / 2).max(4.min(column.height))
}

/// Draws the releases pane in `area` (see [`height`]).
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    if area.height == 0 || app.view.releases.is_empty() {
        return;
    }
    let title = format!(" Releases {} ", app.view.releases.len());
    let b = block(&app.theme, cut(&title, area.width.saturating_sub(2) as usize), false);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let lines: Vec<Line> =
        all_lines(app, inner.width).into_iter().take(inner.height as usize).map(|l| fit(l, inner.width)).collect();
    f.render_widget(Paragraph::new(lines), inner);
}

/// A palette line that names a release (`promote release/storefront-4.1`,
/// or `promote storefront-4.1` when no rollout goes by that name): the
/// command for the release, for the wave this cockpit shows live (a
/// promote for a wave that has moved on is refused as stale). The line
/// names the release in full, as a typed name confirms in production;
/// the release takes pause, resume, promote and abort and refuses the
/// rest with the reason. `None` when `name` names no release.
pub fn palette_request(app: &App, command: &Command, name: &str) -> Option<CommandRequest> {
    let name = name.trim();
    let bare = name.strip_prefix("release/").unwrap_or(name);
    let named_rollout = app.view.rollouts.iter().any(|r| r.id == name || r.plan().name == name);
    if name.is_empty() || (bare == name && named_rollout) {
        return None;
    }
    let release = app.view.releases.iter().find(|r| r.name() == bare)?;
    Some(CommandRequest {
        rollout: crate::release::id_of(release.name()),
        actor: app.actor.clone(),
        command: command.clone(),
        expected_stage: release.wave,
        expected_revision: String::new(),
        expected_step: None,
    })
}
