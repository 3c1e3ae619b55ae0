//! Lays the panes out and draws overlays (modal, help, palette). Works at
//! 80×24 (panes collapse: events first, then the budget moves under the
//! deltas) and uses the room at 200×60.

use super::app::{completions, App, Modal};
use super::keymap::Layer;
use super::panes;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &mut App) {
    app.apply_rollout_theme();
    let area = f.area();
    f.render_widget(Block::default().style(app.theme.style("ui.background")), area);
    let banner = banner_text(app);
    let [top, banner_area, body, toast_area, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner.is_some() as u16),
        Constraint::Min(0),
        Constraint::Length(app.toast.is_some() as u16),
        Constraint::Length(1),
    ])
    .areas(area);
    top_bar(f, top, app);
    if let Some(text) = banner {
        f.render_widget(Paragraph::new(Line::styled(text, app.theme.style("ui.banner.error"))), banner_area);
    }
    let list_width = if area.width >= 160 {
        44
    } else if area.width >= 110 {
        38
    } else {
        32
    };
    let [list, detail] = Layout::horizontal([Constraint::Length(list_width), Constraint::Min(0)]).areas(body);
    panes::rollouts(f, list, app);
    if let Some(r) = app.selected_rollout().cloned() {
        detail_panes(f, detail, app, &r);
    }
    if let Some(toast) = &app.toast {
        let scope = if toast.error { "ui.banner.error" } else { "ui.banner.info" };
        f.render_widget(Paragraph::new(Line::styled(toast.text.clone(), app.theme.style(scope))), toast_area);
    }
    footer_line(f, footer, app);
    overlays(f, area, app);
}

/// The selected rollout's panes, stacked; what does not fit collapses.
fn detail_panes(f: &mut Frame, area: Rect, app: &App, r: &flightdeck_core::Rollout) {
    let checks = r.last_verdict.as_ref().map_or(1, |v| v.checks().len() as u16 + 1);
    let deltas_height = checks + 2 + 2;
    let wide = area.width >= 130;
    let budget_height = if wide { 0 } else { 5 };
    let fixed = 2 + 1 + 2 + 1 + deltas_height + budget_height;
    let events_height = area.height.saturating_sub(fixed);
    let [header, split, timeline, _, analysis, budget, events] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Length(deltas_height),
        Constraint::Length(budget_height),
        Constraint::Length(if events_height >= 4 { events_height } else { 0 }),
    ])
    .areas(area);
    panes::header(f, header, app, r);
    panes::split(f, split, app, r);
    panes::timeline(f, timeline, app, r);
    if wide {
        let [deltas, side] = Layout::horizontal([Constraint::Min(60), Constraint::Length(44)]).areas(analysis);
        panes::deltas(f, deltas, app, r);
        panes::budget(f, side, app, r);
    } else {
        panes::deltas(f, analysis, app, r);
        panes::budget(f, budget, app, r);
    }
    if events.height > 0 {
        panes::events(f, events, app, r);
    }
}

fn top_bar(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let humans = app.view.rollouts.iter().filter(|r| r.needs_human().is_some()).count();
    let mut spans = vec![
        Span::styled(" flightdeck ", theme.style("ui.title").add_modifier(Modifier::BOLD)),
        Span::styled(format!("· {} ", flightdeck_core::time::stamp(app.now)), theme.style("ui.dim")),
        Span::raw(format!("· {} rollouts ", app.view.rollouts.len())),
    ];
    if humans > 0 {
        spans.push(Span::styled(format!("· {humans} need a human "), theme.style("ui.needs-human")));
    }
    spans.push(Span::styled(format!("· {} ", app.actor), theme.style("ui.dim")));
    if app.read_only {
        spans.push(Span::styled(" read-only ", theme.style("ui.frozen")));
    }
    if app.frozen {
        spans.push(Span::styled(" VIEW FROZEN (rollouts continue) ", theme.style("ui.frozen")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A backend error on the selected rollout, shown loudly.
fn banner_text(app: &App) -> Option<String> {
    let r = app.selected_rollout()?;
    let error = r.backend_error.as_ref().or(r.observe_error.as_ref())?;
    Some(format!(" {} backend error on {}: {error}", app.theme.symbols.fail, r.id))
}

/// Key hints for the active layer, from the keymap's `desc`.
fn footer_line(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let mut spans = Vec::new();
    let pending: Vec<String> = app.keys.pending().iter().map(|k| k.to_string()).collect();
    if !pending.is_empty() {
        spans.push(Span::styled(format!("{}… ", pending.join("")), theme.style("ui.key")));
    }
    let mut seen = std::collections::HashSet::new();
    for b in app.keymap.bindings(app.layer()) {
        if !seen.insert(b.action) || (app.read_only && b.action.is_rollout_command()) {
            continue;
        }
        let key: String = b.keys.iter().map(|k| k.to_string()).collect();
        spans.push(Span::styled(key, theme.style("ui.key")));
        spans.push(Span::styled(format!(" {}  ", b.desc), theme.style("ui.dim")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

fn overlays(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    match &app.modal {
        Some(Modal::Confirm { title, change, request }) => {
            let rect = centered(area, 72, 8);
            f.render_widget(Clear, rect);
            let block = panes::block(theme, format!(" {title} "), true).style(theme.style("modal.danger"));
            let yes = app.keymap.key_for(Layer::Confirm, super::action::Action::Confirm).unwrap_or_default();
            let no = app.keymap.key_for(Layer::Confirm, super::action::Action::Cancel).unwrap_or_default();
            let lines = vec![
                Line::from(change.clone()),
                Line::from(""),
                Line::styled(
                    format!("as {} · sent for stage {}", request.actor, request.expected_stage + 1),
                    theme.style("ui.dim"),
                ),
                Line::from(vec![
                    Span::styled(yes, theme.style("ui.key")),
                    Span::raw(" confirm   "),
                    Span::styled(no, theme.style("ui.key")),
                    Span::raw(" cancel"),
                ]),
            ];
            f.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: true }), rect);
        }
        Some(Modal::Reason { input, .. }) => {
            let rect = centered(area, 72, 6);
            f.render_widget(Clear, rect);
            let block = panes::block(theme, " Freeze override: why? ", true).style(theme.style("modal.danger"));
            let lines = vec![
                Line::from("The error budget is frozen. Type the reason (it is recorded):"),
                Line::from(format!("> {}▏", input.value())),
                Line::styled("Enter to continue, Esc to cancel", theme.style("ui.dim")),
            ];
            f.render_widget(Paragraph::new(lines).block(block), rect);
        }
        None => {}
    }
    if app.help {
        help(f, area, app);
    }
    if let Some(input) = &app.palette {
        let rect = Rect { y: area.bottom().saturating_sub(3), height: 3.min(area.height), ..area };
        f.render_widget(Clear, rect);
        let hints = completions(input.value()).join("  ");
        let lines = vec![
            Line::from(vec![Span::styled(":", theme.style("ui.key")), Span::raw(format!("{}▏", input.value()))]),
            Line::styled(hints, theme.style("ui.dim")),
        ];
        f.render_widget(Paragraph::new(lines).block(Block::default().style(theme.style("modal"))), rect);
    }
}

/// Every binding of the cockpit layer with its description.
fn help(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let bindings = app.keymap.bindings(Layer::Cockpit);
    let rect = centered(area, 64, bindings.len() as u16 + 4);
    f.render_widget(Clear, rect);
    let mut lines: Vec<Line> = bindings
        .iter()
        .map(|b| {
            let key: String = b.keys.iter().map(|k| k.to_string()).collect();
            let danger = if b.action.is_dangerous() { "  (asks to confirm)" } else { "" };
            Line::from(vec![
                Span::styled(format!("{key:>10}  "), theme.style("ui.key")),
                Span::raw(b.desc.clone()),
                Span::styled(danger, theme.style("ui.dim")),
            ])
        })
        .collect();
    lines.push(Line::styled("freeze view stops the display only; rollouts continue", theme.style("ui.dim")));
    let block = panes::block(theme, " Help ", true).style(theme.style("modal"));
    f.render_widget(Paragraph::new(lines).block(block), rect);
}
