//! Lays the panes out and draws overlays (modal, help, palette). Laid out
//! for 80×24 first: the header keeps state, stage and weight, panes
//! collapse (events first, then the budget), every cut line ends in `…`,
//! and the footer always starts with help and quit. Below
//! [`MIN_WIDTH`]×[`MIN_HEIGHT`] it says so instead. Wide terminals get
//! the room (analysis and budget side by side, a longer list).

use super::action::Action;
use super::app::{App, Driver, Modal};
use super::keymap::Layer;
use super::panes;
use super::text::{self, cut, fit, wrap};
use flightdeck_core::rollout::Phase;
use flightdeck_core::verbs::{Answer, Confirm, Direction};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

/// The smallest terminal the cockpit lays out in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub fn render(f: &mut Frame, app: &mut App) {
    app.apply_rollout_theme();
    let area = f.area();
    f.render_widget(Block::default().style(app.theme.style("ui.background")), area);
    app.events_area = Rect::default();
    app.event_rows.clear();
    app.list_rows.clear();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(f, area, app);
        return;
    }
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
        let line = fit(Line::styled(text, app.theme.style("ui.banner.error")), banner_area.width);
        f.render_widget(Paragraph::new(line), banner_area);
    }
    let selected = app.selected_rollout().cloned();
    if app.detail && selected.is_some() {
        if let Some(r) = &selected {
            detail_panes(f, body, app, r, true);
        }
    } else {
        let list_width = match area.width {
            160.. => 44,
            110.. => 38,
            80.. => 33,
            _ => 26,
        };
        let [list, detail] = Layout::horizontal([Constraint::Length(list_width), Constraint::Min(0)]).areas(body);
        let releases = Constraint::Length(super::release::height(app, list));
        let [releases, list] = Layout::vertical([releases, Constraint::Min(0)]).areas(list);
        super::release::draw(f, releases, app);
        panes::rollouts(f, list, app);
        if let Some(r) = &selected {
            detail_panes(f, detail, app, r, false);
        }
    }
    if let Some(toast) = &app.toast {
        let scope = if toast.error { "ui.banner.error" } else { "ui.banner.info" };
        let line = fit(Line::styled(toast.text.clone(), app.theme.style(scope)), toast_area.width);
        f.render_widget(Paragraph::new(line), toast_area);
    }
    footer_line(f, footer, app);
    overlays(f, area, app);
}

/// Says how big the terminal must be (and still takes `q`).
fn too_small(f: &mut Frame, area: Rect, app: &App) {
    let (error, dim) = (app.theme.style("ui.banner.error"), app.theme.style("ui.dim"));
    let quit = app.keymap.key_for(Layer::Cockpit, Action::Quit).unwrap_or_else(|| "<C-c>".into());
    let said = [
        (format!("terminal too small (need {MIN_WIDTH}×{MIN_HEIGHT}, have {}×{})", area.width, area.height), error),
        (format!("rollouts continue; enlarge the window, or {quit} to quit"), dim),
    ];
    // Wrapped, not cut: the message is the whole screen and must be read whole.
    let lines: Vec<Line> = said
        .iter()
        .flat_map(|(text, style)| wrap(text, area.width.max(1) as usize).into_iter().map(|l| Line::styled(l, *style)))
        .collect();
    let y = area.y + area.height.saturating_sub(lines.len() as u16) / 2;
    let rect = Rect { y, height: (lines.len() as u16).min(area.height), ..area };
    f.render_widget(Paragraph::new(lines), rect);
}

/// The selected rollout's panes, stacked; what does not fit collapses:
/// events first, then the budget. Full-screen (`full`), the events keep
/// room to scroll and the budget gives way to them.
fn detail_panes(f: &mut Frame, area: Rect, app: &mut App, r: &flightdeck_core::Rollout, full: bool) {
    let checks = r.last_verdict.as_ref().map_or(1, |v| v.checks().len() as u16 + 1);
    let deltas_height = checks + 2 + 2;
    let wide = area.width >= 130;
    let split_height = panes::split_height(r, app.now);
    let top = 3 + split_height + 2;
    let room = area.height.saturating_sub(top);
    // The newest events (at least three) matter more than the budget box,
    // whose policy the header and the gate's reason already say.
    let events_min = if full { 6 } else { 5 };
    let mut budget_height = if wide { 0 } else { 5 };
    if room < deltas_height + budget_height + 1 + events_min {
        budget_height = 0;
    }
    let deltas_height = deltas_height.min(room);
    let spacer = (room > deltas_height + budget_height) as u16;
    let budget_height = if room >= deltas_height + spacer + budget_height { budget_height } else { 0 };
    let events_height = room.saturating_sub(deltas_height + spacer + budget_height);
    let events_height = if events_height >= events_min.min(4) { events_height } else { 0 };
    let [header, split, timeline, _, analysis, budget, events] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(split_height),
        Constraint::Length(2),
        Constraint::Length(spacer),
        Constraint::Length(deltas_height),
        Constraint::Length(budget_height),
        Constraint::Length(events_height),
    ])
    .areas(area);
    // Borderless lines keep a column free at the right: a number never
    // touches the edge, where a cut one could not be told from a whole one.
    let margin = |a: Rect| Rect { width: a.width.saturating_sub(1), ..a };
    panes::header(f, margin(header), app, r);
    panes::split(f, margin(split), app, r);
    panes::timeline(f, margin(timeline), app, r);
    if wide {
        // The budget box grows with the room (its policy line must not be cut beside empty columns).
        let side_width = (analysis.width / 3).clamp(44, 60);
        let [deltas, side] = Layout::horizontal([Constraint::Min(60), Constraint::Length(side_width)]).areas(analysis);
        panes::deltas(f, deltas, app, r);
        panes::budget(f, side, app, r);
    } else {
        panes::deltas(f, analysis, app, r);
        if budget.height > 0 {
            panes::budget(f, budget, app, r);
        }
    }
    if events.height > 0 {
        // Full-screen, the controller's objects (Argo's ReplicaSets, pods, analysis runs) go above the events.
        let events = if full { super::tree::above_events(f, events, app, r) } else { events };
        panes::events(f, events, app, r);
    }
}

fn top_bar(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let humans = app.needing_humans();
    let mut spans = vec![Span::styled(" flightdeck ", theme.style("ui.title").add_modifier(Modifier::BOLD))];
    // Said first, so no width hides it.
    if app.frozen {
        spans.push(Span::styled(" FROZEN (f: live; rollouts continue) ", theme.style("ui.frozen")));
        spans.push(Span::raw(" "));
    }
    if let Some(trouble) = &app.link_status {
        spans.push(Span::styled(format!(" {trouble} "), theme.style("ui.needs-human")));
        spans.push(Span::raw(" "));
    }
    if app.read_only {
        spans.push(Span::styled(" read-only ", theme.style("ui.frozen")));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::styled(format!("{} ", flightdeck_core::time::clock_label(app.now)), theme.style("ui.dim")));
    let n = app.view.rollouts.len();
    spans.push(Span::raw(format!("· {n} rollout{} ", if n == 1 { "" } else { "s" })));
    if humans > 0 {
        spans.push(Span::styled(format!("· {humans} need a human "), theme.style("ui.needs-human")));
    }
    spans.push(Span::styled(format!("· {} ", app.actor), theme.style("ui.dim")));
    if let Some(others) = presence(app) {
        spans.push(Span::styled(format!("· also here: {others} "), theme.style("ui.dim")));
    }
    f.render_widget(Paragraph::new(fit(Line::from(spans), area.width)), area);
}

/// Who else is attached to the engine: every session but one of our own
/// name, viewers marked.
pub fn presence(app: &App) -> Option<String> {
    let mut others = app.view.attached.clone();
    if let Some(me) = others.iter().position(|p| p.name == app.actor.0) {
        others.remove(me);
    }
    let names: Vec<String> = others
        .iter()
        .map(|p| match p.role {
            crate::protocol::Role::Viewer => format!("{} (viewer)", p.name),
            crate::protocol::Role::Captain => p.name.clone(),
        })
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// A backend error on the selected rollout, shown loudly.
fn banner_text(app: &App) -> Option<String> {
    let r = app.selected_rollout()?;
    let error = r.backend_error.as_ref().or(r.observe_error.as_ref())?;
    Some(format!(" {} backend error on {}: {error}", app.theme.symbols.fail, r.id))
}

/// The key hints of a layer, from the keymap's `desc`: one entry per
/// action (its first key; for `?` and `q` every one of them), those with
/// `?` or `q` and help and quit first, then in keymap order. Entries that
/// mean nothing now (Esc with nothing to go back from) are left out.
pub fn footer_hints(app: &App) -> Vec<(String, String)> {
    let layer = app.layer();
    let mut groups: Vec<(Action, Vec<String>, String)> = Vec::new();
    for b in app.keymap.bindings(layer) {
        if app.read_only && b.action.is_rollout_command() {
            continue;
        }
        let Some(desc) = hint_desc(app, layer, b.action, &b.desc) else { continue };
        let key = b.key_name();
        match groups.iter_mut().find(|g| g.0 == b.action) {
            Some(g) => g.1.push(key),
            None => groups.push((b.action, vec![key], desc)),
        }
    }
    let essential = |g: &(Action, Vec<String>, String)| {
        g.1.iter().any(|k| k == "?" || k == "q")
            || (layer == Layer::Cockpit && matches!(g.0, Action::Help | Action::Quit))
    };
    let shown = |g: &(Action, Vec<String>, String)| {
        let mut keys: Vec<&String> = g.1.iter().filter(|k| *k == "?" || *k == "q").collect();
        keys.sort();
        if keys.is_empty() {
            g.1[0].clone()
        } else {
            keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join("/")
        }
    };
    let mut hints: Vec<(String, String)> =
        groups.iter().filter(|g| essential(g)).map(|g| (shown(g), g.2.clone())).collect();
    hints.sort_by_key(|(k, _)| !k.starts_with('?'));
    // Right after help and quit: what moves the selected rollout on from
    // where it waits (approve at a gate, resume when paused, retry…).
    let way_on = app.selected_rollout().and_then(flightdeck_core::view::way_on);
    let key_verb = |a: Action| if a == Action::Pause { "resume" } else { a.name() };
    if let Some(at) = groups.iter().position(|g| layer == Layer::Cockpit && Some(key_verb(g.0)) == way_on) {
        let g = groups.remove(at);
        hints.push((shown(&g), g.2.clone()));
    }
    hints.extend(groups.iter().filter(|g| !essential(g)).map(|g| (shown(g), g.2.clone())));
    hints
}

/// What a binding is called in the footer now, or `None` to leave it out.
fn hint_desc(app: &App, layer: Layer, action: Action, desc: &str) -> Option<String> {
    if layer != Layer::Cockpit {
        return Some(desc.to_string());
    }
    let moving_events = app.detail;
    Some(match action {
        Action::Cancel if app.detail => "Back to the list".into(),
        Action::Cancel if app.event_cursor.is_some() => "Back to the newest event".into(),
        Action::Cancel if !app.filter.value().is_empty() => "Clear filter".into(),
        Action::Cancel => return None,
        Action::Open if app.detail => return None,
        Action::Up if moving_events => "Previous event".into(),
        Action::Down if moving_events => "Next event".into(),
        Action::Top if moving_events => "First event".into(),
        Action::Bottom if moving_events => "Newest event".into(),
        // The footer follows the selected rollout: what the core would
        // refuse there is not offered, and `p` says what it does now.
        a if a.is_rollout_command() && !app.offers(a) => return None,
        Action::Pause if app.selected_rollout().is_some_and(|r| matches!(r.phase, Phase::Paused { .. })) => {
            "Resume".into()
        }
        _ => desc.to_string(),
    })
}

/// Key hints for the active layer: help and quit always, then as many as
/// fit. Where `?` and `q` type text or answer a dialog, the line says how
/// to get back to them.
fn footer_line(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let mut spans = Vec::new();
    let mut used = 0;
    let pending: Vec<String> = app.keys.pending().iter().map(|k| k.to_string()).collect();
    if !pending.is_empty() {
        let text = format!("{}… ", pending.join(""));
        used += text::width(&text);
        spans.push(Span::styled(text, theme.style("ui.key")));
    }
    let hints = footer_hints(app);
    // In a dialog or a text field the cockpit's keys answer or type: say
    // how to get back to them, with the keys this keymap binds.
    let tail = match app.layer() {
        Layer::Confirm | Layer::Input => {
            let key = |a| app.keymap.key_for(Layer::Cockpit, a).unwrap_or_else(|| "?".into());
            format!("then {} help  {} quit", key(Action::Help), key(Action::Quit))
        }
        _ => String::new(),
    };
    let room = (area.width as usize).saturating_sub(if tail.is_empty() { 0 } else { text::width(&tail) + 2 });
    for (i, (key, desc)) in hints.iter().enumerate() {
        let width = text::width(key) + 1 + text::width(desc) + 2;
        // The first two (help and quit) always; the rest while they fit.
        if i >= 2 && used + width > room {
            break;
        }
        spans.push(Span::styled(key.clone(), theme.style("ui.key")));
        spans.push(Span::styled(format!(" {desc}  "), theme.style("ui.dim")));
        used += width;
    }
    if !tail.is_empty() {
        spans.push(Span::styled(tail, theme.style("ui.dim")));
    }
    f.render_widget(Paragraph::new(fit(Line::from(spans), area.width)), area);
}

/// A box centred in `area`, cleared, with the text beside it on its rows
/// blanked: a line cut by the box's edge would leave fragments (`%`,
/// `)│`) that read as part of the dialog. Pane borders stay.
fn modal_rect(f: &mut Frame, area: Rect, width: u16, height: u16) -> Rect {
    let rect = centered(area, width, height);
    f.render_widget(Clear, rect);
    let buffer = f.buffer_mut();
    for y in rect.top()..rect.bottom() {
        for x in (area.left()..rect.left()).chain(rect.right()..area.right()) {
            let cell = &mut buffer[(x, y)];
            let border = cell.symbol().chars().next().is_some_and(|c| ('\u{2500}'..='\u{257f}').contains(&c));
            if !border {
                cell.set_symbol(" ");
            }
        }
    }
    rect
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

/// A dialog box: wrapped paragraphs, then a line of keys.
fn dialog(f: &mut Frame, area: Rect, app: &App, title: &str, paragraphs: Vec<(String, Style)>, keys: Line<'static>) {
    let theme = &app.theme;
    let width = 74.min(area.width.saturating_sub(2)).max(20);
    let inner_width = width.saturating_sub(2) as usize;
    let mut lines: Vec<Line> = Vec::new();
    for (i, (text, style)) in paragraphs.into_iter().enumerate() {
        if i > 0 {
            lines.push(Line::from(""));
        }
        lines.extend(wrap(&text, inner_width).into_iter().map(|l| Line::styled(l, style)));
    }
    lines.push(fit(keys, width.saturating_sub(2)));
    let height = (lines.len() as u16 + 2).min(area.height.saturating_sub(2));
    let rect = modal_rect(f, area, width, height);
    let title = cut(&format!(" {title} "), inner_width);
    let block = panes::block(theme, title, true).style(theme.style("modal.danger"));
    let inner = block.inner(rect);
    f.render_widget(block, rect);
    if lines.len() > inner.height as usize && inner.height > 0 {
        // Keep the keys on screen; cut the text above them.
        let keys = lines.pop().expect("the keys line");
        lines.truncate(inner.height as usize - 1);
        if let Some(last) = lines.pop() {
            let text: String = last.spans.iter().map(|s| s.content.as_ref()).collect();
            lines.push(Line::from(cut(&format!("{text} …"), inner_width)));
        }
        lines.push(keys);
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn keys_line(app: &App, yes: &str, no: &str) -> Line<'static> {
    let theme = &app.theme;
    let key = |a| app.keymap.key_for(Layer::Confirm, a).unwrap_or_default();
    Line::from(vec![
        Span::styled(key(Action::Confirm), theme.style("ui.key")),
        Span::raw(format!(" {yes}   ")),
        Span::styled(key(Action::Cancel), theme.style("ui.key")),
        Span::raw(format!(" {no}")),
    ])
}

/// The keys of a confirmation that asks for the rollout's name.
fn typed_keys_line(app: &App) -> Line<'static> {
    let theme = &app.theme;
    let key = |a| app.keymap.key_for(Layer::Input, a).unwrap_or_default();
    Line::from(vec![
        Span::styled(key(Action::Confirm), theme.style("ui.key")),
        Span::raw(" confirm once typed   "),
        Span::styled(key(Action::Cancel), theme.style("ui.key")),
        Span::raw(" cancel"),
    ])
}

fn overlays(f: &mut Frame, area: Rect, app: &mut App) {
    let theme = app.theme.clone();
    match &app.modal {
        Some(Modal::Confirm { request, shown, typed }) => {
            // The core's dry run, as the rollout is now: what changes, in order.
            let (c, warning) = app.confirmation(request, shown);
            let live = app.live_rollout(&request.rollout);
            let stage = live.map_or(String::new(), |r| format!(" · now at stage {}/{}", r.stage + 1, r.stages().len()));
            let mut paragraphs = vec![(c.changes.join("; "), Style::default()), (c.outcome.clone(), Style::default())];
            if let Some(w) = warning {
                let text = format!("{} {w}", theme.symbols.warn);
                paragraphs.push((text, theme.style("verdict.inconclusive").add_modifier(Modifier::BOLD)));
            }
            paragraphs.push((format!("as {}{stage}", request.actor), theme.style("ui.dim")));
            let keys = match (&c.answer, typed) {
                (Answer::TypeName(name), Some(input)) => {
                    paragraphs.push((format!("Type {name} to confirm: > {}▏", input.value()), Style::default()));
                    typed_keys_line(app)
                }
                _ => keys_line(app, "confirm", "cancel"),
            };
            dialog(f, area, app, &c.title, paragraphs, keys);
        }
        Some(Modal::Quit { moving }) => {
            let n = moving.len();
            let rollouts = if n == 1 { "1 rollout is".to_string() } else { format!("{n} rollouts are") };
            let after = match app.driver {
                Driver::Here { resumes: false } => {
                    "Quitting ends the demo: its simulated rollouts stop where they are, and the demo starts \
                     over when run again."
                }
                _ => {
                    "While flightdeck is closed nothing drives them: traffic stays where it is, no stage \
                     advances and analysis cannot roll back. Run the same plans again and they resume from \
                     their journals."
                }
            };
            let paragraphs = vec![
                (format!("{rollouts} mid-way: {}.", moving.join(", ")), Style::default()),
                (after.to_string(), theme.style("ui.dim")),
            ];
            dialog(f, area, app, "Quit flightdeck?", paragraphs, keys_line(app, "quit", "stay"));
        }
        Some(Modal::Reason { input, .. }) => {
            let rect = modal_rect(f, area, 72, 6);
            let block = panes::block(&theme, " Freeze override: why? ", true).style(theme.style("modal.danger"));
            let lines = vec![
                Line::from("The error budget is frozen. Type the reason (it is recorded):"),
                Line::from(format!("> {}▏", input.value())),
                Line::styled("Enter to continue, Esc to cancel", theme.style("ui.dim")),
            ];
            let width = rect.width.saturating_sub(2);
            let lines: Vec<Line> = lines.into_iter().map(|l| fit(l, width)).collect();
            f.render_widget(Paragraph::new(lines).block(block), rect);
        }
        None => {}
    }
    if app.help {
        help(f, area, app);
    }
    if let Some(palette) = &app.palette {
        // Above the footer, which keeps saying what Enter, Tab and Esc do.
        let rect = Rect { y: area.bottom().saturating_sub(3), height: 2.min(area.height), ..area };
        f.render_widget(Clear, rect);
        let (offered, at) = app.palette_hints();
        let mut hint_spans = vec![Span::styled("Tab: ", theme.style("ui.dim"))];
        if offered.is_empty() {
            hint_spans.push(Span::styled("no completions", theme.style("ui.dim")));
        }
        for (i, c) in offered.iter().enumerate() {
            // After a command, only the names it is followed by.
            let shown = c.split_once(' ').map_or(c.as_str(), |(_, name)| name);
            let style = if Some(i) == at { theme.style("ui.selection") } else { theme.style("ui.dim") };
            hint_spans.push(Span::styled(shown.to_string(), style));
            hint_spans.push(Span::raw("  "));
        }
        let lines = vec![
            fit(
                Line::from(vec![
                    Span::styled(":", theme.style("ui.key")),
                    Span::raw(format!("{}▏", palette.input.value())),
                ]),
                rect.width,
            ),
            fit(Line::from(hint_spans), rect.width),
        ];
        f.render_widget(Paragraph::new(lines).block(Block::default().style(theme.style("modal"))), rect);
    }
}

/// Every binding of the cockpit layer with its description, then how the
/// palette, the freeze and the mouse work. Scrolls (j/k, PgUp/PgDn, wheel).
fn help(f: &mut Frame, area: Rect, app: &mut App) {
    let theme = app.theme.clone();
    let bindings = app.keymap.bindings(Layer::Cockpit).to_vec();
    let width = 76.min(area.width.saturating_sub(2));
    let inner_width = width.saturating_sub(2) as usize;
    // One line per action, its keys together.
    let mut actions: Vec<(Action, Vec<String>, String)> = Vec::new();
    // A viewer's help lists what a viewer can do.
    for b in bindings.iter().filter(|b| !(app.read_only && b.action.is_rollout_command())) {
        match actions.iter_mut().find(|a| a.0 == b.action) {
            Some(a) => a.1.push(b.key_name()),
            None => actions.push((b.action, vec![b.key_name()], b.desc.clone())),
        }
    }
    let mut lines: Vec<Line> = actions
        .iter()
        .map(|(action, keys, desc)| {
            // From the core's verb table: whether it asks is not the cockpit's to say.
            let danger = match action.verb() {
                Some(v) if v.confirm == Confirm::Always && v.typed_in_production => "  (confirms; prod: type name)",
                Some(v) if v.confirm == Confirm::Always => "  (asks to confirm)",
                Some(v) if v.confirm == Confirm::InProduction => "  (confirms in production)",
                Some(v) if v.direction == Direction::MovesForward => "  (confirms: prod gate, 100 %)",
                _ => "",
            };
            fit(
                Line::from(vec![
                    Span::styled(format!("{:>18}  ", keys.join(" ")), theme.style("ui.key")),
                    Span::raw(desc.clone()),
                    Span::styled(danger, theme.style("ui.dim")),
                ]),
                inner_width as u16,
            )
        })
        .collect();
    // The legend, in this theme's own symbols.
    let sy = &theme.symbols;
    let legend = format!(
        "Symbols: {} progressing  {} paused  {} waiting at a gate  {} promoted  {} rolled back  {} aborted  \
         {} failed  {} pending · verdict {} pass  {} fail  {} inconclusive  · no window yet · {} production · \
         `1%!` a weight the backend has not shown yet · `?9:58` time to the next gate · ▲ needs a human \
         (waits for one, or a rollback nobody has acknowledged)",
        sy.progressing,
        sy.paused,
        sy.awaiting,
        sy.promoted,
        sy.rolled_back,
        sy.aborted,
        sy.failed,
        sy.pending,
        sy.pass,
        sy.fail,
        sy.warn,
        sy.production
    );
    let notes = [
        legend.as_str(),
        "Only what can apply asks to confirm; anything else says why in the status line.",
        "Palette (:) runs a command on the selected rollout, or on the one named: `:pause user-profile`. \
         Tab cycles through commands and rollout names. `:q` quits.",
        "Enter opens the selected rollout full-screen: j/k move through its events, the one under the \
         cursor is shown in full, PgUp/PgDn page, Esc goes back. Esc also clears a filter.",
        "Freeze view (f) holds the whole display still, clock and timers included; rollouts continue.",
        "Mouse: the wheel scrolls what is under it, a click selects. `mouse = false` in config.toml \
         leaves text selection to the terminal.",
    ];
    for note in notes {
        lines.push(Line::from(""));
        lines.extend(wrap(note, inner_width).into_iter().map(|l| Line::styled(l, theme.style("ui.dim"))));
    }
    let height = (lines.len() as u16 + 2).min(area.height.saturating_sub(2));
    let rect = centered(area, width, height);
    let visible = height.saturating_sub(2);
    let max_scroll = (lines.len() as u16).saturating_sub(visible);
    app.help_scroll = app.help_scroll.min(max_scroll);
    app.help_page = visible;
    // Help covers all but the top bar and the footer: no half-hidden text
    // beside it reads as a cut number.
    let middle = Rect { y: area.y + 1, height: area.height.saturating_sub(2), ..area };
    f.render_widget(Clear, middle);
    let title = if max_scroll > 0 {
        format!(" Help {}–{} of {} (j/k scroll) ", app.help_scroll + 1, app.help_scroll + visible, lines.len())
    } else {
        " Help ".to_string()
    };
    let block = panes::block(&theme, cut(&title, inner_width), true).style(theme.style("modal"));
    f.render_widget(Paragraph::new(lines).block(block).scroll((app.help_scroll, 0)), rect);
}
