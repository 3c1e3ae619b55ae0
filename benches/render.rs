//! One full cockpit frame at 120×40 and 200×60 with 1, 100 and 1,000
//! rollouts (the demo fleet's six shapes), beside a baseline frame of the
//! same layout drawn with plain ratatui widgets (list, gauge, table,
//! sparkline, paragraph) from the same snapshot, in the same group: the
//! figure that holds on any machine is the ratio `flightdeck / baseline`
//! (`scripts/bench` prints it). Into a `TestBackend` buffer, as ratatui's
//! own benches do: the terminal's output is measured apart (`scripts/cost`).

use criterion::{criterion_group, BenchmarkId, Criterion};
use flightdeck::preview::shipped_look;
use flightdeck::protocol::{Output, Snapshot};
use flightdeck::ui::app::App;
use flightdeck::ui::view;
use flightdeck_core::analysis::{MetricsSample, VersionWindow};
use flightdeck_core::rollout::{step, Actor, Event, Rollout};
use flightdeck_core::time::Timestamp;
use flightdeck_core::Plan;
use ratatui::backend::TestBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, List, ListItem, ListState, Paragraph, Row, Sparkline, Table};
use ratatui::{Frame, Terminal};
use std::time::Duration;

const ROLLOUTS: [usize; 3] = [1, 100, 1000];
const SIZES: [(u16, u16); 2] = [(120, 40), (200, 60)];

fn window(requests: u64, errors: u64, p99: f64) -> VersionWindow {
    VersionWindow {
        requests,
        errors,
        p50_ms: Some(p99 / 3.0),
        p95_ms: Some(p99 / 1.5),
        p99_ms: Some(p99),
        ..Default::default()
    }
}

/// `n` rollouts of the demo shapes, each started and through 10 analysis
/// windows (sparklines have a history), and the event log of the first.
fn fleet(n: usize) -> (Snapshot, Vec<Output>) {
    let rollouts: Vec<Rollout> = flightdeck::demo::plans(n)
        .iter()
        .map(|p| {
            let plan = Plan::parse(p.file, &p.text).unwrap();
            let id = format!("{}/{}", plan.target.group, plan.name);
            let mut r = step(&Rollout::new(id, plan), Event::Start, Timestamp(0)).0;
            for w in 1..=10u64 {
                let sample = Event::Metrics(MetricsSample {
                    window: Duration::from_secs(60),
                    stable: Some(window(12_000 + w * 7, 24, 250.0 + w as f64)),
                    canary: Some(window(1_200 + w, 3, 255.0 + w as f64)),
                    missing: None,
                });
                r = step(&r, sample, Timestamp(w * 60_000)).0;
            }
            r
        })
        .collect();
    let events = (0..40u64)
        .map(|i| Output::Notice {
            rollout: rollouts[0].id.clone(),
            at: Timestamp(i * 15_000),
            level: "info".into(),
            message: format!("window {i}: stable and canary within limits"),
        })
        .collect();
    let rollouts = rollouts.into_iter().map(std::sync::Arc::new).collect();
    (Snapshot { at: Timestamp(630_000), rollouts, ..Snapshot::default() }, events)
}

/// The cockpit's frame, as the terminal loop draws it.
fn cockpit(n: usize) -> App {
    let (snapshot, events) = fleet(n);
    let mut app = App::new(snapshot, shipped_look("default"), Actor::new("bench"));
    for e in events {
        app.on_output(e);
    }
    app.now = Timestamp(630_000);
    app
}

/// A frame of the same layout from plain ratatui widgets, built from the
/// snapshot every frame as a straightforward app would: a bordered list of
/// every rollout (ratatui skips what is off screen), a header paragraph,
/// a gauge for the split, a timeline line, a table of the checks, a
/// sparkline, the event log and a footer.
fn baseline(f: &mut Frame, snapshot: &Snapshot, events: &[Output], list: &mut ListState) {
    let [top, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(f.area());
    f.render_widget(Paragraph::new(format!(" flightdeck · {} rollouts", snapshot.rollouts.len())), top);
    let [left, right] = Layout::horizontal([Constraint::Length(44), Constraint::Min(0)]).areas(body);
    let items: Vec<ListItem> = snapshot
        .rollouts
        .iter()
        .map(|r| {
            let line =
                format!("{} {} {}/{} {}%", r.id, r.phase.label(), r.stage + 1, r.stages().len(), r.canary_weight);
            ListItem::new(line)
        })
        .collect();
    let list_widget = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(" Rollouts "))
        .highlight_style(Style::default().add_modifier(Modifier::BOLD));
    f.render_stateful_widget(list_widget, left, list);
    let r = &snapshot.rollouts[0];
    let [header, split, timeline, analysis, spark, log] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(2),
        Constraint::Length(10),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(right);
    let title = Line::from(vec![
        Span::styled(r.plan().name.clone(), Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  {}  stage {}/{}", r.phase.label(), r.stage + 1, r.stages().len())),
    ]);
    let revisions = format!("{} → {}", r.plan().stable, r.plan().canary);
    f.render_widget(Paragraph::new(vec![title, Line::raw(revisions)]), header);
    let gauge = Gauge::default()
        .block(Block::default().borders(Borders::ALL).title(" Traffic "))
        .gauge_style(Style::default().fg(Color::Yellow))
        .percent(r.canary_weight as u16);
    f.render_widget(gauge, split);
    let stages: Vec<String> = r.stages().iter().map(|s| format!("{}%", s.weight)).collect();
    f.render_widget(Paragraph::new(stages.join(" → ")), timeline);
    let rows = r.last_verdict.iter().flat_map(|v| v.checks()).map(|c| {
        Row::new(vec![
            format!("{:?}", c.metric),
            format!("{:?}", c.stable),
            format!("{:?}", c.canary),
            c.reason.clone(),
        ])
    });
    let widths = [Constraint::Length(10), Constraint::Length(10), Constraint::Length(10), Constraint::Min(0)];
    let table = Table::new(rows, widths)
        .header(Row::new(vec!["metric", "stable", "canary", "why"]))
        .block(Block::default().borders(Borders::ALL).title(" Analysis "));
    f.render_widget(table, analysis);
    let history: Vec<u64> = (0..spark.width as u64).map(|i| (i * 37) % 100).collect();
    f.render_widget(Sparkline::default().block(Block::default().borders(Borders::TOP)).data(&history), spark);
    let lines: Vec<Line> = events
        .iter()
        .rev()
        .map(|e| Line::raw(format!("{} {}", flightdeck_core::time::stamp(e.at()), flightdeck::headless::human(e))))
        .collect();
    f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Events ")), log);
    f.render_widget(Paragraph::new("? help  q quit  p pause  n promote  a abort"), footer);
}

fn bench_frames(c: &mut Criterion) {
    for (width, height) in SIZES {
        let mut group = c.benchmark_group(format!("frame {width}x{height}"));
        for n in ROLLOUTS {
            let mut app = cockpit(n);
            let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
            group.bench_with_input(BenchmarkId::new("flightdeck", n), &n, |b, _| {
                b.iter(|| {
                    terminal.draw(|f| view::render(f, &mut app)).unwrap();
                })
            });
            let (snapshot, events) = fleet(n);
            let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
            let mut list = ListState::default().with_selected(Some(0));
            group.bench_with_input(BenchmarkId::new("ratatui baseline", n), &n, |b, _| {
                b.iter(|| {
                    terminal.draw(|f| baseline(f, &snapshot, &events, &mut list)).unwrap();
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_frames);

/// `FLIGHTDECK_FRAMES="flightdeck|baseline ROLLOUTS WxH FRAMES"` draws that
/// many frames and nothing else, for an instruction count under
/// `valgrind --tool=callgrind` (`scripts/bench`: the count of 60 frames
/// minus that of 10, so set-up cancels out); otherwise criterion runs.
fn main() {
    let Ok(spec) = std::env::var("FLIGHTDECK_FRAMES") else {
        benches();
        Criterion::default().configure_from_args().final_summary();
        return;
    };
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [which, n, size, frames] = parts[..] else { panic!("FLIGHTDECK_FRAMES: which rollouts WxH frames") };
    let n: usize = n.parse().expect("rollouts");
    let (width, height) = size.split_once('x').expect("WxH");
    let (width, height): (u16, u16) = (width.parse().unwrap(), height.parse().unwrap());
    let frames: usize = frames.parse().expect("frames");
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    if which == "flightdeck" {
        let mut app = cockpit(n);
        for _ in 0..frames {
            terminal.draw(|f| view::render(f, &mut app)).unwrap();
        }
    } else {
        let (snapshot, events) = fleet(n);
        let mut list = ListState::default().with_selected(Some(0));
        for _ in 0..frames {
            terminal.draw(|f| baseline(f, &snapshot, &events, &mut list)).unwrap();
        }
    }
}
