//! The cockpit, driven by keys against the real engine and simulator in
//! paused (virtual) time, rendered on ratatui's TestBackend.

use flightdeck::backend::sim::Scenario;
use flightdeck::engine::RolloutSetup;
use flightdeck::fleet;
use flightdeck::preview::Preview as Cockpit;
use flightdeck::ui::app::Modal;
use flightdeck::ui::panes;
use flightdeck::ui::theme::Theme;
use flightdeck_core::plan::Plan;
use flightdeck_core::rollout::{Actor, Command, Gate, Phase};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::MouseEventKind;
use ratatui::layout::{Position, Rect};
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
    // What the core would refuse is not sent; the status line says why.
    c.select("staging/user-profile");
    assert!(c.keys("y").await.is_empty());
    assert!(c.app.toast.as_ref().is_some_and(|t| t.error && t.text.contains("nothing is waiting for approval")));
    // What asks for a "yes" first is checked with the core before asking:
    // no dialog for what it would refuse, the reason in the status line.
    c.select(CHECKOUT);
    for key in ["y", "t"] {
        assert!(c.keys(key).await.is_empty(), "{key}: nothing sent");
        assert!(c.app.modal.is_none(), "{key}: no dialog for what cannot apply");
    }
    let toast = c.app.toast.clone().unwrap();
    assert!(toast.error && toast.text.contains("retry checkout-api: retry is not possible while paused"), "{toast:?}");
    // Dangerous ones open a modal first and send only on confirmation; the
    // same key pressed again never confirms; production promote-full asks
    // for the rollout's name.
    for (key, command, answer) in [
        ('N', Command::PromoteFull, "checkout-api\n"),
        ('a', Command::Abort { reason: None }, "\n"),
        ('R', Command::Rollback { reason: None }, "\n"),
    ] {
        let mut c = Cockpit::demo(3, "default").await;
        c.select(CHECKOUT);
        let twice = format!("{key}{key}");
        assert!(c.keys(&twice).await.is_empty(), "{key} twice must only ask");
        assert!(matches!(c.app.modal, Some(Modal::Confirm { .. })), "{key} opens a modal");
        assert!(c.keys("\x1b").await.is_empty(), "Esc cancels");
        assert!(c.app.modal.is_none());
        c.keys(&key.to_string()).await;
        let sent = c.keys(answer).await;
        assert_eq!(sent.len(), 1, "{key} sends once confirmed");
        assert_eq!(sent[0].command, command);
        assert_eq!(sent[0].rollout, CHECKOUT);
    }
    // A production promote-full is not confirmed by Enter alone, nor by a wrong name.
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    assert!(c.keys("N\n").await.is_empty());
    assert!(c.keys("checkout\n").await.is_empty());
    assert!(c.app.toast.as_ref().is_some_and(|t| t.error && t.text.contains("type checkout-api to confirm")));
    assert!(matches!(c.app.modal, Some(Modal::Confirm { .. })), "still asking");
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
async fn freeze_override_needs_a_freeze_a_typed_reason_and_in_production_the_name() {
    // No freeze, nothing to override: no dialog, no journaled override.
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    assert!(c.keys("F").await.is_empty());
    assert!(c.app.modal.is_none(), "F opened a dialog on a rollout with no freeze");
    assert!(c.app.toast.as_ref().is_some_and(|t| t.error && t.text.contains("not frozen")), "{:?}", c.app.toast);

    let mut c = Cockpit::of(frozen_checkout().await, 14, "default").await;
    c.select(CHECKOUT);
    c.keys("F").await;
    assert!(matches!(c.app.modal, Some(Modal::Reason { .. })));
    assert!(c.keys("\n").await.is_empty(), "an empty reason is not accepted");
    c.keys("hotfix\n").await;
    assert!(matches!(c.app.modal, Some(Modal::Confirm { typed: Some(_), .. })), "production: type the name");
    let screen = c.screen(120, 40);
    assert!(screen.contains("Type checkout-api to confirm"), "{screen}");
    assert!(screen.contains("recorded reason: “hotfix”"), "{screen}");
    assert!(c.keys("\n").await.is_empty(), "Enter alone does not confirm");
    let sent = c.keys("checkout-api\n").await;
    assert_eq!(sent[0].command, Command::OverrideFreeze { reason: "hotfix".into() });
}

/// checkout-api with 10 % of its error budget left: frozen at its first gate.
async fn frozen_checkout() -> Vec<RolloutSetup> {
    fleet_of(&["checkout-api"], None, |t| t.replace("rps = 900", "rps = 900\nbudget_left_pct = 10")).await
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
    let sent = c.keys("checkout-api\n").await;
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
    c.select(CHECKOUT);
    c.keys("f").await;
    let held = c.app.view.clone();
    let frozen = c.screen(120, 40);
    assert!(frozen.contains("FROZEN"), "{frozen}");
    c.advance(20).await;
    assert_eq!(c.app.view.at, held.at, "the view stays still");
    // Everything on screen holds: the clock, bake timers, ETA, sparklines and events.
    assert_eq!(c.screen(120, 40), frozen, "the frozen frame does not move");
    let live = c.engine.subscribe().borrow().clone();
    assert!(live.at > held.at, "the rollouts went on");
    c.keys("f").await;
    assert_eq!(c.app.view.at, live.at.max(c.app.view.at));
    let thawed = c.screen(120, 40);
    assert!(!thawed.contains("FROZEN") && thawed != frozen, "{thawed}");
    assert!(thawed.contains("15:00 progressing: stage 2/4"), "held events shown: {thawed}");
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
async fn a_palette_error_does_not_outlive_a_later_command_that_worked() {
    let mut c = Cockpit::demo(3, "default").await;
    c.keys(":theme nosuch\n").await;
    assert!(c.app.toast.as_ref().is_some_and(|t| t.error), "no error for an unknown theme");
    c.keys(":theme light\n").await;
    assert_eq!(c.app.theme.name, "light");
    assert!(c.app.toast.as_ref().is_none_or(|t| !t.error), "the old error still shows after a command that worked");
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
fn sparkline_scales_to_its_range_but_not_below_the_limit() {
    assert_eq!(panes::sparkline(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 8, 0.0), "▁▂▃▄▅▆▇█");
    assert_eq!(panes::sparkline(&[5.0, 5.0], 8, 0.0), "▁▁");
    assert_eq!(panes::sparkline(&[1.0, 2.0, 3.0], 2, 0.0), "▁█");
    // 248 → 244 ms against a 25 ms limit is a ripple, not a cliff.
    let ripple = panes::sparkline(&[248.0, 247.0, 246.0, 245.0, 244.0], 8, 25.0);
    assert!(ripple.chars().all(|c| "▃▄▅".contains(c)), "{ripple}");
    // A breach of the limit still spans the whole height.
    assert_eq!(panes::sparkline(&[250.0, 300.0], 8, 25.0), "▁█");
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
    // 40 columns: labels take 22, the bar 18, of which 1 % rounds up to one canary cell.
    let expected = Buffer::with_lines([format!("v2.2.9 99% {}│█ v2.3.0 1%", "█".repeat(17))]);
    assert_eq!(
        buffer.content().iter().map(|c| c.symbol()).collect::<String>(),
        expected.content().iter().map(|c| c.symbol()).collect::<String>()
    );
}

#[tokio::test(start_paused = true)]
async fn a_plan_names_its_theme_unless_the_captain_picked_one() {
    let mut c = Cockpit::demo(1, "default").await;
    // Previews pin their theme; a cockpit opened without --theme does not.
    c.app = flightdeck::ui::app::App::new(
        c.app.view.clone(),
        flightdeck::preview::shipped_look("default"),
        Actor::new("alice"),
    );
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
    // Ctrl-C asks what q asks while rollouts are mid-way; a second one quits.
    c.app.on_key(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(matches!(c.app.modal, Some(Modal::Quit { .. })) && !c.app.quit, "Ctrl-C asks first");
    c.app.on_key(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(c.app.quit, "Ctrl-C twice quits");
}

/// A fleet of demo plans with their text edited (`edit`), on the simulator.
async fn fleet_of(plans: &[&str], scenario: Option<Scenario>, edit: impl Fn(&str) -> String) -> Vec<RolloutSetup> {
    let mut setups = Vec::new();
    for wanted in plans {
        let (file, text) = fleet::DEMO_FLEET.iter().find(|(f, _)| f.contains(wanted)).expect("a demo plan");
        let text = edit(text);
        let plan = Plan::parse(file, &text).expect("edited plan parses");
        setups.push(fleet::setup(plan, file, text, scenario, 1).await.expect("sim setup"));
    }
    setups
}

/// The rows of a screen as text (without the test backend's quotes).
fn rows(screen: &str) -> Vec<String> {
    screen.lines().map(|l| l.trim_matches('"').to_string()).collect()
}

/// No number cut short without a mark: a digit or decimal point right
/// against a pane border or the screen's edge means text was cut silently.
fn assert_no_cut_numbers(screen: &str) {
    for row in rows(screen) {
        let chars: Vec<char> = row.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let next = chars.get(i + 1);
            let at_edge = next.is_none_or(|n| matches!(n, '│' | '┐' | '┘' | '┤'));
            assert!(!(at_edge && (c.is_ascii_digit() || *c == '.')), "a number cut without …:\n{row}\n\n{screen}");
        }
    }
}

/// Nothing is cut with `…` where the room to show it is right beside it:
/// a cut followed by 12 or more blank columns before the pane's edge
/// means text gave way to empty space.
fn assert_no_cut_beside_room(screen: &str) {
    for row in rows(screen) {
        for (i, _) in row.match_indices('…') {
            let after = &row[i + '…'.len_utf8()..];
            let blank = after.chars().take_while(|c| *c == ' ').count();
            let at_edge = after.chars().nth(blank).is_none_or(|c| matches!(c, '│' | '┐' | '┘' | '┤'));
            assert!(!(blank >= 12 && at_edge), "cut beside {blank} empty columns:\n{row}\n\n{screen}");
        }
    }
}

/// Help and quit are in the footer, whatever else does not fit.
fn assert_footer_has_help_and_quit(screen: &str) {
    let rows = rows(screen);
    let footer = rows.last().expect("a footer");
    assert!(footer.contains('?') && footer.contains('q'), "footer without ? and q: {footer}\n{screen}");
}

#[tokio::test(start_paused = true)]
async fn palette_command_acts_on_the_rollout_it_names() {
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    let sent = c.keys(":pause user-profile\n").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].rollout, "staging/user-profile");
    assert_eq!(sent[0].command, Command::Pause { reason: None });
    assert!(matches!(c.rollout("staging/user-profile").phase, Phase::Paused { .. }));
    assert!(matches!(c.rollout(CHECKOUT).phase, Phase::Progressing { .. }), "the selected rollout is left alone");
    // `pause` is exactly pause: on a paused rollout it is refused, never a resume.
    c.keys(":pause user-profile\n").await;
    assert!(matches!(c.rollout("staging/user-profile").phase, Phase::Paused { .. }));
    // The full id works too; without a name it is the selected rollout.
    assert_eq!(c.keys(":resume staging/user-profile\n").await[0].rollout, "staging/user-profile");
    assert_eq!(c.keys(":pause\n").await[0].rollout, CHECKOUT);
}

#[tokio::test(start_paused = true)]
async fn palette_refuses_unknown_and_ambiguous_names_and_sends_nothing() {
    let mut c = Cockpit::demo(3, "default").await;
    assert!(c.keys(":abort user\n").await.is_empty());
    let toast = c.app.toast.clone().unwrap();
    assert!(toast.error && toast.text.contains("no rollout named `user` (did you mean user-profile?"), "{toast:?}");
    assert!(c.app.modal.is_none());
    // Two clusters run a rollout of the same name: the plain name is ambiguous.
    let mut fleet = fleet_of(&["checkout-api"], None, str::to_string).await;
    fleet.extend(fleet_of(&["checkout-api"], None, |t| t.replace("prod-eu-1", "prod-us-1")).await);
    let mut c = Cockpit::of(fleet, 3, "default").await;
    assert!(c.keys(":pause checkout-api\n").await.is_empty());
    let toast = c.app.toast.clone().unwrap();
    assert!(
        toast.error
            && toast.text.contains("`checkout-api` is ambiguous: prod-eu-1/checkout-api, prod-us-1/checkout-api"),
        "{toast:?}"
    );
    assert!(c.app.view.rollouts.iter().all(|r| matches!(r.phase, Phase::Progressing { .. })));
    // Tab offers the full ids when names are shared.
    c.keys(":pause \t").await;
    assert_eq!(c.app.palette.as_ref().unwrap().input.value(), "pause prod-eu-1/checkout-api");
}

#[tokio::test(start_paused = true)]
async fn palette_tab_cycles_through_commands_and_rollout_names() {
    let mut c = Cockpit::demo(3, "default").await;
    let text = |c: &Cockpit| c.app.palette.as_ref().unwrap().input.value().to_string();
    c.keys(":pro\t").await;
    assert_eq!(text(&c), "promote");
    c.keys("\t").await;
    assert_eq!(text(&c), "promote-full", "Tab again: the next match");
    c.keys("\t").await;
    assert_eq!(text(&c), "promote", "and round again");
    // After a command, Tab goes through rollout names (list order) by prefix.
    c.keys("\x1b:pause \t").await;
    let first = text(&c);
    assert_eq!(first, "pause notifications");
    c.keys("\t").await;
    assert_ne!(text(&c), first);
    c.keys("\x1b:pause u\t").await;
    assert_eq!(text(&c), "pause user-profile");
    let screen = c.screen(80, 24);
    assert!(screen.contains(":pause user-profile▏"), "{screen}");
    assert_footer_has_help_and_quit(&screen);
    insta::assert_snapshot!("palette_completion_80x24", screen);
    let sent = c.keys("\n").await;
    assert_eq!(sent[0].rollout, "staging/user-profile");
}

#[tokio::test(start_paused = true)]
async fn palette_q_quits_and_esc_clears_the_filter_and_the_status_line_clears_itself() {
    let mut c = Cockpit::demo(3, "default").await;
    c.keys("/search\n").await;
    assert_eq!(c.app.visible().len(), 1);
    c.keys("\x1b").await;
    assert_eq!(c.app.visible().len(), 6, "Esc clears an active filter");
    c.keys(":nosuch\n").await;
    assert!(c.app.toast.as_ref().is_some_and(|t| t.error && t.text.contains("unknown command `nosuch`")));
    c.advance(10).await;
    assert!(c.app.toast.is_none(), "the status line clears itself");
    // Rollouts are mid-way: quitting asks once, then quits.
    c.keys(":q\n").await;
    assert!(matches!(c.app.modal, Some(Modal::Quit { .. })) && !c.app.quit);
    let screen = c.screen(80, 24);
    assert!(screen.contains("Quit flightdeck?") && screen.contains("mid-way"), "{screen}");
    insta::assert_snapshot!("quit_asks_once_80x24", screen);
    c.keys("\n").await;
    assert!(c.app.quit);
    let summary = c.app.quit_summary();
    assert_eq!(summary.len(), 7, "what held means, then one line per rollout: {summary:?}");
    assert!(summary.contains(&"prod-eu-1/checkout-api: progressing · stage 1/4 · canary v2.3.0 1 % · held".to_string()));
    assert!(summary.contains(&"prod-eu-1/payments: rolled back · stage 2/4 · canary v5.2.0 0 %".to_string()));
}

#[tokio::test(start_paused = true)]
async fn abort_confirmed_after_the_stage_moved_still_takes_the_canary_to_zero() {
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    c.keys("a").await;
    assert!(matches!(c.app.modal, Some(Modal::Confirm { .. })));
    assert!(c.screen(80, 24).contains("canary weight 1 % → 0 %"));
    c.advance(14).await;
    assert_eq!(c.rollout(CHECKOUT).stage, 1, "the stage moved while the dialog was open");
    // The open dialog follows the rollout and says it moved.
    let screen = c.screen(80, 24);
    assert!(screen.contains("canary weight 10 % → 0 %"), "{screen}");
    assert!(screen.contains("It moved since this opened"), "{screen}");
    assert_footer_has_help_and_quit(&screen);
    insta::assert_snapshot!("confirm_abort_moved_80x24", screen);
    let sent = c.keys("\n").await;
    assert_eq!(sent.len(), 1);
    let r = c.rollout(CHECKOUT);
    assert!(matches!(r.phase, Phase::Aborted { .. }), "{:?}", r.phase);
    assert_eq!(r.canary_weight, 0);
    assert!(c.app.toast.as_ref().is_some_and(|t| !t.error), "{:?}", c.app.toast);
}

#[tokio::test(start_paused = true)]
async fn no_dialog_for_what_the_state_machine_refuses() {
    let mut c = Cockpit::demo(30, "default").await;
    c.select(PAYMENTS);
    for key in ["a", "R", "N", "F"] {
        assert!(c.keys(key).await.is_empty(), "{key}");
        assert!(c.app.modal.is_none(), "{key}: no dialog on a rolled-back rollout");
        let toast = c.app.toast.clone().unwrap();
        assert!(toast.error && toast.text.contains("the rollout is rolled back"), "{key}: {toast:?}");
    }
    let screen = c.screen(80, 24);
    assert!(screen.contains("override-freeze payments: the rollout is rolled back"), "{screen}");
}

#[tokio::test(start_paused = true)]
async fn a_production_gate_and_a_retry_after_an_abort_ask_to_confirm() {
    let mut c = Cockpit::demo(12, "default").await;
    c.select("prod-ap-1/notifications");
    assert!(matches!(c.rollout("prod-ap-1/notifications").phase, Phase::AwaitingApproval { .. }));
    assert!(c.keys("yy").await.is_empty(), "approving a production gate asks first; y again does not confirm");
    let screen = c.screen(120, 40);
    assert!(screen.contains("Approve notifications into stage 2/3?"), "{screen}");
    assert!(screen.contains("canary weight 5 % → 25 % on sim prod-ap-1"), "{screen}");
    assert!(screen.contains("PRODUCTION"), "{screen}");
    assert!(matches!(c.rollout("prod-ap-1/notifications").phase, Phase::AwaitingApproval { .. }));
    let sent = c.keys("\n").await;
    assert_eq!(sent[0].command, Command::Approve);
    assert!(matches!(c.rollout("prod-ap-1/notifications").phase, Phase::Progressing { .. }));

    c.select(CHECKOUT);
    c.keys("a\n").await;
    assert!(matches!(c.rollout(CHECKOUT).phase, Phase::Aborted { .. }));
    assert!(c.keys("t").await.is_empty(), "retry after an abort asks first");
    let screen = c.screen(80, 24);
    assert!(screen.contains("Retry checkout-api from the first stage?"), "{screen}");
    insta::assert_snapshot!("confirm_retry_80x24", screen);
    assert!(c.keys("t").await.is_empty(), "t again does not confirm");
    assert_eq!(c.keys("\n").await[0].command, Command::Retry);
    assert!(matches!(c.rollout(CHECKOUT).phase, Phase::Progressing { .. }));
}

#[tokio::test(start_paused = true)]
async fn split_pane_shows_the_weight_the_backend_has_when_it_refused_the_new_one() {
    // The backend times out from minute 15: the step to 10 % is never applied.
    let fleet = fleet_of(&["checkout-api"], Some(Scenario::StuckBackend), str::to_string).await;
    let mut c = Cockpit::of(fleet, 18, "default").await;
    c.select(CHECKOUT);
    let r = c.rollout(CHECKOUT);
    assert_eq!((r.canary_weight, r.observed_weight), (10, Some(1)), "wanted 10 %, the backend still has 1 %");
    let screen = c.screen(80, 24);
    let rows = rows(&screen);
    let bar = rows.iter().find(|l| l.contains("v2.3.0 1%")).unwrap_or_else(|| panic!("bar at 1 %:\n{screen}"));
    assert!(bar.contains("v2.2.9 99%"), "{bar}");
    assert!(screen.contains("wants 10 %: NOT APPLIED for 3:00"), "{screen}");
    assert!(screen.contains("stage 2/4 · 1 %→10 %"), "the header says it too: {screen}");
    assert!(screen.contains("  1%!"), "and the list: {screen}");
    assert_no_cut_numbers(&screen);
    insta::assert_snapshot!("weight_not_applied_80x24", screen);
}

#[tokio::test(start_paused = true)]
async fn a_budget_freeze_says_so_with_its_numbers_and_the_eta_waits_for_approval() {
    let fleet = fleet_of(&["checkout-api"], None, |t| t.replace("rps = 900", "rps = 900\nbudget_left_pct = 10")).await;
    let mut c = Cockpit::of(fleet, 3, "default").await;
    c.select(CHECKOUT);
    // The first reading freezes the budget: the next stage waits at the gate.
    let screen = c.screen(120, 40);
    assert!(screen.contains("Next: approval for 10 % in 12m  ETA 100%: waits for approval"), "{screen}");
    c.advance(13).await;
    assert!(matches!(c.rollout(CHECKOUT).phase, Phase::AwaitingApproval { gate: Gate::Freeze, .. }));
    let screen = c.screen(120, 40);
    assert!(screen.contains("budget freeze · stage 1/4"), "{screen}");
    insta::assert_snapshot!("budget_freeze_80x24", c.screen(80, 24));
    assert!(screen.contains("10.0 % of the error budget left (259 s), at most 25 % freezes"), "{screen}");
    let top: Vec<String> = rows(&screen)[..8].to_vec();
    assert!(top.iter().all(|r| !r.contains("awaiting approval")), "the state is the freeze: {screen}");
    assert!(screen.contains("→ awaiting approval · stage 1/4 · 1% — error budget frozen"), "{screen}");
    assert!(screen.contains("ETA 100%: waits for approval"), "{screen}");
    assert!(screen.contains(" freeze "), "the list says freeze: {screen}");

    // A gate ahead: the ETA says so instead of a time it cannot keep.
    let fleet = fleet_of(&["notifications"], None, |t| t.replace("budget_left_pct = 40", "budget_left_pct = 85")).await;
    let mut c = Cockpit::of(fleet, 3, "default").await;
    let screen = c.screen(120, 40);
    assert!(screen.contains("Next: approval for 25 % in 7:00  ETA 100%: waits for approval"), "{screen}");
    assert!(!screen.contains("ETA 100% in"), "{screen}");
}

#[tokio::test(start_paused = true)]
async fn an_override_reason_is_in_the_events_and_the_journal_and_history_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let fleet = frozen_checkout().await;
    let mut c = Cockpit::journaled(fleet, Some(data.path()), 14, "default").await;
    c.select(CHECKOUT);
    c.keys("Fhotfix for INC-42\ncheckout-api\n").await;
    let screen = c.screen(120, 40);
    assert!(screen.contains("alice override-freeze: “hotfix for INC-42”"), "{screen}");
    c.engine.shutdown().await;
    // The journal, not the `.lock` file beside it.
    let journal = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a journal");
    assert!(std::fs::read_to_string(&journal).unwrap().contains("hotfix for INC-42"));

    // A new cockpit on the same journals: the log starts with what happened.
    let fleet = frozen_checkout().await;
    let mut c = Cockpit::journaled(fleet, Some(data.path()), 1, "default").await;
    c.select(CHECKOUT);
    let screen = c.screen(120, 40);
    for line in [
        "0:00 pending → progressing · stage 1/4 · 1%",
        "alice override-freeze: “hotfix for INC-42”",
        "resumed from journal",
    ] {
        assert!(screen.contains(line), "{line} missing after the restart:\n{screen}");
    }
}

#[tokio::test(start_paused = true)]
async fn at_80x24_state_stage_and_weight_always_show_and_nothing_is_cut_silently() {
    let mut c = Cockpit::demo(20, "default").await;
    let ids: Vec<String> = c.app.view.rollouts.iter().map(|r| r.id.clone()).collect();
    for id in ids {
        c.select(&id);
        let r = c.rollout(&id);
        let screen = c.screen(80, 24);
        let header = &rows(&screen)[1];
        let stage = format!("{}/{}", r.stage + 1, r.stages().len());
        assert!(header.contains(&stage) && header.contains('%'), "{id}: {header}");
        assert!(header.contains(&r.plan().name), "the selected name is never cut: {header}");
        assert!(header.contains(&flightdeck::ui::app::state_label(&r)), "{id}: {header}");
        assert_no_cut_numbers(&screen);
        assert_footer_has_help_and_quit(&screen);
    }
    let small = c.screen(59, 15);
    assert!(small.contains("terminal too small (need 60×16, have 59×15)"), "{small}");
    insta::assert_snapshot!("too_small", small);
    // Narrower still, the message wraps rather than being cut.
    let tiny = c.screen(40, 10);
    assert!(tiny.contains("terminal too small") && tiny.contains("40×10)") && !tiny.contains('…'), "{tiny}");
    assert_no_cut_numbers(&c.screen(60, 16));
}

#[tokio::test(start_paused = true)]
async fn help_scrolls_with_keys_and_the_wheel() {
    let mut c = Cockpit::demo(1, "default").await;
    c.keys("?").await;
    let top = c.screen(80, 24);
    assert!(top.contains("Help 1–"), "{top}");
    assert_footer_has_help_and_quit(&top);
    c.keys("jj").await;
    assert!(c.screen(80, 24).contains("Help 3–"));
    c.app.on_mouse(MouseEventKind::ScrollDown, Position::new(40, 12));
    assert!(c.screen(80, 24).contains("Help 6–"));
    c.keys("G").await;
    let bottom = c.screen(80, 24);
    assert!(bottom.contains("config.toml"), "the end of the help: {bottom}");
    c.keys("g").await;
    assert_eq!(rows(&c.screen(80, 24))[1..], rows(&top)[1..], "back at the top (the clock aside)");
    c.keys("q").await;
    assert!(!c.app.help && !c.app.quit, "q closes the help");
}

#[tokio::test(start_paused = true)]
async fn full_screen_rollout_scrolls_its_events_and_shows_the_selected_one_whole() {
    let mut c = Cockpit::demo(30, "default").await;
    c.select(PAYMENTS);
    c.keys("\n").await;
    assert!(c.app.detail);
    let screen = c.screen(80, 24);
    assert!(!screen.contains("Rollouts"), "full-screen: {screen}");
    assert_footer_has_help_and_quit(&screen);
    // Up to the rollback: its whole reason, wrapped, not cut.
    c.keys("kk").await;
    let screen = c.screen(80, 24);
    let text: String =
        rows(&screen).iter().map(|r| r.trim_matches('│').trim().to_string()).collect::<Vec<_>>().join(" ");
    let reason = "progressing → rolled back · stage 2/4 · 0% — analysis failed (Critical): error rate canary 12.";
    assert!(text.contains(reason) && text.contains(" % vs stable 0."), "{screen}");
    assert!(text.contains("limit 1.00 pp)"), "the whole reason: {screen}");
    assert_no_cut_numbers(&screen);
    insta::assert_snapshot!("events_expanded_80x24", screen);
    // PgUp goes back further, the wheel too; Esc returns to the list.
    let before = c.app.event_cursor;
    c.app.run(flightdeck::ui::action::Action::PageUp);
    assert!(c.app.event_cursor < before);
    let area = c.app.events_area;
    c.app.on_mouse(MouseEventKind::ScrollDown, Position::new(area.x + 1, area.y + 1));
    c.keys("\x1b").await;
    assert!(!c.app.detail && c.screen(80, 24).contains("Rollouts"));
}

#[tokio::test(start_paused = true)]
async fn without_colour_the_selected_row_is_marked() {
    let mut c = Cockpit::demo(3, "mono").await;
    c.select(CHECKOUT);
    let screen = c.screen(80, 24);
    let marked: Vec<String> = rows(&screen).into_iter().filter(|r| r.starts_with("│>")).collect();
    assert_eq!(marked.len(), 1, "{screen}");
    assert!(marked[0].contains("chec…api"), "{}", marked[0]);
}

#[tokio::test(start_paused = true)]
async fn every_screen_at_three_sizes_keeps_help_and_quit_and_cuts_nothing_silently() {
    for (w, h) in [(80, 24), (120, 40), (200, 50)] {
        let mut c = Cockpit::demo(20, "default").await;
        c.select(CHECKOUT);
        let mut screens = vec![("list", c.screen(w, h))];
        c.keys("\n").await;
        screens.push(("detail", c.screen(w, h)));
        c.keys("\x1b?").await;
        screens.push(("help", c.screen(w, h)));
        c.keys("\x1b:pause \t").await;
        screens.push(("palette", c.screen(w, h)));
        c.keys("\x1ba").await;
        screens.push(("confirm", c.screen(w, h)));
        for (name, screen) in screens {
            assert_footer_has_help_and_quit(&screen);
            assert_no_cut_numbers(&screen);
            assert_no_cut_beside_room(&screen);
            insta::assert_snapshot!(format!("screen_{name}_{w}x{h}"), screen);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn palette_native_verbs_parse_their_argument_and_are_refused_for_driven_rollouts() {
    let mut c = Cockpit::demo(3, "default").await;
    c.select(CHECKOUT);
    let toast = |c: &Cockpit| c.app.toast.clone().map(|t| t.text).unwrap_or_default();
    assert!(c.keys(":set-image nginx\n").await.is_empty());
    assert!(toast(&c).contains("set-image: type container=image"), "{}", toast(&c));
    assert!(c.keys(":undo latest\n").await.is_empty());
    assert!(toast(&c).contains("`latest` is not a revision number"), "{}", toast(&c));
    // A simulated rollout is driven by flightdeck: the core refuses the native verb, no dialog opens.
    for line in [":set-image web=nginx:1.27\n", ":undo --to-revision=3\n", ":restart\n", ":terminate-analysis\n"] {
        assert!(c.keys(line).await.is_empty(), "{line}");
        assert!(c.app.modal.is_none(), "{line}");
        assert!(toast(&c).contains("is a native controller's verb"), "{line}: {}", toast(&c));
    }
}

#[tokio::test(start_paused = true)]
async fn a_viewer_sees_everything_but_no_rollout_action_and_sends_nothing() {
    let mut c = Cockpit::demo(1, "default").await;
    c.app.read_only = true;
    c.select(CHECKOUT);
    let screen = c.screen(200, 60);
    assert!(screen.contains("read-only") && screen.contains("checkout-api"), "{screen}");
    let captain = {
        c.app.read_only = false;
        let s = c.screen(200, 60);
        c.app.read_only = true;
        s
    };
    // The captain's footer offers a promote; the viewer's offers none.
    let offer = |s: &str| s.lines().last().unwrap_or("").to_lowercase().contains("promote");
    assert!(offer(&captain), "the captain's footer:\n{captain}");
    assert!(!offer(&screen), "a viewer's footer offers a promote:\n{screen}");
    c.keys("?").await;
    let help = c.screen(120, 40);
    for desc in ["Promote one stage", "Promote to 100 %", "Abort rollout"] {
        assert!(!help.contains(desc), "help offers {desc} to a viewer:\n{help}");
    }
    assert!(help.contains("Help") || help.contains("help"), "{help}");
    c.keys("\x1b").await;
    let before = c.rollout(CHECKOUT);
    assert!(c.keys("n").await.is_empty(), "a viewer's key sent a command");
    assert_eq!(c.rollout(CHECKOUT).stage, before.stage);
}

/// Every rollout key of every shipped keymap, pressed on every rollout of
/// the demo in the phases it goes through (progressing, waiting at a
/// production gate, paused, stepped back, rolled back, aborted;
/// production and staging): what the core says needs a "yes" opens a
/// dialog and the same key pressed again never confirms it; what it
/// refuses sends nothing and opens nothing; the rest is sent as asked.
#[tokio::test(start_paused = true)]
async fn an_action_key_pressed_twice_never_applies_what_needs_confirming() {
    use flightdeck::protocol::CommandRequest;
    use flightdeck::ui::app::command_for;
    use flightdeck::ui::keymap::{Keymap, Layer};
    use flightdeck_core::verbs::Ask;
    let (mut asked_twice, mut refused, mut sent_at_once) = (0, 0, 0);
    for keymap in flightdeck::ui::keymap::shipped_names() {
        for minutes in [1, 12, 30] {
            let mut c = Cockpit::demo(minutes, "default").await;
            c.app.keymap = Keymap::load(keymap, std::path::Path::new("/nonexistent")).unwrap();
            let keys: Vec<(String, flightdeck::ui::action::Action)> = c
                .app
                .keymap
                .bindings(Layer::Cockpit)
                .iter()
                .filter(|b| b.action.is_rollout_command() && b.keys.len() == 1)
                .map(|b| (b.key_name(), b.action))
                .filter(|(k, _)| k.chars().count() == 1)
                .collect();
            let ids: Vec<String> = c.app.view.rollouts.iter().map(|r| r.id.clone()).collect();
            for round in 0..2 {
                for id in &ids {
                    for (key, action) in &keys {
                        c.select(id);
                        let r = c.rollout(id);
                        let mut command = command_for(*action, &r, None);
                        if let Command::OverrideFreeze { .. } = command {
                            command = Command::OverrideFreeze { reason: "?".into() };
                        }
                        let request = CommandRequest {
                            rollout: id.clone(),
                            actor: Actor::new("alice"),
                            command: command.clone(),
                            expected_stage: r.stage,
                            expected_revision: r.canary_revision.clone(),
                            expected_step: None,
                        };
                        let ask = c.app.ask(&request).expect("the rollout exists");
                        let what = format!("{keymap} {minutes}m round {round}: {key} on {id} ({:?})", r.phase);
                        let first = c.keys(key).await;
                        match ask {
                            Ask::Refused(_) => {
                                refused += 1;
                                assert!(first.is_empty(), "{what}: refused, yet sent");
                                assert!(c.app.modal.is_none(), "{what}: a dialog for a refusal");
                            }
                            Ask::Send if !matches!(command, Command::OverrideFreeze { .. }) => {
                                sent_at_once += 1;
                                assert_eq!(first.len(), 1, "{what}");
                                assert_eq!(first[0].command, command, "{what}");
                            }
                            _ => {
                                asked_twice += 1;
                                assert!(first.is_empty(), "{what}: sent before the dialog");
                                assert!(c.app.modal.is_some(), "{what}: no dialog");
                                let before = c.rollout(id);
                                let second = c.keys(key).await;
                                assert!(second.is_empty(), "{what}: the second press confirmed: {second:?}");
                                assert!(c.app.modal.is_some(), "{what}: the second press closed the dialog");
                                assert_eq!(c.rollout(id).phase.label(), before.phase.label(), "{what}");
                                c.keys("\x1b").await;
                                assert!(c.app.modal.is_none(), "{what}: Esc closes");
                            }
                        }
                        c.keys("\x1b").await;
                    }
                }
                // Between rounds: one rollout aborted, so retry and friends meet it.
                c.select(CHECKOUT);
                c.keys("a\n").await;
                c.advance(3).await;
            }
        }
    }
    assert!(asked_twice > 50 && refused > 50 && sent_at_once > 20, "{asked_twice} {refused} {sent_at_once}");
}

/// A rollback stays loud (counted, on top under "needs a human", with its
/// reason) until someone acknowledges it with `x`; then it takes its place
/// in its cluster again, still rolled back.
#[tokio::test(start_paused = true)]
async fn a_rollback_stays_on_top_until_acknowledged() {
    let mut c = Cockpit::demo(30, "default").await;
    assert!(matches!(c.rollout(PAYMENTS).phase, Phase::RolledBack { .. }));
    let on_top = |c: &Cockpit| {
        c.app.visible().iter().take_while(|r| flightdeck_core::view::attention(r).is_some()).any(|r| r.id == PAYMENTS)
    };
    assert!(on_top(&c), "the rollback is among those on top");
    let screen = c.screen(120, 40);
    assert!(screen.contains("3 need a human"), "{screen}");
    c.select(PAYMENTS);
    let sent = c.keys("x").await;
    assert_eq!(sent.len(), 1, "acknowledging needs no yes");
    assert_eq!(sent[0].command, Command::Acknowledge);
    let r = c.rollout(PAYMENTS);
    assert!(matches!(r.phase, Phase::RolledBack { .. }), "still rolled back");
    assert_eq!(r.acknowledged.as_ref().map(|a| a.actor.0.as_str()), Some("alice"));
    let screen = c.screen(120, 40);
    assert!(screen.contains("2 need a human"), "{screen}");
    assert!(!on_top(&c), "back in its cluster");
    // A second press says it was done, and sends nothing.
    assert!(c.keys("x").await.is_empty());
    assert!(c.app.toast.as_ref().is_some_and(|t| t.text.contains("already acknowledged by alice")));
}

/// Full-screen, a rollout whose controller has objects (an Argo Rollout's
/// revisions, ReplicaSets, pods and analysis runs, as the k8s backend reads
/// them: tests/k8s.rs) shows them above its events.
#[tokio::test(start_paused = true)]
async fn full_screen_shows_the_controllers_revisions_replica_sets_pods_and_analysis_runs() {
    use flightdeck_core::tree::{NativeTree, TreeRow};
    let mut c = Cockpit::demo(12, "default").await;
    c.select(CHECKOUT);
    c.keys("\n").await;
    let row = |depth, kind: &str, name: &str, status: &str, info: &str| TreeRow {
        depth,
        kind: kind.into(),
        name: name.into(),
        status: status.into(),
        info: info.into(),
    };
    let tree = NativeTree {
        rows: vec![
            row(0, "revision", "revision:31", "", ""),
            row(1, "ReplicaSet", "checkout-65fb5ffc84", "Progressing", "canary · 0/1 available · shop/checkout:2.3.0"),
            row(2, "Pod", "checkout-65fb5ffc84-9wf5r", "ImagePullBackOff", "ready:0/1"),
            row(1, "AnalysisRun", "checkout-65fb5ffc84-31-1", "Running", "✔ 2 · error-rate=0.004"),
            row(0, "revision", "revision:30", "", ""),
            row(1, "ReplicaSet", "checkout-877894d5b", "Healthy", "stable · 2/2 available · shop/checkout:2.2.9"),
            row(2, "Pod", "checkout-877894d5b-6jfpt", "Running", "ready:1/1"),
            row(2, "Pod", "checkout-877894d5b-7jmqw", "Running", "ready:1/1,restarts:2"),
        ],
    };
    let mut snapshot = c.app.view.clone();
    let slot = snapshot.rollouts.iter().position(|r| r.id == CHECKOUT).unwrap();
    let mut r = flightdeck_core::Rollout::clone(&snapshot.rollouts[slot]);
    r.native_tree = Some(std::sync::Arc::new(tree));
    snapshot.rollouts[slot] = std::sync::Arc::new(r);
    c.app.on_snapshot(snapshot);
    let screen = c.screen(120, 40);
    assert!(screen.contains("Revisions · ReplicaSets · pods · analysis runs"), "{screen}");
    let line = rows(&screen).into_iter().find(|l| l.contains("□ checkout-65fb5ffc84-9wf5r")).expect("the canary pod");
    assert!(line.contains("ImagePullBackOff") && line.contains("ready:0/1"), "{line}");
    assert!(screen.contains("Events"), "the events keep their room: {screen}");
    assert_no_cut_numbers(&screen);
    insta::assert_snapshot!("full_screen_tree_120x40", screen);
    // Too little room: the tree gives way to the events.
    let small = c.screen(80, 24);
    assert!(small.contains("Events"), "{small}");
}
