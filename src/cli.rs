//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "flightdeck", version, about = "A terminal cockpit for progressive delivery")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the simulator's demo fleet: six rollouts over several clusters, one goes bad.
    Demo {
        #[command(flatten)]
        run: RunOptions,
        /// Simulated time runs this many times faster than real time.
        #[arg(long, default_value_t = 30.0, value_parser = positive)]
        speed: f64,
        /// How many rollouts: the six demo shapes repeated over many clusters (scale demos).
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rollouts: u32,
        /// Also run a release across five pretend regions in three waves; one region goes bad and the release halts.
        #[arg(long)]
        release: bool,
        /// Also run a feature flag's gradual rollout; its new code path goes bad and the flag goes back to 0 %.
        #[arg(long)]
        flags: bool,
    },
    /// Run the rollouts the plan files describe.
    Run {
        /// Plan files (TOML).
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        #[command(flatten)]
        run: RunOptions,
        /// Simulated time runs this many times faster (sim targets only).
        #[arg(long, default_value_t = 1.0, value_parser = positive)]
        speed: f64,
        /// Simulator scenario, overriding the one a `sim` target names.
        #[arg(long, value_parser = Offered(scenario_names))]
        scenario: Option<String>,
        /// Ignore unfinished journals and start over (old journals are kept aside).
        #[arg(long)]
        fresh: bool,
    },
    /// Validate plan files; exits 2 on the first invalid one.
    Check {
        #[arg(required = true)]
        plans: Vec<PathBuf>,
    },
    /// Decide a file of metrics windows (or a rollout's journal) window by
    /// window, as the engine would, and print each verdict with its evidence.
    /// Exits 3 if any window fails.
    Analyze {
        /// JSON lines of windows (`{"window": "1m", "stable": {…}, "canary": {…}}`), or a journal.
        file: PathBuf,
        /// Take the thresholds from this plan's `[analysis]` (windows files; a journal has its own).
        #[arg(long)]
        plan: Option<PathBuf>,
        /// One JSON object per window.
        #[arg(long)]
        json: bool,
    },
    /// Rollout journals (`<data dir>/journal/*.jsonl`).
    Journal {
        #[command(subcommand)]
        command: JournalCmd,
    },
    /// Run the rollouts headless and share them on a Unix socket: any
    /// number of `flightdeck attach` cockpits watch and act on them.
    Serve {
        /// Plan files (TOML). With none and no --plans-dir: the config's `plans`.
        plans: Vec<PathBuf>,
        /// Also every `*.toml` in this directory, watched: a new plan file starts its rollout, and
        /// a change reloads (as SIGHUP does: checked first, all or nothing).
        #[arg(long, value_name = "DIR")]
        plans_dir: Option<PathBuf>,
        #[command(flatten)]
        share: ShareOptions,
        /// Simulated time runs this many times faster (sim targets only).
        #[arg(long, default_value_t = 1.0, value_parser = positive)]
        speed: f64,
        /// Simulator scenario, overriding the one a `sim` target names.
        #[arg(long, value_parser = Offered(scenario_names))]
        scenario: Option<String>,
        /// Seed for the simulator (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Ignore unfinished journals and start over (old journals are kept aside).
        #[arg(long)]
        fresh: bool,
    },
    /// Open a cockpit on the rollouts a `flightdeck serve` shares.
    Attach {
        /// The server's socket.
        #[arg(long, env = "FLIGHTDECK_SOCKET")]
        socket: Option<PathBuf>,
        /// A display name shown beside your session (default: the config's `actor`, else $USER):
        /// 1 to 32 of A-Z a-z 0-9 . _ - @. Your actions carry your login name, which the
        /// server learns from the socket, never this.
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
        /// Cockpit theme.
        #[arg(long, value_parser = Offered(theme_names))]
        theme: Option<String>,
        /// Cockpit keymap: a shipped one or a user keymap.
        #[arg(long, value_parser = Offered(keymap_names))]
        keymap: Option<String>,
    },
    /// Every command sent to a plan's rollout, applied or refused: when,
    /// who, from which session, the stage and revision they saw, and why
    /// a refused one was refused.
    Audit {
        /// Plan files (TOML) whose journals to read.
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum JournalCmd {
    /// Check a journal as a resume reads it, and replay it: exits 0 when it
    /// is sound, 2 with the first problem as `file:line: what is wrong`.
    Verify { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct ShareOptions {
    /// Where to listen (default: `serve.sock` in the runtime directory).
    #[arg(long, env = "FLIGHTDECK_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Only these users may act (login names or #UID, comma-separated); everyone else watches.
    /// Without it only the user running serve may act.
    #[arg(long, value_delimiter = ',', value_name = "USERS")]
    pub captains: Vec<String>,
    /// These users only watch (login names or #UID, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "USERS")]
    pub viewers: Vec<String>,
    /// Share the socket with this group (mode 0660): its members attach as
    /// themselves, with the roles --captains and --viewers give them.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Also serve /healthz, /readyz and /metrics (Prometheus) over plain HTTP on this address
    /// (e.g. 127.0.0.1:9464): anyone who reaches it reads rollout names and states.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Drive only while holding a Kubernetes Lease (coordination.k8s.io/v1): run two or more
    /// replicas; one drives, the others stand by and take over when its lease expires.
    #[cfg(feature = "k8s")]
    #[arg(long)]
    pub leader_elect: bool,
    #[cfg(feature = "k8s")]
    #[command(flatten)]
    pub lease: Box<LeaseArgs>,
    /// Also serve the cockpit over SSH on this address (e.g. 127.0.0.1:2222).
    #[cfg(feature = "ssh")]
    #[arg(long, value_name = "ADDR", requires = "authorized_keys")]
    pub ssh: Option<String>,
    /// The keys that may sign in over SSH, with their names and roles
    /// (`role=captain,name=alice ssh-ed25519 AAAA… alice@laptop`).
    #[cfg(feature = "ssh")]
    #[arg(long, value_name = "FILE", requires = "ssh")]
    pub authorized_keys: Option<PathBuf>,
}

/// `serve --leader-elect`: which Lease, who this replica is, and the
/// timing (client-go's names and defaults).
#[cfg(feature = "k8s")]
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// The Lease's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default", value_name = "NAMESPACE")]
    pub lease_namespace: String,
    /// The Lease's name.
    #[arg(long, default_value = "flightdeck", value_name = "NAME")]
    pub lease_name: String,
    /// This replica's holder identity (default: the host name, which is the pod's name).
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub lease_identity: Option<String>,
    /// How long a standby waits, after the lease last changed, before taking it (whole seconds).
    #[arg(long, default_value = "15s", value_parser = lease_time, value_name = "DURATION")]
    pub lease_duration: std::time::Duration,
    /// How long the holder goes on without renewing before it stops acting (less than --lease-duration).
    #[arg(long, default_value = "10s", value_parser = lease_time, value_name = "DURATION")]
    pub lease_renew_deadline: std::time::Duration,
    /// How often to renew, or to try to take the lease (standbys add up to 1.2× jitter).
    #[arg(long, default_value = "2s", value_parser = lease_time, value_name = "DURATION")]
    pub lease_retry_period: std::time::Duration,
}

/// A lease time: `500ms`, or a duration as `wait` reads it (`15s`, `1m`).
#[cfg(feature = "k8s")]
fn lease_time(s: &str) -> Result<std::time::Duration, String> {
    match s.trim().strip_suffix("ms") {
        Some(ms) => ms
            .parse()
            .map(std::time::Duration::from_millis)
            .map_err(|_| format!("`{s}` is not a duration like 500ms, 2s or 15s")),
        None => wait(s),
    }
}

#[derive(Debug, Args)]
pub struct RunOptions {
    /// No cockpit: print the event stream and exit when every rollout is done (a rollout that waits
    /// for a human is still driven: see --unattended).
    #[arg(long)]
    pub headless: bool,
    /// One JSON object per line; implies --headless.
    #[arg(long)]
    pub json: bool,
    /// Seed for the simulator (same seed, same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cockpit theme: a shipped one or a user theme.
    #[arg(long, value_parser = Offered(theme_names))]
    pub theme: Option<String>,
    /// Cockpit keymap: a shipped one or a user keymap.
    #[arg(long, value_parser = Offered(keymap_names))]
    pub keymap: Option<String>,
    #[command(flatten)]
    pub unattended: UnattendedOptions,
}

/// Headless runs: what happens to a rollout that waits for a human.
#[derive(Debug, Clone, Args)]
pub struct UnattendedOptions {
    /// Headless: when a rollout waits for a human (paused, or at an approval
    /// gate), the run goes on analysing it (a failing window still rolls it
    /// back) and serves a socket a captain can `flightdeck attach` to. If
    /// nobody acts within --unattended-wait: `abort` takes the canary's
    /// traffic away (weight 0, exit 3); `hold` stops driving and exits 1,
    /// leaving the canary at its weight with nobody analysing it.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = WhenNobodyComes::Abort)]
    pub unattended: WhenNobodyComes,
    /// Headless: how long a rollout may wait for a human before
    /// --unattended acts (`90s`, `15m`, `2h`; simulated time in simulations).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = wait)]
    pub unattended_wait: std::time::Duration,
    /// Headless: the socket a captain attaches to (default: `run-PID.sock`
    /// beside `serve.sock` in the runtime directory).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl Default for UnattendedOptions {
    fn default() -> Self {
        UnattendedOptions {
            unattended: WhenNobodyComes::Abort,
            unattended_wait: crate::engine::DEFAULT_UNATTENDED_WAIT,
            socket: None,
        }
    }
}

impl UnattendedOptions {
    pub fn policy(&self) -> crate::engine::Unattended {
        let then = match self.unattended {
            WhenNobodyComes::Abort => crate::engine::AfterWait::Abort,
            WhenNobodyComes::Hold => crate::engine::AfterWait::Hold,
        };
        crate::engine::Unattended { wait: self.unattended_wait, then }
    }
}

/// `--unattended`: what a headless run does when nobody comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WhenNobodyComes {
    /// Take the canary's traffic away (canary weight 0 %), then exit 3.
    Abort,
    /// Leave the canary at its weight, stop driving it, exit 1.
    Hold,
}

/// A wait: whole numbers with units, `90s`, `15m`, `2h`, `1h30m` (`0s` acts at once).
fn wait(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("`{s}` is not a duration like 90s, 15m, 2h or 1h30m");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
    }
    if !number.is_empty() || s.trim().is_empty() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

/// A name offered in `--help` and in shell completions from a known list,
/// which the command itself checks: themes and keymaps may also be the
/// user's own files, and a wrong scenario gets the simulator's own words.
#[derive(Clone)]
struct Offered(fn() -> Vec<&'static str>);

impl clap::builder::TypedValueParser for Offered {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        value
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidUtf8).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new((self.0)().into_iter().map(clap::builder::PossibleValue::new)))
    }
}

fn scenario_names() -> Vec<&'static str> {
    crate::backend::sim::Scenario::NAMES.to_vec()
}

fn theme_names() -> Vec<&'static str> {
    crate::ui::theme::Theme::shipped()
}

fn keymap_names() -> Vec<&'static str> {
    crate::ui::keymap::shipped_names()
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}
