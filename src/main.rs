use clap::{CommandFactory, Parser};
use color_eyre::config::Theme;
use flightdeck::cli::{Cli, Cmd, JournalCmd, RunOptions};
use flightdeck::clock::Clock;
use flightdeck::config::Config;
use flightdeck::engine::journal::{self, JournalError};
use flightdeck::engine::{Engine, EngineOptions, Interrupted, RolloutSetup, StopWhen};
use flightdeck::fleet::{self, BadInput};
use flightdeck::headless::{self, EXIT_BAD_INPUT};
use flightdeck::protocol::{Output, Role};
use flightdeck::share::roles::Roles;
use flightdeck::signals::Signals;
use flightdeck::ui::app::Driver;
use flightdeck::ui::CockpitSettings;
use flightdeck_core::time::Timestamp;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A file size limit must fail a journal write (which stops the rollout
    // and says why), not kill the process between a write and its effect.
    // SAFETY: setting a disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    // Everything flightdeck writes (journals, logs, keys, sockets) names
    // people, sessions and reasons: the user's alone whatever the umask.
    // (A socket shared with a group is opened up on purpose, by chmod.)
    // SAFETY: umask only sets the process's file creation mask.
    unsafe { libc::umask(0o077) };
    // Colours only for a person reading a terminal, never into a pipe or file.
    let theme = if std::io::stderr().is_terminal() { Theme::dark() } else { Theme::new() };
    let _ = color_eyre::config::HookBuilder::default().theme(theme).install();
    output_failures_exit();
    let cli = Cli::parse();
    // `serve` as a service (stderr not a terminal) logs to stderr, where its manager collects logs.
    let _log_guard = flightdeck::logging::init_for(matches!(cli.command, Some(Cmd::Serve { .. })));
    match run(cli) {
        Ok(code) => code,
        Err(Failure::BadInput(bad)) => {
            tell(format_args!("{bad}"));
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(Failure::Other(report)) => {
            // An error is not a bug: its causes, not a backtrace, unless a
            // developer asks for one at a terminal.
            let trace = std::env::var_os("RUST_BACKTRACE").is_some() && std::io::stderr().is_terminal();
            if trace {
                tell(format_args!("Error: {report:?}"));
            } else {
                tell(format_args!("Error: {report:#}"));
            }
            ExitCode::from(headless::EXIT_OTHER)
        }
    }
}

/// A line on stderr, if it can be written: the exit code says the rest.
fn tell(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Output that cannot be written (stdout or stderr on a full disk, a
/// closed pipe) is an error, exit 1, not a crash: `println!` and
/// `eprintln!` panic then, and a panic report that cannot be written
/// either would abort (134). Every other panic goes on to the report hook.
fn output_failures_exit() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str);
        let message = message.or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or_default();
        if message.starts_with("failed printing to std") {
            // Journals hold every record already; the OS releases their locks.
            tell(format_args!("flightdeck: {message}"));
            std::process::exit(headless::EXIT_OTHER.into());
        }
        report(info);
    }));
}

/// Approvers the socket's roles make viewers (named in `--viewers`, or left
/// out of a `--captains` list): their approvals would be refused, and a
/// stage that needs them could wait for ever. Said at start, once each.
fn approvers_who_cannot_approve(plans: &[(&str, &flightdeck_core::Plan)], roles: &Roles) -> Vec<String> {
    let mut warnings = Vec::new();
    for (file, plan) in plans {
        for stage in &plan.approvers {
            for name in &stage.names {
                let viewer = roles.viewers.iter().any(|v| v == name);
                let not_captain = !roles.captains.is_empty() && !roles.captains.iter().any(|c| c == name);
                if viewer || not_captain {
                    let why = if viewer { "is named in --viewers" } else { "is not in --captains" };
                    warnings.push(format!(
                        "{}: {name} approves stage {} but {why} on the socket: their approvals there will be \
                         refused (over SSH the key's role decides)",
                        file,
                        stage.stage + 1
                    ));
                }
            }
        }
    }
    warnings
}

/// Bad input is kept apart from other errors: it is the user's to fix, gets
/// exit code 2, and needs no backtrace.
enum Failure {
    BadInput(BadInput),
    Other(color_eyre::Report),
}

impl From<BadInput> for Failure {
    fn from(e: BadInput) -> Self {
        Failure::BadInput(e)
    }
}

impl From<color_eyre::Report> for Failure {
    fn from(e: color_eyre::Report) -> Self {
        Failure::Other(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(e.into())
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        None => {
            let config = Config::load(&flightdeck::paths::config_dir()).map_err(BadInput)?;
            if config.plans.is_empty() {
                // Nothing to watch yet: say what to run first, not a usage error.
                print!("{}", first_steps(&flightdeck::paths::config_dir().join("config.toml")));
                return Ok(ExitCode::SUCCESS);
            }
            let setups = runtime()?.block_on(fleet::from_files(&config.plans, None, 1))?;
            let run = RunOptions {
                headless: false,
                json: false,
                seed: 1,
                theme: None,
                keymap: None,
                unattended: Default::default(),
            };
            go(setups, &run, 1.0, false, None)
        }
        Some(Cmd::Completions { shell }) => {
            // Written whole, so a failed write is an error rather than clap_complete's panic.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "flightdeck", &mut script);
            let mut out = std::io::stdout().lock();
            std::io::Write::write_all(&mut out, &script).and_then(|_| std::io::Write::flush(&mut out))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Check { plans }) => {
            // What `run` refuses before it starts, `check` refuses too.
            // Every file is checked and every mistake said, not only the first file's.
            let config_dir = flightdeck::paths::config_dir();
            let mut refused = Vec::new();
            for path in &plans {
                if flightdeck::release::is_release(path) {
                    match flightdeck::release::check(path, &config_dir) {
                        Ok(spec) => println!("{}: ok ({})", path.display(), flightdeck::release::describe(&spec)),
                        Err(BadInput(why)) => refused.push(why),
                    }
                    continue;
                }
                match fleet::check(path, &config_dir) {
                    Ok(plan) => println!(
                        "{}: ok ({} {}, {} stages)",
                        path.display(),
                        plan.strategy_name(),
                        fleet::rollout_id(&plan),
                        plan.stages().len()
                    ),
                    Err(BadInput(why)) => refused.push(why),
                }
            }
            match refused.len() {
                0 => Ok(ExitCode::SUCCESS),
                1 => Err(BadInput(refused.remove(0)).into()),
                n => Err(BadInput(format!("{}\n{n} of {} plans refused", refused.join("\n"), plans.len())).into()),
            }
        }
        Some(Cmd::Analyze { file, plan, json }) => {
            let config = match plan {
                Some(path) => fleet::read_plan(&path)?.0.analysis,
                None => Default::default(),
            };
            let analysed = flightdeck::analyze::analyze(&file, &config)?;
            if json {
                for a in &analysed {
                    println!("{}", serde_json::to_string(a).map_err(color_eyre::Report::from)?);
                }
            } else {
                print!("{}", flightdeck::analyze::render(&analysed));
            }
            let failed = analysed.iter().any(|a| a.verdict.label() == "fail");
            Ok(if failed { ExitCode::from(headless::EXIT_ROLLED_BACK) } else { ExitCode::SUCCESS })
        }
        Some(Cmd::Journal { command: JournalCmd::Verify { file } }) => {
            let shown = file.display();
            if flightdeck::release::is_release_journal(&file) {
                return flightdeck::release::verify_journal(&file).map(|_| ExitCode::SUCCESS).map_err(Into::into);
            }
            let sound = journal::verify(&file).map_err(|e| BadInput(e.to_string()))?;
            if let Some(line) = sound.cut {
                let note = "note: the last line was cut short by a crash mid-write; a resume drops it";
                tell(format_args!("{shown}:{line}: {note}"));
            }
            let r = &sound.rollout;
            let (phase, stage, stages) = (r.phase.label(), r.stage.saturating_add(1), r.stages().len());
            println!("{shown}: ok ({} records; {}: {phase} at stage {stage}/{stages})", sound.records, r.id);
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Demo { run, speed, rollouts, release, flags }) => {
            let mut setups = runtime()?.block_on(flightdeck::demo::setups(rollouts as usize, run.seed))?;
            if flags {
                setups.push(runtime()?.block_on(flightdeck::demo::flag_setup(run.seed))?);
            }
            let release = match release {
                true => Some(runtime()?.block_on(flightdeck::release::demo(run.seed))?),
                false => None,
            };
            let release = release.map(|mut r| {
                setups.append(&mut r.setups);
                r
            });
            // The demo always starts over and keeps only its latest run's
            // journals (for `flightdeck analyze`): older ones are deleted.
            // Only with every run's lock: a demo still running keeps its journals.
            let dir = flightdeck::paths::journal_dir();
            let runs: Vec<(&str, &str)> = setups.iter().map(|s| (s.id.as_str(), s.plan_file.as_str())).collect();
            journal::remove_runs(&dir, &runs).map_err(|e| journal_refusal(e.into()))?;
            if let Some(r) = &release {
                flightdeck::release::remove_journal(&dir, r)?;
            }
            go(setups, &run, speed, true, release)
        }
        Some(Cmd::Serve { plans, plans_dir, share, speed, scenario, seed, fresh }) => {
            // A journal (and its lock) open per rollout.
            flightdeck::service::raise_open_file_limit();
            let runtime = runtime()?;
            let (mut setups, reload, removed) = serve_plans(plans, plans_dir, scenario.as_deref(), seed)?;
            let config = Config::load(&flightdeck::paths::config_dir()).map_err(BadInput)?;
            fleet::mark_production(&mut setups, &config.production_contexts);
            let options = engine_options(&setups, speed, fresh, StopWhen::Never);
            let mut listeners = listeners(&share, &config)?;
            (listeners.service.reload, listeners.service.removed) = (Some(reload), removed);
            let socket = share.socket.unwrap_or_else(flightdeck::paths::socket_path);
            let roles = Roles { captains: share.captains, viewers: share.viewers };
            roles.check().map_err(BadInput)?;
            let plans: Vec<(&str, &flightdeck_core::Plan)> =
                setups.iter().map(|s| (s.plan_file.as_str(), &s.plan)).collect();
            for warning in approvers_who_cannot_approve(&plans, &roles) {
                tell(format_args!("warning: {warning}"));
            }
            let group = share.socket_group.as_deref();
            let serving = flightdeck::share::serve(setups, options, &socket, group, roles, listeners);
            let signo = match runtime.block_on(serving) {
                // A reload whose config and plans checked out: serve again, in place.
                Ok(libc::SIGHUP) => return Err(color_eyre::Report::from(serve_again()).wrap_err("reload").into()),
                Ok(signo) => signo,
                // Stopped before the rollouts started: the same words and code.
                Err(e) => Interrupted::signal_in(&e).ok_or(e).map_err(refusal)?,
            };
            tell(format_args!(
                "stopped by {}; serve the same plans again to resume from the journal",
                Signals::name(signo)
            ));
            Ok(ExitCode::from(Signals::exit_code(signo)))
        }
        Some(Cmd::Attach { socket, name, theme, keymap }) => attach(socket, name, theme, keymap),
        Some(Cmd::Audit { plans, json }) => {
            let dir = flightdeck::paths::journal_dir();
            for path in &plans {
                if flightdeck::release::is_release(path) {
                    let Some(actions) = flightdeck::release::audit(&dir, path)? else {
                        let (file, dir) = (path.display(), dir.display());
                        tell(format_args!("{file}: no journal yet for this release (in {dir})"));
                        continue;
                    };
                    for action in &actions {
                        let line = match json {
                            true => serde_json::to_string(action).map_err(color_eyre::Report::from)?,
                            false => flightdeck::protocol::inert(&action.to_string()).into_owned(),
                        };
                        println!("{line}");
                    }
                    continue;
                }
                let (plan, _) = fleet::read_plan(path)?;
                let id = fleet::rollout_id(&plan);
                let file = path.display().to_string();
                let Some(actions) = journal::audit(&dir, &id, &file).map_err(|e| BadInput(e.to_string()))? else {
                    tell(format_args!("{file}: no journal yet for {id} (in {})", dir.display()));
                    continue;
                };
                if actions.is_empty() && !json {
                    // Silence would read as "nothing happened" and as "audit is broken" alike.
                    tell(format_args!("{file}: no commands journaled for {id} yet (in {})", dir.display()));
                }
                for action in &actions {
                    if json {
                        println!("{}", headless::json_line(action));
                    } else {
                        // What someone typed (a reason, a name) must not act on the auditor's terminal.
                        println!("{}", flightdeck::protocol::inert(&headless::audit_line(action)));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Run { plans, run, speed, scenario, fresh }) => {
            if let Some(path) = flightdeck::release::only_release(&plans)? {
                let mut release =
                    runtime()?.block_on(flightdeck::release::read(path, scenario.as_deref(), run.seed))?;
                let setups = std::mem::take(&mut release.setups);
                return go(setups, &run, speed, fresh, Some(release));
            }
            let setups = runtime()?.block_on(fleet::from_files(&plans, scenario.as_deref(), run.seed))?;
            go(setups, &run, speed, fresh, None)
        }
    }
}

/// One runtime for the whole process: backends may start tasks while they
/// are set up (Kubernetes watches), and those must keep running.
fn runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    Ok(RUNTIME.get_or_init(|| rt))
}

fn go(
    mut setups: Vec<RolloutSetup>,
    run: &RunOptions,
    speed: f64,
    fresh: bool,
    release: Option<flightdeck::release::ReleaseRun>,
) -> Result<ExitCode, Failure> {
    let config_dir = flightdeck::paths::config_dir();
    let config = Config::load(&config_dir).map_err(BadInput)?;
    // Checked even headless: a mistyped flag must not pass silently.
    flightdeck::ui::check_names(run.theme.as_deref(), run.keymap.as_deref(), &config_dir).map_err(BadInput)?;
    // JSON lines only make sense without the cockpit, so --json asks for headless.
    let headless = run.headless || run.json;
    fleet::mark_production(&mut setups, &config.production_contexts);
    let stop_when = if headless { StopWhen::Unattended } else { StopWhen::Never };
    let options = engine_options(&setups, speed, fresh, stop_when);
    let runtime = runtime()?;
    let (drivers, outcome) = flightdeck::release::drivers(release.as_ref(), &options)?;
    if headless {
        let summary = |s: &_| flightdeck::release::summarise(outcome.lock().expect("outcome").as_ref(), s);
        return runtime.block_on(headless::run_with(setups, options, run, drivers, summary)).map_err(journal_refusal);
    }
    if !flightdeck::ui::terminal::available() {
        return Err(BadInput("flightdeck needs a terminal; use --headless".into()).into());
    }
    let in_config = |e: String| BadInput(format!("{}: {e}", config_dir.join("config.toml").display()));
    flightdeck::ui::check_names(config.theme.as_deref(), config.keymap.as_deref(), &config_dir).map_err(in_config)?;
    let settings = CockpitSettings {
        theme: run.theme.clone().or(config.theme.clone()).unwrap_or_else(|| "default".into()),
        pin_theme: run.theme.is_some(),
        keymap: run.keymap.clone().or(config.keymap.clone()).unwrap_or_else(|| "default".into()),
        actor: config.actor(),
        mouse: config.mouse.unwrap_or(true),
        // A fresh run (the demo) starts over next time; otherwise the journals resume it.
        driver: Driver::Here { resumes: !fresh },
    };
    let plan_themes: Vec<String> = setups.iter().filter_map(|s| s.plan.theme.clone()).collect();
    let look = flightdeck::ui::load_look(&settings, &config_dir, &plan_themes).map_err(BadInput)?;
    match runtime.block_on(cockpit(setups, options, look, &settings, drivers)).map_err(journal_refusal)? {
        Some(signo) => {
            tell(format_args!(
                "stopped by {}; run the same command again to resume from the journal",
                Signals::name(signo)
            ));
            Ok(ExitCode::from(Signals::exit_code(signo)))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Simulated time when every rollout is simulated, else the wall clock;
/// journals in the data directory.
fn engine_options(setups: &[RolloutSetup], speed: f64, fresh: bool, stop_when: StopWhen) -> EngineOptions {
    let all_sim = setups.iter().all(|s| s.backend.simulation().is_some());
    if !all_sim && speed != 1.0 {
        tell(format_args!(
            "warning: --speed {speed} applies only when every plan is simulated; real systems run on the wall clock"
        ));
    }
    let clock = if all_sim { Clock::scaled(Timestamp(0), speed) } else { Clock::Wall };
    EngineOptions { clock, journal_dir: Some(flightdeck::paths::journal_dir()), fresh, stop_when }
}

/// `flightdeck attach`: a cockpit on a server's socket, with this user's
/// look; the server decides the role.
fn attach(
    socket: Option<std::path::PathBuf>,
    name: Option<String>,
    theme: Option<String>,
    keymap: Option<String>,
) -> Result<ExitCode, Failure> {
    let config_dir = flightdeck::paths::config_dir();
    let config = Config::load(&config_dir).map_err(BadInput)?;
    flightdeck::ui::check_names(theme.as_deref(), keymap.as_deref(), &config_dir).map_err(BadInput)?;
    if !flightdeck::ui::terminal::available() {
        return Err(BadInput("flightdeck attach needs a terminal".into()).into());
    }
    let socket = socket.unwrap_or_else(flightdeck::paths::socket_path);
    let mut settings = CockpitSettings {
        pin_theme: theme.is_some(),
        theme: theme.or(config.theme.clone()).unwrap_or_else(|| "default".into()),
        keymap: keymap.or(config.keymap.clone()).unwrap_or_else(|| "default".into()),
        actor: name.unwrap_or_else(|| config.actor()),
        mouse: config.mouse.unwrap_or(true),
        driver: Driver::Server,
    };
    let runtime = runtime()?;
    let signal = runtime.block_on(async {
        let mut signals = Signals::catch()?;
        let (link, welcome) =
            flightdeck::share::client::attach(&socket, &settings.actor).await.map_err(color_eyre::eyre::Report::msg)?;
        // Who the server says this is (the login name), not the display name sent.
        settings.actor = welcome.name.clone();
        let plan_themes: Vec<String> =
            link.snapshots.borrow().rollouts.iter().filter_map(|r| r.plan().theme.clone()).collect();
        let look =
            flightdeck::ui::load_look(&settings, &config_dir, &plan_themes).map_err(color_eyre::eyre::Report::msg)?;
        let (_, signal) = flightdeck::ui::open(link, look, &settings, welcome.role, signals.next()).await?;
        Ok::<_, color_eyre::Report>(signal)
    })?;
    println!("detached from {}; the rollouts go on in `flightdeck serve`", socket.display());
    Ok(match signal {
        Some(signo) => ExitCode::from(Signals::exit_code(signo)),
        None => ExitCode::SUCCESS,
    })
}

/// What `serve` runs: the plan files named, those in `--plans-dir`, and
/// the unfinished runs of plans removed from it (they go on from their
/// journals; each is warned about, and its viewers told); what a reload
/// re-reads.
#[allow(clippy::type_complexity)]
fn serve_plans(
    files: Vec<std::path::PathBuf>,
    dir: Option<std::path::PathBuf>,
    scenario: Option<&str>,
    seed: u64,
) -> Result<(Vec<RolloutSetup>, flightdeck::service::plans::Reload, Vec<(String, String)>), Failure> {
    use flightdeck::service::plans;
    let reload = plans::Reload {
        files,
        dir,
        config_dir: flightdeck::paths::config_dir(),
        journal_dir: flightdeck::paths::journal_dir(),
    };
    let files = reload.plan_files().map_err(BadInput)?;
    let runtime = runtime()?;
    let mut setups = runtime.block_on(fleet::from_files(&files, scenario, seed))?;
    let mut removed = Vec::new();
    for run in reload.removed_mid_way(&files) {
        let reason = plans::removed_reason(&run);
        tell(format_args!("warning: {reason}"));
        let plan = flightdeck_core::Plan::parse(&run.plan_file, &run.plan_text).map_err(|e| BadInput(e.to_string()))?;
        // The run's own scenario and seed, as its journal holds them.
        let (scenario, seed) = match &run.sim {
            Some(sim) => {
                (Some(sim.scenario.parse().map_err(|e| BadInput(format!("{}: {e}", run.plan_file)))?), sim.seed)
            }
            None => (None, seed),
        };
        setups.push(runtime.block_on(fleet::setup(plan, &run.plan_file, run.plan_text, scenario, seed))?);
        removed.push((run.rollout.id, reason));
    }
    Ok((setups, reload, removed))
}

/// `serve` again in this process (a checked reload): the same arguments but
/// `--fresh` (the rollouts resume from their journals). Returns only if it
/// could not.
fn serve_again() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let args = std::env::args_os().skip(1).filter(|a| a != "--fresh");
    match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe).args(args).exec(),
        Err(e) => e,
    }
}

/// The SSH listener's options, `--http` and the `[[notify]]` destinations;
/// authorized keys and notification secrets are read here so a bad line or
/// a missing secret stops the server (exit 2) before anything starts.
fn listeners(share: &flightdeck::cli::ShareOptions, config: &Config) -> Result<flightdeck::share::Listeners, Failure> {
    let sinks = if config.notify.is_empty() {
        Vec::new()
    } else {
        let file = flightdeck::paths::config_dir().join("config.toml");
        let shown = file.display().to_string();
        let text = flightdeck::files::read_text(&file).map_err(|e| BadInput(e.at(&shown, "config").to_string()))?;
        flightdeck::service::notify::resolve(&config.notify, &file, &text).map_err(BadInput)?
    };
    let service = flightdeck::service::ServiceOptions {
        http: share.http.clone(),
        sinks,
        #[cfg(feature = "k8s")]
        lease: share.leader_elect.then(|| flightdeck::service::lease::LeaseOptions {
            namespace: share.lease.lease_namespace.clone(),
            name: share.lease.lease_name.clone(),
            identity: share.lease.lease_identity.clone().unwrap_or_else(flightdeck::engine::journal::hostname),
            lease_duration: share.lease.lease_duration,
            renew_deadline: share.lease.lease_renew_deadline,
            retry_period: share.lease.lease_retry_period,
        }),
        reload: None,
        removed: Vec::new(),
    };
    #[cfg(feature = "ssh")]
    if let (Some(listen), Some(keys)) = (&share.ssh, &share.authorized_keys) {
        // Bounded, regular files only (a link to /dev/zero is refused, not read).
        let shown = keys.display().to_string();
        let text =
            flightdeck::files::read_text(keys).map_err(|e| BadInput(e.at(&shown, "authorized keys").to_string()))?;
        flightdeck::share::ssh::keys::AuthorizedKeys::parse(&shown, &text).map_err(BadInput)?;
        let ssh = flightdeck::share::ssh::SshOptions { listen: listen.clone(), authorized_keys: keys.clone() };
        return Ok(flightdeck::share::Listeners { ssh: Some(ssh), service });
    }
    Ok(flightdeck::share::Listeners { service, ..Default::default() })
}

/// A server that cannot start as asked (socket held by another, journal
/// refusal) is the user's to settle: exit 2.
fn refusal(report: color_eyre::Report) -> Failure {
    if let Some(e) = report.downcast_ref::<flightdeck::share::server::BindError>() {
        if !matches!(e, flightdeck::share::server::BindError::Io { .. }) {
            return Failure::BadInput(BadInput(e.to_string()));
        }
    }
    journal_refusal(report)
}

/// The engine in this process and the cockpit on it, as its captain.
/// Rollouts keep their journals, so quitting mid-rollout resumes next
/// time; the event log starts with what the journals of resumed runs hold.
async fn cockpit(
    setups: Vec<RolloutSetup>,
    options: EngineOptions,
    look: flightdeck::ui::Look,
    settings: &CockpitSettings,
    drivers: Vec<flightdeck::engine::Driver>,
) -> color_eyre::Result<Option<i32>> {
    // Before anything starts, so no signal falls between start and catching.
    let mut signals = Signals::catch()?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Output>(1024);
    let engine = match Engine::start_with(setups, options, tx, drivers) {
        Ok(engine) => engine,
        // A signal while the journals were opened: nothing started, no terminal taken.
        Err(e) => return Interrupted::signal_in(&e).map(Some).ok_or(e),
    };
    let link = engine.link(rx);
    let result = flightdeck::ui::open(link, look, settings, Role::Captain, signals.next()).await;
    // Every record is already on disk: no task is left half-way through a write.
    engine.shutdown().await;
    let (summary, signal) = result?;
    // After the alternate screen is gone: where every rollout was left.
    for line in summary {
        println!("{line}");
    }
    Ok(signal)
}

/// Plain `flightdeck` with no plans configured: what to run first.
fn first_steps(config: &std::path::Path) -> String {
    format!(
        "flightdeck: a terminal cockpit for progressive delivery\n\
         \n\
         No plans to watch yet. Try:\n\
         \x20 flightdeck demo                 the cockpit on a simulated fleet (one canary goes bad)\n\
         \x20 flightdeck run PLAN.toml        run the rollouts a plan file describes (examples/plans/)\n\
         \x20 flightdeck check PLAN.toml      validate plan files without running them\n\
         \x20 flightdeck --help               every command and option\n\
         \n\
         Plain `flightdeck` opens the plans listed in {}:\n\
         \x20 plans = [\"/path/to/plan.toml\"]\n",
        config.display()
    )
}

/// A journal that cannot be resumed (written by another run, held by a
/// running one, or damaged) is the user's to settle: exit 2, no backtrace,
/// and the way out.
fn journal_refusal(report: color_eyre::Report) -> Failure {
    match report.downcast_ref::<JournalError>() {
        Some(e) if e.is_refusal() => match e.way_out() {
            Some(way_out) => Failure::BadInput(BadInput(format!("{e}\n{way_out}"))),
            None => Failure::BadInput(BadInput(e.to_string())),
        },
        _ => Failure::Other(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvers_the_socket_makes_viewers_are_warned_about_at_start() {
        let text = "[rollout]\nname = \"checkout\"\nstable = \"v1\"\ncanary = \"v2\"\n\n[target]\nbackend = \"sim\"\n\
                    group = \"sim\"\n\n[[strategy.stages]]\nweight = 10\nbake = \"1m\"\n\n[[strategy.stages]]\n\
                    weight = 100\nbake = \"0s\"\napprovers = [\"alice\", \"carol\"]\n";
        let plan = flightdeck_core::Plan::parse("approvers.toml", text).unwrap();
        let plans = [("approvers.toml", &plan)];
        let roles = Roles { captains: vec![], viewers: vec!["carol".into()] };
        let warnings = approvers_who_cannot_approve(&plans, &roles);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("approvers.toml: carol approves stage 2 but is named in --viewers"));
        let roles = Roles { captains: vec!["alice".into()], viewers: vec![] };
        let warnings = approvers_who_cannot_approve(&plans, &roles);
        assert!(warnings[0].contains("carol approves stage 2 but is not in --captains"), "{warnings:?}");
        let roles = Roles { captains: vec!["alice".into(), "carol".into()], viewers: vec![] };
        assert!(approvers_who_cannot_approve(&plans, &roles).is_empty());
    }
}
