//! The cockpit without a terminal: the demo fleet on the real engine and
//! simulator, keys pressed by code, frames rendered into a buffer. Tests,
//! `scripts/screenshots` and the render benchmark use it. Run it inside a
//! tokio runtime with paused time for deterministic pictures. [`svg`]
//! turns a frame into a picture for the README.

pub mod svg;

use crate::clock::Clock;
use crate::engine::{Engine, EngineOptions, RolloutSetup, StopWhen};
use crate::protocol::{CommandRequest, Output};
use crate::ui::app::App;
use crate::ui::keymap::Keymap;
use crate::ui::theme::{ColorMode, Theme};
use crate::ui::view;
use crate::ui::Look;
use flightdeck_core::rollout::{Actor, Rollout};
use flightdeck_core::time::Timestamp;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// Simulated minutes per real second in previews.
const SPEED: f64 = 60.0;

pub struct Preview {
    pub app: App,
    pub engine: Engine,
    outputs: mpsc::Receiver<Output>,
    clock: Clock,
}

/// Shipped themes and keymap only (no user files), in full colour.
pub fn shipped_look(theme: &str) -> Look {
    let none = Path::new("/nonexistent/flightdeck-preview");
    let load = |n: &str| Theme::load(n, none, ColorMode::TrueColor).expect("shipped themes load");
    let themes = Theme::shipped().into_iter().map(load).collect();
    Look { theme: load(theme), themes, keymap: Keymap::load("default", none).expect("the shipped keymap loads") }
}

impl Preview {
    /// The demo fleet, `minutes` simulated minutes in.
    pub async fn demo(minutes: u64, theme: &str) -> Preview {
        let fleet = crate::fleet::demo(1).await.expect("the demo fleet is valid");
        Preview::of(fleet, minutes, theme).await
    }

    pub async fn of(setups: Vec<RolloutSetup>, minutes: u64, theme: &str) -> Preview {
        Preview::journaled(setups, None, minutes, theme).await
    }

    /// As [`Preview::of`], keeping journals in `journal_dir` (resuming the
    /// runs they hold, as the cockpit does on a restart).
    pub async fn journaled(
        setups: Vec<RolloutSetup>,
        journal_dir: Option<&Path>,
        minutes: u64,
        theme: &str,
    ) -> Preview {
        let clock = Clock::scaled(Timestamp(0), SPEED);
        let journal_dir = journal_dir.map(Path::to_path_buf);
        let options = EngineOptions { clock, journal_dir, fresh: false, stop_when: StopWhen::Never };
        let (tx, outputs) = mpsc::channel(100_000);
        let engine = Engine::start(setups, options, tx).expect("journals open");
        let clock = engine.clock();
        let mut app = App::new(engine.subscribe().borrow().clone(), shipped_look(theme), Actor::new("alice"));
        app.pin_theme();
        for output in engine.history() {
            app.on_output(output.clone());
        }
        let mut p = Preview { app, engine, outputs, clock };
        p.advance(minutes).await;
        p
    }

    /// Lets `minutes` of simulated time pass.
    pub async fn advance(&mut self, minutes: u64) {
        tokio::time::sleep(Duration::from_secs_f64(minutes as f64 * 60.0 / SPEED)).await;
        self.sync();
    }

    /// Hands everything the engine published to the view.
    pub fn sync(&mut self) {
        while let Ok(o) = self.outputs.try_recv() {
            self.app.on_output(o);
        }
        self.app.on_snapshot(self.engine.subscribe().borrow().clone());
        self.app.set_now(self.clock.now());
        self.app.expire_toast();
    }

    pub fn select(&mut self, id: &str) {
        assert!(self.app.view.rollouts.iter().any(|r| r.id == id), "no rollout {id}");
        self.app.selected = Some(id.to_string());
    }

    /// Presses keys (`\n` Enter, `\x1b` Esc, `\t` Tab); commands they produce are sent
    /// and answered. Returns the commands.
    pub async fn keys(&mut self, keys: &str) -> Vec<CommandRequest> {
        let mut sent = Vec::new();
        for c in keys.chars() {
            let code = match c {
                '\n' => KeyCode::Enter,
                '\x1b' => KeyCode::Esc,
                '\t' => KeyCode::Tab,
                c => KeyCode::Char(c),
            };
            let mods = if c.is_ascii_uppercase() { KeyModifiers::SHIFT } else { KeyModifiers::NONE };
            for req in self.app.on_key(&KeyEvent::new(code, mods)) {
                let reply = self.engine.submit(req.clone()).await;
                self.app.on_reply(&req, &reply);
                sent.push(req);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.sync();
        sent
    }

    /// One frame at this size.
    pub fn buffer(&mut self, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
        terminal.draw(|f| view::render(f, &mut self.app)).expect("test backend draws");
        terminal.backend().buffer().clone()
    }

    /// One frame as text.
    pub fn screen(&mut self, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
        terminal.draw(|f| view::render(f, &mut self.app)).expect("test backend draws");
        terminal.backend().to_string()
    }

    pub fn rollout(&self, id: &str) -> Rollout {
        self.app.view.rollouts.iter().find(|r| r.id == id).map(|r| Rollout::clone(r)).expect("rollout exists")
    }
}
