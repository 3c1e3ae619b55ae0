//! The native controller's objects in the full-screen rollout view, drawn
//! like `kubectl argo rollouts get rollout`: revisions newest first, each
//! with its ReplicaSets (tags, available of desired, images), their pods
//! (ready containers, restarts), its experiments and its AnalysisRuns
//! (phase, measurements, jobs).
//! Above the events, taking at most half of their room.

use super::app::App;
use super::panes::block;
use super::text::fit;
use super::theme::Theme;
use flightdeck_core::tree::{NativeTree, TreeRow};
use flightdeck_core::Rollout;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Rows the events keep below the tree.
const EVENTS_KEEP: u16 = 6;

/// Draws the rollout's tree at the top of `area` when it has one and
/// there is room, and returns what is left for the events.
pub fn above_events(f: &mut Frame, area: Rect, app: &App, r: &Rollout) -> Rect {
    let Some(tree) = r.native_tree.as_deref().filter(|t| !t.rows.is_empty()) else { return area };
    let room = area.height.saturating_sub(EVENTS_KEEP).min(area.height / 2);
    let height = (tree.rows.len() as u16 + 2).min(room);
    if height < 3 {
        return area;
    }
    let tree_area = Rect { height, ..area };
    draw(f, tree_area, &app.theme, tree);
    Rect { y: area.y + height, height: area.height - height, ..area }
}

/// The tree in a box; rows that do not fit end in a "… N more" line.
pub fn draw(f: &mut Frame, area: Rect, theme: &Theme, tree: &NativeTree) {
    let b = block(theme, " Revisions · ReplicaSets · pods · analysis runs ", false);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let name_width = tree.rows.iter().map(|r| indent(r).chars().count() + r.name.chars().count()).max().unwrap_or(0);
    let name_width = name_width.min(inner.width as usize / 2);
    let status_width = tree.rows.iter().map(|r| r.status.chars().count()).max().unwrap_or(0).min(20);
    let height = inner.height as usize;
    let mut lines: Vec<Line> = tree.rows.iter().map(|row| line(theme, row, name_width, status_width)).collect();
    if lines.len() > height && height > 0 {
        let more = lines.len() - (height - 1);
        lines.truncate(height - 1);
        lines.push(Line::styled(format!("… {more} more"), theme.style("ui.dim")));
    }
    let lines: Vec<Line> = lines.into_iter().map(|l| fit(l, inner.width)).collect();
    f.render_widget(Paragraph::new(lines), inner);
}

/// The plugin's icons (cmd/get: `#` revision, `⧉` ReplicaSet, `□` pod, `α`
/// analysis run, `Σ` experiment, `⊞` job).
fn indent(row: &TreeRow) -> String {
    let icon = match row.kind.as_str() {
        "revision" => "# ",
        "ReplicaSet" => "⧉ ",
        "Pod" => "□ ",
        "AnalysisRun" => "α ",
        "Experiment" => "Σ ",
        "Job" => "⊞ ",
        _ => "! ",
    };
    format!("{}{icon}", "  ".repeat(row.depth as usize))
}

fn line<'a>(theme: &Theme, row: &'a TreeRow, name_width: usize, status_width: usize) -> Line<'a> {
    let name = format!("{}{}", indent(row), row.name);
    if row.kind == "revision" {
        return Line::styled(name, theme.style("ui.title"));
    }
    if row.kind == "error" {
        return Line::styled(format!("{name}: {}", row.status), theme.style("verdict.fail"));
    }
    let padded = format!("{name:<name_width$}  ");
    let status = format!("{:<status_width$}  ", row.status);
    Line::from(vec![
        Span::styled(padded, name_style(theme, row)),
        Span::styled(status, status_style(theme, &row.status)),
        Span::styled(row.info.clone(), theme.style("ui.dim")),
    ])
}

/// Stable and canary in the split's colours, so the tree reads with it.
fn name_style(theme: &Theme, row: &TreeRow) -> Style {
    let first = row.info.split(" · ").next().unwrap_or("");
    match first {
        "stable" | "active" => theme.style("split.stable"),
        "canary" | "preview" => theme.style("split.canary"),
        _ => theme.style("ui.text"),
    }
}

/// The plugin's icon colours: good green, bad red, on the way yellow.
fn status_style(theme: &Theme, status: &str) -> Style {
    match status {
        "Healthy" | "Running" | "Successful" | "Completed" => theme.style("verdict.pass"),
        "Progressing" | "Pending" | "Inconclusive" | "ContainerCreating" | "Terminating" => {
            theme.style("verdict.inconclusive")
        }
        "ScaledDown" | "" => theme.style("ui.dim"),
        _ => theme.style("verdict.fail"),
    }
}
