//! The cockpit in a real terminal: `flightdeck demo` in tmux at 120×40,
//! driven with send-keys and read back with capture-pane; and after every
//! way it can end (q, SIGTERM, SIGINT, SIGHUP, SIGQUIT, a panic), the
//! terminal as it was: `stty -a` unchanged, no alternate screen, no mouse
//! tracking, the cursor shown. `scripts/setup` installs tmux.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::tmux::Tmux;

#[test]
fn demo_in_a_real_terminal_pauses_promotes_aborts_and_catches_the_bad_canary() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let cmd = format!(
        "env FLIGHTDECK_DATA_DIR={} FLIGHTDECK_CONFIG_DIR={} USER=tester COLORTERM=truecolor {} demo --speed 60",
        data.path().display(),
        config.path().display(),
        support::cli::BIN
    );
    let t = Tmux::start(&cmd);
    let shown = t.wait_within(
        &["Rollouts", "Stages", "Canary analysis", "Error budget", "Events", "Next:"],
        Duration::from_secs(10),
    );
    println!("every pane on screen after {:?}", shown.0);

    t.keys(&["/", "c", "h", "e", "c", "k", "o", "u", "t", "Enter"]);
    t.wait_within(&["checkout-api  ▶ progressing"], Duration::from_secs(3));

    t.keys(&["p"]);
    t.wait_within(&["paused by tester"], Duration::from_secs(3));
    t.keys(&["p"]);
    t.wait_within(&["▶ progressing"], Duration::from_secs(3));

    t.keys(&["n"]);
    t.wait_within(&["Stage 2/4", "promote sent"], Duration::from_secs(3));

    t.keys(&["a"]);
    t.wait_within(&["Abort checkout-api?", "→ 0 % on sim prod-eu-1"], Duration::from_secs(3));
    t.keys(&["Enter"]);
    t.wait_within(&["aborted by tester"], Duration::from_secs(3));

    // The bad canary goes bad at 10 % (after its 10 minute first stage) and
    // analysis rolls it back by itself.
    t.keys(&["/", "p", "a", "y", "m", "e", "n", "t", "s", "Enter"]);
    let caught = t.wait_within(&["payments", "rolled back", "analysis failed"], Duration::from_secs(40));
    println!("bad canary rolled back on screen after {:?}", caught.0);

    t.keys(&["q"]);
}

/// Waits for `path` to hold a whole line.
fn wait_for_file(path: &std::path::Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => return text,
            _ => assert!(start.elapsed() < limit, "waited {limit:?} for {}", path.display()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pid of the shell's foreground child (the cockpit).
fn cockpit_pid(t: &Tmux) -> String {
    let shell = t.pane("#{pane_pid}");
    let children = format!("/proc/{shell}/task/{shell}/children");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next() {
            return pid.to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no cockpit under shell {shell}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the cockpit from a shell in tmux, ends it by `end` (a key, a
/// signal name for `kill -s`, or "panic"), and checks the exit code and
/// that the terminal is as it was before.
fn ends_with_the_terminal_as_it_was(end: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let t = Tmux::start("bash --norc --noprofile");
    let panic = if end == "panic" { "FLIGHTDECK_PANIC_IN_COCKPIT=1 " } else { "" };
    t.type_line(&format!(
        "cd {} && stty -a > before; {panic}FLIGHTDECK_DATA_DIR=data FLIGHTDECK_CONFIG_DIR=config {} demo --speed 60; \
         echo $? > code; stty -a > after",
        dir.path().display(),
        support::cli::BIN
    ));
    if end != "panic" {
        t.wait_within(&["Rollouts", "Events"], Duration::from_secs(10));
        assert_eq!(t.pane("#{alternate_on} #{mouse_any_flag}"), "1 1", "the cockpit took the terminal");
        match end {
            "q" => {
                // Rollouts are moving in the demo: `q` asks first; Enter answers.
                t.keys(&["q"]);
                t.wait_within(&["Quit flightdeck?"], Duration::from_secs(10));
                t.keys(&["Enter"]);
            }
            signal => {
                let pid = cockpit_pid(&t);
                assert!(Command::new("kill").args(["-s", signal, &pid]).status().unwrap().success());
            }
        }
    }
    let exit = wait_for_file(&dir.path().join("code"), Duration::from_secs(10));
    assert_eq!(exit.trim(), code.to_string(), "exit code after {end}; screen:\n{}", t.screen());
    let after = wait_for_file(&dir.path().join("after"), Duration::from_secs(5));
    let before = std::fs::read_to_string(dir.path().join("before")).unwrap();
    assert_eq!(after, before, "stty -a after {end}");
    let state =
        "#{alternate_on} #{mouse_any_flag} #{mouse_button_flag} #{mouse_all_flag} #{mouse_sgr_flag} #{cursor_flag}";
    assert_eq!(t.pane(state), "0 0 0 0 0 1", "alternate screen, mouse tracking off, cursor shown after {end}");
}

#[test]
fn q_restores_the_terminal() {
    ends_with_the_terminal_as_it_was("q", 0);
}

#[test]
fn sigterm_restores_the_terminal_and_exits_143() {
    ends_with_the_terminal_as_it_was("TERM", 143);
}

#[test]
fn sigint_restores_the_terminal_and_exits_130() {
    ends_with_the_terminal_as_it_was("INT", 130);
}

#[test]
fn sighup_restores_the_terminal_and_exits_129() {
    ends_with_the_terminal_as_it_was("HUP", 129);
}

#[test]
fn sigquit_restores_the_terminal_and_exits_131() {
    ends_with_the_terminal_as_it_was("QUIT", 131);
}

#[test]
fn a_panic_restores_the_terminal_and_exits_101() {
    ends_with_the_terminal_as_it_was("panic", 101);
}

/// `flightdeck demo` in tmux with its own data and config dirs.
fn demo_command(data: &std::path::Path, config: &std::path::Path, speed: &str) -> String {
    format!(
        "env FLIGHTDECK_DATA_DIR={} FLIGHTDECK_CONFIG_DIR={} USER=tester COLORTERM=truecolor {} demo --speed {speed}",
        data.display(),
        config.display(),
        support::cli::BIN
    )
}

/// A tired captain at a production gate: `y` `y` (approve twice) opens
/// the approval once and leaves it asking, `n` `n` (promote twice) too;
/// only Enter approves. The core decides that the gate's promote is an
/// approval and that production asks.
#[test]
fn a_double_press_never_passes_a_production_gate() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let t = Tmux::start(&demo_command(data.path(), config.path(), "120"));
    t.wait_within(&["Rollouts"], Duration::from_secs(10));
    t.type_line("/notifications");
    t.wait_within(&["notifications", "awaiting approval · stage 1/3 · 5 %"], Duration::from_secs(30));
    for key in ["y", "n"] {
        t.keys(&[key, key]);
        t.wait_within(&["Approve notifications into stage 2/3?", "PRODUCTION"], Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(500));
        let screen = t.screen();
        assert!(screen.contains("awaiting approval · stage 1/3 · 5 %"), "{key} {key} passed the gate:\n{screen}");
        assert!(!screen.contains(" sent to "), "{key} {key} sent a command:\n{screen}");
        t.keys(&["Escape"]);
    }
    t.keys(&["y"]);
    t.wait_within(&["Approve notifications into stage 2/3?"], Duration::from_secs(3));
    t.keys(&["Enter"]);
    t.wait_within(&["approve sent to prod-ap-1/notifications", "stage 2/3"], Duration::from_secs(5));
    t.keys(&["q", "Enter"]);
}

/// Every key that asks first, pressed twice in a real terminal on a
/// production canary that is baking: each opens its question (or the
/// status line says why not) and the second press answers nothing; the
/// rollout is where it was.
#[test]
fn dangerous_keys_pressed_twice_only_ask() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let t = Tmux::start(&demo_command(data.path(), config.path(), "1"));
    t.wait_within(&["Rollouts"], Duration::from_secs(10));
    t.type_line("/checkout");
    t.wait_within(&["checkout-api  ▶ progressing · stage 1/4 · 1 %"], Duration::from_secs(10));
    for (key, question) in [
        ("a", "Abort checkout-api?"),
        ("R", "Roll back checkout-api?"),
        ("N", "Type checkout-api to confirm"),
        ("t", "retry is not possible while progressing"),
        ("F", "the error budget is not frozen"),
    ] {
        t.keys(&[key, key]);
        t.wait_within(&[question], Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(300));
        let screen = t.screen();
        assert!(screen.contains("▶ progressing · stage 1/4 · 1 %"), "{key} {key} acted:\n{screen}");
        assert!(!screen.contains(" sent to "), "{key} {key} sent a command:\n{screen}");
        t.keys(&["Escape"]);
    }
    t.keys(&["q", "Enter"]);
}

/// The list row of a rollout (its name is cut to fit at 80 columns).
fn row_of<'a>(screen: &'a str, name: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.starts_with('│') && l.contains(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{screen}"))
}

#[test]
fn palette_pause_with_a_name_pauses_that_rollout_and_only_it() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    // Real time: nothing moves by itself during the test.
    let t = Tmux::sized(&demo_command(data.path(), config.path(), "1"), 80, 24);
    t.wait_within(&["Rollouts", "? Help", "q Quit"], Duration::from_secs(10));
    t.keys(&["/", "c", "h", "e", "c", "k", "Enter"]);
    t.wait_within(&[">▶ chec…api"], Duration::from_secs(3));
    t.keys(&["Escape"]);
    t.wait_within(&["noti…ons", "user…ile"], Duration::from_secs(3));
    t.keys(&[":", "p", "a", "u", "s", "e", " ", "u", "Tab"]);
    t.wait_within(&[":pause user-profile"], Duration::from_secs(3));
    t.keys(&["Enter"]);
    let screen = t.screen();
    t.wait_within(&["pause sent to staging/user-profile"], Duration::from_secs(3));
    let screen = if screen.contains("pause sent") { screen } else { t.screen() };
    assert!(row_of(&screen, "user…ile").contains("paused"), "{screen}");
    assert!(row_of(&screen, "chec…api").starts_with("│>▶"), "the selected one keeps going:\n{screen}");
    for other in ["chec…api", "payments", "reco…ons", "search", "noti…ons"] {
        assert!(!row_of(&screen, other).contains("paused"), "{other} paused:\n{screen}");
    }
    // An unknown name sends nothing and says why.
    t.keys(&[":", "a", "b", "o", "r", "t", " ", "n", "o", "p", "e", "Enter"]);
    t.wait_within(&["no rollout named `nope`"], Duration::from_secs(3));
}

#[test]
fn quitting_mid_rollout_asks_once_and_prints_where_each_rollout_was_left() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    // The shell stays after flightdeck exits, so what it printed can be read.
    let cmd = format!("sh -c '{}; echo flightdeck exited $?; sleep 60'", demo_command(data.path(), config.path(), "1"));
    let t = Tmux::sized(&cmd, 120, 40);
    t.wait_within(&["Rollouts", "? Help", "q Quit"], Duration::from_secs(10));
    t.keys(&["q"]);
    t.wait_within(&["Quit flightdeck?", "rollouts are mid-way", "<Enter> quit"], Duration::from_secs(3));
    t.keys(&["Enter"]);
    let screen_after = {
        t.wait_within(&["flightdeck exited 0"], Duration::from_secs(5));
        t.screen()
    };
    for line in [
        "flightdeck stopped; the demo's rollouts ended where they were",
        "prod-eu-1/checkout-api: progressing · stage 1/4 · canary v2.3.0 1 % · held",
        "staging/user-profile: progressing · stage 1/3 · canary v1.13.0-rc1 10 % · held",
    ] {
        assert!(screen_after.contains(line), "{line} missing after quitting:\n{screen_after}");
    }
}

#[test]
fn plain_flightdeck_without_plans_says_what_to_run_first() {
    let config = tempfile::tempdir().unwrap();
    let out = Command::new(support::cli::BIN)
        .env("FLIGHTDECK_CONFIG_DIR", config.path())
        .env("FLIGHTDECK_DATA_DIR", config.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for first in ["flightdeck demo", "flightdeck run PLAN.toml", "flightdeck check PLAN.toml", "config.toml"] {
        assert!(text.contains(first), "{first} missing:\n{text}");
    }
}

#[test]
fn mouse_capture_can_be_turned_off_in_the_config() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("config.toml"), "mouse = false\n").unwrap();
    let t = Tmux::sized(&demo_command(data.path(), config.path(), "1"), 80, 24);
    t.wait_within(&["Rollouts"], Duration::from_secs(10));
    assert_eq!(t.pane("#{mouse_any_flag}"), "0", "no mouse reporting asked for");
    t.keys(&["q", "Enter"]);

    // Without the setting the cockpit asks the terminal for mouse events.
    let config = tempfile::tempdir().unwrap();
    let t = Tmux::sized(&demo_command(data.path(), config.path(), "1"), 80, 24);
    t.wait_within(&["Rollouts"], Duration::from_secs(10));
    assert_eq!(t.pane("#{mouse_any_flag}"), "1");
}

#[test]
fn the_cockpit_follows_the_terminal_as_it_is_resized() {
    // The viewport is set from resize events only (no size query per
    // frame): smaller than the cockpit needs, then back.
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!(
        "FLIGHTDECK_DATA_DIR={0}/data FLIGHTDECK_CONFIG_DIR={0}/config {1} demo --speed 1",
        dir.path().display(),
        support::cli::BIN
    );
    let t = Tmux::sized(&cmd, 100, 30);
    t.wait_within(&["Rollouts", "Events"], Duration::from_secs(10));
    t.resize(58, 15);
    t.wait_within(&["terminal too small", "58×15"], Duration::from_secs(10));
    t.resize(130, 40);
    t.wait_within(&["Rollouts", "Events"], Duration::from_secs(10));
    let widest = t.screen().lines().map(|l| l.trim_end().chars().count()).max().unwrap_or(0);
    assert!(widest > 100, "the cockpit uses the 130 columns it has now (widest line {widest})");
}

/// Waits until process `pid` has ended.
fn wait_gone(pid: &str) {
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "process {pid} still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A shell in tmux running `flightdeck demo` in `dir`, its cockpit on
/// screen: for the tests where the shell itself matters (job control).
fn demo_in_a_shell(dir: &std::path::Path) -> Tmux {
    let t = Tmux::start("bash --norc --noprofile");
    t.type_line(&format!(
        "cd {} && FLIGHTDECK_DATA_DIR=data FLIGHTDECK_CONFIG_DIR=config {} demo --speed 60",
        dir.display(),
        support::cli::BIN
    ));
    t.wait_within(&["Rollouts", "Events"], Duration::from_secs(10));
    t
}

/// Ctrl-Z gives the shell its terminal (main screen, no mouse tracking,
/// cooked mode) and stops the cockpit; `fg` brings it back, redrawn whole.
#[test]
fn ctrl_z_gives_the_shell_its_terminal_and_fg_brings_the_cockpit_back() {
    let dir = tempfile::tempdir().unwrap();
    let t = demo_in_a_shell(dir.path());
    assert_eq!(t.pane("#{alternate_on} #{mouse_any_flag}"), "1 1", "the cockpit took the terminal");
    let pid = cockpit_pid(&t);
    t.keys(&["C-z"]);
    t.wait_within(&["Stopped"], Duration::from_secs(5));
    assert_eq!(t.pane("#{alternate_on} #{mouse_any_flag} #{cursor_flag}"), "0 0 1", "the shell's terminal after C-z");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next()).unwrap();
    assert_eq!(state, Some('T'), "the cockpit is stopped: {stat}");
    // The shell reads lines again (cooked mode, echo on).
    t.type_line("echo back-$((1+1))");
    t.wait_within(&["back-2"], Duration::from_secs(5));
    fg_then_quit(&t, dir.path(), &pid);
}

/// `fg` brings the stopped cockpit back (it takes the whole terminal
/// again: nothing the shell printed meanwhile shows); quitting it then ends
/// the job with `fg`'s exit code 0.
fn fg_then_quit(t: &Tmux, dir: &std::path::Path, pid: &str) {
    t.type_line("fg");
    t.wait_within(&["Rollouts", "Events", "Next:"], Duration::from_secs(10));
    assert_eq!(t.pane("#{alternate_on} #{mouse_any_flag}"), "1 1", "the cockpit took the terminal again");
    let screen = t.screen();
    assert!(!screen.contains("back-"), "the whole screen is the cockpit's again:\n{screen}");
    t.keys(&["q"]);
    t.wait_within(&["Quit flightdeck?"], Duration::from_secs(10));
    t.keys(&["Enter"]);
    // A list would go on when its job stops: the exit code is `fg`'s.
    wait_gone(pid);
    t.type_line("echo $? > code");
    let exit = wait_for_file(&dir.join("code"), Duration::from_secs(10));
    assert_eq!(exit.trim(), "0", "screen:\n{}", t.screen());
}

/// SIGTSTP sent from elsewhere stops the cockpit the same way; SIGCONT
/// (as `bg` would, but in the foreground) takes the terminal again.
#[test]
fn sigtstp_gives_the_terminal_back_and_sigcont_takes_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let t = demo_in_a_shell(dir.path());
    let pid = cockpit_pid(&t);
    assert!(Command::new("kill").args(["-s", "TSTP", &pid]).status().unwrap().success());
    t.wait_within(&["Stopped"], Duration::from_secs(5));
    assert_eq!(t.pane("#{alternate_on} #{mouse_any_flag} #{cursor_flag}"), "0 0 1", "after SIGTSTP");
    t.type_line("echo back-$((2+2))");
    t.wait_within(&["back-4"], Duration::from_secs(5));
    fg_then_quit(&t, dir.path(), &pid);
}

/// A dialog over live panes at 80×24: on its rows, nothing of the text
/// beneath shows beside its edges (a cut `%` or `)` reads as part of the
/// dialog), while the panes' borders stay; checked after the panes below
/// have redrawn a few times.
#[test]
fn a_dialog_leaves_no_fragments_of_the_text_beneath_beside_it() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let t = Tmux::sized(&demo_command(data.path(), config.path(), "120"), 80, 24);
    t.wait_within(&["Rollouts"], Duration::from_secs(10));
    t.type_line("/payments");
    t.wait_within(&["payments  ▶ progressing"], Duration::from_secs(10));
    t.keys(&["a"]);
    t.wait_within(&["Abort payments?"], Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(2500));
    let screen = t.screen();
    let rows: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let top = rows.iter().position(|r| r.iter().collect::<String>().contains("┌ Abort payments?")).expect("dialog");
    let left = rows[top].iter().position(|c| *c == '┌').unwrap();
    let right = left + rows[top][left..].iter().position(|c| *c == '┐').unwrap();
    let bottom = top + rows[top..].iter().position(|r| r.get(left) == Some(&'└')).expect("dialog bottom");
    let box_drawing = |c: &char| *c == ' ' || ('\u{2500}'..='\u{257f}').contains(c);
    for row in &rows[top..=bottom] {
        let beside: Vec<&char> = row[..left].iter().chain(row.iter().skip(right + 1)).collect();
        assert!(
            beside.iter().all(|c| box_drawing(c)),
            "text beneath shows beside the dialog: {:?}\n{screen}",
            row.iter().collect::<String>()
        );
    }
    t.keys(&["Escape", "q", "Enter"]);
}
