//! The cockpit, driven by keys against the real engine and simulator in
//! paused (virtual) time, rendered on ratatui's TestBackend.

use flightdeck::ui::app::Modal;
use flightdeck::ui::panes;
use flightdeck::ui::preview::Preview as Cockpit;
use flightdeck::ui::theme::Theme;
use flightdeck_core::rollout::{Actor, Command, Phase};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::Terminal;

const CHECKOUT: &str = "prod-eu-1/checkout-api";
const PAYMENTS: &str = "prod-eu-1/payments";

#[tokio::test(start_paused = true)]
async fn fleet_overview() {
    let mut c = Cockpit::demo(12, "default").await;
    c.select(CHECKOUT);
    let small = c.screen(80, 24);
    assert!(small.contains("Rollouts") && small.contains("checkout-api"), "{small}");
    insta::assert_snapshot!("fleet_overview_80x24", small);
    insta::assert_snapshot!("fleet_overview_120x40", c.screen(120, 40));
}

#[tokio::test(start_paused = true)]
async fn wide_terminal_uses_the_room() {
    let mut c = Cockpit::demo(12, "default").await;
    c.select(CHECKOUT);
    let screen = c.screen(200, 60);
    for pane in ["Rollouts", "Canary analysis", "Error budget", "Events", "Stages"] {
        assert!(screen.contains(pane), "{pane} missing at 200×60:\n{screen}");
    }
}

#[tokio::test(start_paused = true)]
async fn bad_canary_is_caught_and_shown_with_its_reason() {
    let mut c = Cockpit::demo(30, "default").await;
    let payments = c.rollout(PAYMENTS);
    assert!(matches!(payments.phase, Phase::RolledBack { .. }), "{:?}", payments.phase);
    c.select(PAYMENTS);
    let screen = c.screen(120, 40);
    assert!(screen.contains("rolled back"), "{screen}");
    assert!(screen.contains("error rate"), "{screen}");
    insta::assert_snapshot!("bad_canary_caught_120x40", screen);
    insta::assert_snapshot!("bad_canary_caught_80x24", c.screen(80, 24));
}

#[tokio::test(start_paused = true)]
async fn pause_key_pauses_and_resumes() {
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    let sent = c.keys("p").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].command, Command::Pause { reason: None });
    assert_eq!(sent[0].expected_stage, 0);
    assert_eq!(sent[0].actor, Actor::new("alice"));
    assert!(matches!(c.rollout(CHECKOUT).phase, Phase::Paused { .. }));
    insta::assert_snapshot!("paused_120x40", c.screen(120, 40));
    insta::assert_snapshot!("paused_80x24", c.screen(80, 24));
    let sent = c.keys("p").await;
    assert_eq!(sent[0].command, Command::Resume);
    assert!(matches!(c.rollout(CHECKOUT).phase, Phase::Progressing { .. }));
}

#[tokio::test(start_paused = true)]
async fn each_key_sends_its_exact_command() {
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    assert_eq!(c.keys("n").await[0].command, Command::Promote);
    let stage = c.rollout(CHECKOUT).stage;
    assert_eq!(stage, 1);
    let sent = c.keys("b").await;
    assert_eq!((sent[0].command.clone(), sent[0].expected_stage), (Command::StepBack, 1));
    // Sent as typed; the core refuses what does not apply, and the cockpit says so.
    assert_eq!(c.keys("y").await[0].command, Command::Approve);
    assert!(c.app.toast.as_ref().is_some_and(|t| t.error && t.text.contains("nothing is waiting for approval")));
    assert_eq!(c.keys("t").await[0].command, Command::Retry);
    assert!(c.app.toast.as_ref().is_some_and(|t| t.error && t.text.contains("not possible while paused")));
    // Dangerous ones open a modal first and send only on confirmation.
    for (key, command) in
        [('N', Command::PromoteFull), ('a', Command::Abort { reason: None }), ('R', Command::Rollback { reason: None })]
    {
        assert!(c.keys(&key.to_string()).await.is_empty(), "{key} must ask first");
        assert!(matches!(c.app.modal, Some(Modal::Confirm { .. })), "{key} opens a modal");
        assert!(c.keys("\x1b").await.is_empty(), "Esc cancels");
        assert!(c.app.modal.is_none());
        c.keys(&key.to_string()).await;
        let sent = c.keys("y").await;
        assert_eq!(sent.len(), 1, "{key} sends once confirmed");
        assert_eq!(sent[0].command, command);
        assert_eq!(sent[0].rollout, CHECKOUT);
    }
}

#[tokio::test(start_paused = true)]
async fn confirmation_modal_says_exactly_what_changes() {
    let mut c = Cockpit::demo(20, "default").await;
    c.select(CHECKOUT);
    let weight = c.rollout(CHECKOUT).canary_weight;
    c.keys("a").await;
    let screen = c.screen(120, 40);
    assert!(screen.contains(&format!("canary weight {weight} % → 0 % on sim prod-eu-1")), "{screen}");
    insta::assert_snapshot!("confirm_abort_120x40", screen);
    insta::assert_snapshot!("confirm_abort_80x24", c.screen(80, 24));
}

#[tokio::test(start_paused = true)]
async fn freeze_override_needs_a_typed_reason() {
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    c.keys("F").await;
    assert!(matches!(c.app.modal, Some(Modal::Reason { .. })));
    assert!(c.keys("\n").await.is_empty(), "an empty reason is not accepted");
    c.keys("hotfix\n").await;
    assert!(matches!(c.app.modal, Some(Modal::Confirm { .. })));
    let sent = c.keys("y").await;
    assert_eq!(sent[0].command, Command::OverrideFreeze { reason: "hotfix".into() });
}

#[tokio::test(start_paused = true)]
async fn help_lists_every_binding_from_the_keymap() {
    let mut c = Cockpit::demo(1, "default").await;
    c.keys("?").await;
    let screen = c.screen(120, 40);
    for b in c.app.keymap.bindings(flightdeck::ui::keymap::Layer::Cockpit) {
        assert!(screen.contains(&b.desc), "help misses {}", b.desc);
    }
    insta::assert_snapshot!("help_120x40", screen);
    insta::assert_snapshot!("help_80x24", c.screen(80, 24));
}

#[tokio::test(start_paused = true)]
async fn a_stale_command_is_refused_and_says_why() {
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    // Promote to 100 % asks first; meanwhile the rollout moves on to stage 2.
    // (Abort, rollback and pause are never stale: they apply to what runs now.)
    c.keys("N").await;
    let seen = c.rollout(CHECKOUT).stage;
    c.advance(14).await;
    assert!(c.rollout(CHECKOUT).stage > seen);
    let sent = c.keys("y").await;
    assert_eq!(sent[0].expected_stage, seen);
    assert_eq!(sent[0].expected_revision, c.rollout(CHECKOUT).canary_revision, "commands name the revision seen");
    let toast = c.app.toast.clone().unwrap();
    assert!(toast.error && toast.text.contains("stale"), "{toast:?}");
    assert!(!matches!(c.rollout(CHECKOUT).phase, Phase::Promoted { .. }));
    insta::assert_snapshot!("stale_refused_120x40", c.screen(120, 40));
    insta::assert_snapshot!("stale_refused_80x24", c.screen(80, 24));
}

#[tokio::test(start_paused = true)]
async fn freeze_view_holds_the_display_but_not_the_rollout() {
    let mut c = Cockpit::demo(3, "default").await;
    c.keys("f").await;
    let held = c.app.view.clone();
    c.advance(20).await;
    assert_eq!(c.app.view.at, held.at, "the view stays still");
    assert!(c.screen(120, 40).contains("VIEW FROZEN"));
    let live = c.engine.subscribe().borrow().clone();
    assert!(live.at > held.at, "the rollouts went on");
    c.keys("f").await;
    assert_eq!(c.app.view.at, live.at.max(c.app.view.at));
}

#[tokio::test(start_paused = true)]
async fn filter_narrows_the_list() {
    let mut c = Cockpit::demo(1, "default").await;
    c.keys("/search\n").await;
    let ids: Vec<String> = c.app.visible().iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, vec!["prod-us-1/search".to_string()]);
    c.keys("/\x1b").await;
    assert_eq!(c.app.visible().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn palette_runs_commands_by_name() {
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    let sent = c.keys(":promote\n").await;
    assert_eq!(sent[0].command, Command::Promote);
    c.keys(":theme light\n").await;
    assert_eq!(c.app.theme.name, "light");
}

#[tokio::test(start_paused = true)]
async fn each_theme_renders() {
    for name in Theme::shipped() {
        let mut c = Cockpit::demo(12, name).await;
        c.select(PAYMENTS);
        // Styles are part of the picture: snapshot the buffer with them.
        insta::assert_snapshot!(format!("theme_{name}"), format!("{:?}", c.buffer(120, 40)));
    }
}

#[test]
fn sparkline_scales_to_its_range() {
    assert_eq!(panes::sparkline(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 8), "▁▂▃▄▅▆▇█");
    assert_eq!(panes::sparkline(&[5.0, 5.0], 8), "▁▁");
    assert_eq!(panes::sparkline(&[1.0, 2.0, 3.0], 2), "▁█");
}

#[tokio::test(start_paused = true)]
async fn split_pane_draws_the_weights() {
    let mut c = Cockpit::demo(3, "mono").await;
    c.select(CHECKOUT);
    let r = c.rollout(CHECKOUT);
    assert_eq!(r.canary_weight, 1);
    let mut buffer = Buffer::empty(Rect::new(0, 0, 40, 1));
    let mut terminal = Terminal::new(TestBackend::new(40, 1)).unwrap();
    terminal.draw(|f| panes::split(f, f.area(), &c.app, &r)).unwrap();
    buffer.merge(terminal.backend().buffer());
    // 40 columns: labels take 23, the bar 17, of which 1 % rounds up to one canary cell.
    let expected = Buffer::with_lines([format!("v2.2.9 99% {}│█ v2.3.0 1% ", "█".repeat(16))]);
    assert_eq!(
        buffer.content().iter().map(|c| c.symbol()).collect::<String>(),
        expected.content().iter().map(|c| c.symbol()).collect::<String>()
    );
}

#[tokio::test(start_paused = true)]
async fn a_plan_names_its_theme_unless_the_captain_picked_one() {
    let mut c = Cockpit::demo(1, "default").await;
    // Previews pin their theme; a cockpit opened without --theme does not.
    let (theme, themes, keymap) = flightdeck::ui::preview::shipped_look("default");
    c.app = flightdeck::ui::app::App::new(c.app.view.clone(), theme, themes, keymap, Actor::new("alice"));
    c.select(CHECKOUT);
    c.screen(80, 24);
    assert_eq!(c.app.theme.name, "prod", "checkout-api's plan names the prod theme");
    c.select("staging/user-profile");
    c.screen(80, 24);
    assert_eq!(c.app.theme.name, "staging");
    c.keys("T").await;
    let picked = c.app.theme.name.clone();
    c.select(CHECKOUT);
    c.screen(80, 24);
    assert_eq!(c.app.theme.name, picked, "a theme picked by hand wins");
}

/// A user keymap that replaces the cockpit layer without a quit key and
/// empties the help layer still lets the captain out: Esc closes help,
/// Ctrl-C quits.
#[tokio::test(start_paused = true)]
async fn no_keymap_can_trap_the_captain() {
    use flightdeck::ui::keymap::Keymap;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut c = Cockpit::demo(1, "default").await;
    let user = "[cockpit]\nkeymap = [{ on = \"?\", run = \"help\" }]\n\n[help]\nkeymap = []\n";
    let shipped = Keymap::load("default", std::path::Path::new("/nonexistent")).unwrap();
    c.app.keymap = shipped.with_overrides("keymap.toml", user).unwrap();
    let press = |code| KeyEvent::new(code, KeyModifiers::NONE);
    c.app.on_key(&press(KeyCode::Char('?')));
    assert!(c.app.help);
    c.app.on_key(&press(KeyCode::Char('q')));
    assert!(c.app.help && !c.app.quit, "q is not bound in this keymap's help");
    c.app.on_key(&press(KeyCode::Esc));
    assert!(!c.app.help, "Esc closes help");
    c.app.on_key(&press(KeyCode::Char('q')));
    assert!(!c.app.quit);
    c.app.on_key(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(c.app.quit, "Ctrl-C quits");
}
