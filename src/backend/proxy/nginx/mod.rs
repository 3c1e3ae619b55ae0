//! NGINX (open source) through an upstream file that flightdeck owns, and a reload.
//!
//! Open-source NGINX has no runtime API for upstream weights (NGINX Plus has
//! one; this backend does not need it). So the **upstream file is the source
//! of truth**: `apply` rewrites it and reloads NGINX, `observe` reads it back.
//! `nginx.conf` includes the file inside `http {}`; flightdeck rewrites the
//! whole file on every change, so nothing else belongs in it:
//!
//! ```nginx
//! http {
//!     log_format flightdeck '$upstream_addr $status $request_time';
//!     access_log /var/log/nginx/flightdeck.log flightdeck;
//!     include /etc/nginx/flightdeck/checkout.conf;   # upstream_file
//!     server {
//!         listen 80;
//!         location / { proxy_pass http://checkout; }   # upstream
//!     }
//! }
//! ```
//!
//! Parameters (`[target]` or `[target.params]`): [`PARAMS`], and the
//! proxies' `timeout_ms` (default 2000): limit for one reload.
//!
//! Effects: `SetWeight { canary: w }` writes `server STABLE weight=100-w;` and
//! `server CANARY weight=w;`. NGINX rejects `weight=0`, so a side at 0 % is
//! written `server X down;`: the line stays (NGINX still resolves and
//! validates it) but it takes no traffic. `Scale { version, 0 }` marks that
//! server `down` and keeps its weight (`server X weight=90 down;`), `> 0`
//! brings it back; the desired weights and in-service flags are kept
//! together, so Scale and SetWeight compose. `SwitchActive` is 100/0.
//! `Undo` and `Native` have no NGINX meaning and are unsupported.
//!
//! Every change is written atomically (`<file>.tmp`, then rename) and followed
//! by `nginx [-p prefix] [-c conf] -s reload`, which parses the whole
//! configuration before it signals the master. If that fails (a syntax
//! error, an unresolvable server, no running master), the previous file
//! content is put back and the effect is refused with NGINX's message, so the
//! file never disagrees with what NGINX could load. A reload is graceful and
//! asynchronous: old workers finish their requests with the old weights.
//!
//! Read-back: `observe` parses the file (a `down` server counts 0, a server
//! without `weight=` counts 1, as in NGINX) and reports the canary's share. A
//! hand edit is therefore seen as drift and the core pauses; a missing or
//! unparseable file is an error naming the file. The file cannot tell
//! whether the running NGINX loaded it (someone may have edited it without a
//! reload); flightdeck's own changes are always reloaded.
//!
//! Metrics (`[metrics] source = "backend"`) come from the access log, which
//! must use `log_format flightdeck '$upstream_addr $status $request_time';`
//! (extra fields in front are tolerated: a line is read from the right).
//! Each sample reads the lines appended since the previous sample, so the
//! window is "since the last sample"; the first sample only marks the end of
//! the log and reports the versions missing. A log that shrank (truncated,
//! `copytruncate`) or was replaced (a new inode after rotation) is read from
//! its start. A request counts for the version whose address served it (the
//! last address when NGINX tried several); servers given by name are
//! resolved to match `$upstream_addr`. 5xx are errors, including NGINX's own
//! 502/504 for a version it could not reach; requests with no upstream
//! (`-`, or the upstream name when all servers are down) count for neither.
//! Latency is `$request_time` in ms: a histogram of every request and
//! p50/p95/p99 from all of them. There is no SLO measurement.

use crate::backend::{Backend, BackendError};
use crate::metrics::{missing, MetricsSource};
use access_log::{read_new_lines, tally, LogCursor};
use async_trait::async_trait;
use flightdeck_core::analysis::MetricsSample;
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::params::{Param, ParamError, ParamKind::Text, TargetError};
use flightdeck_core::plan::{BackendKind, Target};
use flightdeck_core::rollout::{Effect, Observation, Version};
use flightdeck_core::time::Timestamp;
use reload::{reload_error, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use upstream::{canary_share, literal_addresses, parse_upstream, resolved_addresses, share, ServerLine};

mod access_log;
mod reload;
mod upstream;

/// What an NGINX target reads (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::required("upstream_file", Text, "the file flightdeck writes"),
    Param::required("upstream", Text, "the name of the `upstream` block in it"),
    Param::required("stable_server", Text, "`host:port` of the stable version, written as a `server` line"),
    Param::required("canary_server", Text, "`host:port` of the canary, written as a `server` line"),
    Param::optional("nginx", Text, "the binary used to reload (default `nginx`)"),
    Param::optional("conf", Text, "passed as `-c` on reload (default: NGINX's built-in path)"),
    Param::optional("prefix", Text, "passed as `-p` on reload"),
    Param::optional("access_log", Text, "an access log in the `flightdeck` format, for per-version metrics"),
    Param::optional(
        "upstream_options",
        Text,
        "directives copied into the upstream block after the servers (`keepalive 32; zone checkout 64k;`)",
    ),
];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// One NGINX upstream with a stable and a canary server.
#[derive(Debug)]
pub struct Nginx {
    upstream_file: PathBuf,
    upstream: String,
    stable_server: String,
    canary_server: String,
    nginx: PathBuf,
    conf: Option<PathBuf>,
    prefix: Option<PathBuf>,
    access_log: Option<PathBuf>,
    upstream_options: Option<String>,
    timeout: Duration,
    /// What flightdeck wants in the file; `None` until the first apply reads
    /// the file. Held for a whole apply, so writes and reloads never interleave.
    desired: tokio::sync::Mutex<Option<Desired>>,
    /// Where the previous sample stopped reading the access log.
    log_cursor: tokio::sync::Mutex<Option<LogCursor>>,
}

/// The split and which servers are in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Desired {
    canary_weight: u8,
    stable_in_service: bool,
    canary_in_service: bool,
}

impl Default for Desired {
    fn default() -> Self {
        Desired { canary_weight: 0, stable_in_service: true, canary_in_service: true }
    }
}

impl Desired {
    fn with(self, effect: &Effect) -> Desired {
        let mut next = self;
        match effect {
            Effect::SetWeight { canary } => next.canary_weight = (*canary).min(100),
            Effect::SwitchActive { to: Version::Canary } => next.canary_weight = 100,
            Effect::SwitchActive { to: Version::Stable } => next.canary_weight = 0,
            Effect::Scale { version: Version::Stable, percent } => next.stable_in_service = *percent > 0,
            Effect::Scale { version: Version::Canary, percent } => next.canary_in_service = *percent > 0,
            Effect::Undo { .. } | Effect::Native { .. } | Effect::Notify(_) => {}
        }
        next
    }

    /// Recovers the desired state from a file flightdeck (or a person) wrote:
    /// `weight=N down` is a scaled-out server, a bare `down` a 0 % side.
    fn from_servers(stable: &ServerLine, canary: &ServerLine) -> Desired {
        // The split as written, before `down` of a scaled-out server takes its share away.
        let nominal = |s: &ServerLine| match (s.down, s.weight) {
            (true, None) => 0,
            (_, weight) => u64::from(weight.unwrap_or(1)),
        };
        let (s, c) = (nominal(stable), nominal(canary));
        Desired {
            canary_weight: share(s, c).unwrap_or(0),
            stable_in_service: !(stable.down && stable.weight.is_some()),
            canary_in_service: !(canary.down && canary.weight.is_some()),
        }
    }
}

impl Nginx {
    /// Reads the target's parameters (see the module doc).
    pub fn from_target(target: &Target) -> Result<Nginx, TargetError> {
        crate::backend::target::expect_backend(target, BackendKind::Nginx)?;
        let optional =
            |key: &str| target.params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_string);
        let required = |key: &'static str| crate::backend::target::required(target, "nginx", key);
        let timeout = crate::backend::target::timeout(target, DEFAULT_TIMEOUT)?;
        let upstream = required("upstream")?;
        if upstream.contains(|c: char| c.is_whitespace() || "{};#".contains(c)) {
            return Err(ParamError::new("upstream", format!("`{upstream}` is not an nginx upstream name")).into());
        }
        let server = |key: &'static str| -> Result<String, TargetError> {
            let address = required(key)?;
            if address.contains(|c: char| c.is_whitespace() || "{};#".contains(c)) {
                return Err(ParamError::new(key, format!("`{address}` is not a host:port")).into());
            }
            Ok(address)
        };
        Ok(Nginx {
            upstream_file: PathBuf::from(required("upstream_file")?),
            upstream,
            stable_server: server("stable_server")?,
            canary_server: server("canary_server")?,
            nginx: PathBuf::from(optional("nginx").unwrap_or_else(|| "nginx".to_string())),
            conf: optional("conf").map(PathBuf::from),
            prefix: optional("prefix").map(PathBuf::from),
            access_log: optional("access_log").map(PathBuf::from),
            upstream_options: optional("upstream_options"),
            timeout,
            desired: tokio::sync::Mutex::default(),
            log_cursor: tokio::sync::Mutex::default(),
        })
    }

    pub fn upstream_file(&self) -> &Path {
        &self.upstream_file
    }

    fn server(&self, version: Version) -> &str {
        match version {
            Version::Stable => &self.stable_server,
            Version::Canary => &self.canary_server,
        }
    }

    fn unreachable(&self, detail: String) -> BackendError {
        BackendError::Unreachable { backend: self.name(), detail }
    }

    /// The whole upstream file for `desired`.
    fn render(&self, desired: Desired) -> String {
        let line = |version: Version, weight: u8, in_service: bool| {
            let server = self.server(version);
            match (weight, in_service) {
                // NGINX rejects weight=0; `down` keeps the line (and its validation).
                (0, _) => format!("    server {server} down;\n"),
                (w, true) => format!("    server {server} weight={w};\n"),
                (w, false) => format!("    server {server} weight={w} down;\n"),
            }
        };
        let mut text = String::from(
            "# Written by flightdeck on every weight change; edits by hand are seen as\n\
             # drift and pause the rollout.\n",
        );
        text += &format!("upstream {} {{\n", self.upstream);
        text += &line(Version::Stable, 100 - desired.canary_weight, desired.stable_in_service);
        text += &line(Version::Canary, desired.canary_weight, desired.canary_in_service);
        if let Some(options) = &self.upstream_options {
            text += &format!("    {options}\n");
        }
        text += "}\n";
        text
    }

    /// The file's current text; `None` when it does not exist yet.
    fn read_file(&self) -> Result<Option<String>, BackendError> {
        match std::fs::read_to_string(&self.upstream_file) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.unreachable(format!("cannot read {}: {e}", self.upstream_file.display()))),
        }
    }

    /// Replaces the file atomically: readers (and NGINX) see the old or the new text, never half.
    fn write_file(&self, text: &str) -> Result<(), BackendError> {
        let mut tmp = self.upstream_file.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let failed = |what: &str, e: std::io::Error| self.unreachable(format!("cannot {what}: {e}"));
        std::fs::write(&tmp, text).map_err(|e| failed(&format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &self.upstream_file).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            failed(&format!("rename {} to {}", tmp.display(), self.upstream_file.display()), e)
        })
    }

    /// Puts `previous` back (or removes the file flightdeck created).
    fn restore(&self, previous: Option<&str>) -> Result<(), BackendError> {
        match previous {
            Some(text) => self.write_file(text),
            None => std::fs::remove_file(&self.upstream_file)
                .map_err(|e| self.unreachable(format!("cannot remove {}: {e}", self.upstream_file.display()))),
        }
    }

    /// `nginx [-p prefix] [-c conf] -s reload`, within the timeout.
    async fn reload(&self) -> Result<(), BackendError> {
        let mut command = Command::new(&self.nginx);
        if let Some(prefix) = &self.prefix {
            command.arg("-p").arg(prefix);
        }
        if let Some(conf) = &self.conf {
            command.arg("-c").arg(conf);
        }
        command.args(["-s", "reload"]);
        let (status, stderr) = run(command, self.timeout)
            .await
            .map_err(|e| self.unreachable(format!("`{} -s reload`: {e}", self.nginx.display())))?;
        if status.success() {
            return Ok(());
        }
        Err(BackendError::Refused {
            backend: self.name(),
            action: "reload".to_string(),
            detail: reload_error(&stderr, status),
        })
    }

    /// Writes the file for `desired` and reloads; on any failure the old file comes back.
    async fn install(&self, desired: Desired) -> Result<(), BackendError> {
        let previous = self.read_file()?;
        self.write_file(&self.render(desired))?;
        let reloaded = self.reload().await;
        if let Err(error) = reloaded {
            if let Err(restore) = self.restore(previous.as_deref()) {
                return Err(self.unreachable(format!("{error}; restoring the previous file failed too: {restore}")));
            }
            return Err(error);
        }
        Ok(())
    }

    /// The stable and canary `server` lines of our upstream in `text`.
    fn servers(&self, text: &str) -> Result<(ServerLine, ServerLine), String> {
        let file = self.upstream_file.display();
        let servers = parse_upstream(text, &self.upstream)
            .ok_or_else(|| format!("{file} has no `upstream {} {{ … }}` block", self.upstream))?;
        let find = |version: Version| {
            let address = self.server(version);
            servers
                .iter()
                .find(|s| s.address == address)
                .cloned()
                .ok_or_else(|| format!("{file}: upstream {} has no `server {address}`", self.upstream))
        };
        Ok((find(Version::Stable)?, find(Version::Canary)?))
    }

    /// The desired state a file holds; the default (0 %, both in service)
    /// when there is no file yet or it is not ours to read.
    fn desired_in(&self, file: Option<&str>) -> Desired {
        file.and_then(|text| self.servers(text).ok())
            .map_or_else(Desired::default, |(stable, canary)| Desired::from_servers(&stable, &canary))
    }

    /// Addresses as `$upstream_addr` prints them, per version.
    async fn log_addresses(&self) -> (Vec<String>, Vec<String>) {
        let servers = [self.stable_server.clone(), self.canary_server.clone()];
        let literal = servers.clone().map(|s| literal_addresses(&s));
        // Name resolution blocks; it gets the timeout and falls back to the text as written.
        let resolved = tokio::time::timeout(
            self.timeout,
            tokio::task::spawn_blocking(move || servers.map(|s| resolved_addresses(&s))),
        )
        .await;
        match resolved {
            Ok(Ok([stable, canary])) => (stable, canary),
            _ => {
                let [stable, canary] = literal;
                (stable, canary)
            }
        }
    }
}

impl std::fmt::Display for Nginx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nginx upstream {} in {}", self.upstream, self.upstream_file.display())
    }
}

#[async_trait]
impl Backend for Nginx {
    fn name(&self) -> String {
        self.to_string()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        match effect {
            Effect::Undo { .. } | Effect::Native { .. } => {
                return Err(BackendError::Unsupported { backend: self.name(), effect: effect.to_string() })
            }
            // Notices are for viewers; the engine never sends them here.
            Effect::Notify(_) => return Ok(()),
            _ => {}
        }
        let mut desired = self.desired.lock().await;
        let current = match *desired {
            Some(d) => d,
            // First apply since start: carry on from what the file says.
            None => self.desired_in(self.read_file()?.as_deref()),
        };
        let next = current.with(effect);
        self.install(next).await?;
        *desired = Some(next);
        Ok(())
    }

    /// Both servers out reads as `canary_weight: None`: no share exists, and
    /// 0 % would look like a healthy rollback.
    async fn observe(&self) -> Result<Observation, BackendError> {
        let text = std::fs::read_to_string(&self.upstream_file)
            .map_err(|e| self.unreachable(format!("cannot read {}: {e}", self.upstream_file.display())))?;
        let (stable, canary) = self.servers(&text).map_err(|e| self.unreachable(e))?;
        Ok(Observation { canary_weight: canary_share(&stable, &canary), ..Observation::default() })
    }
}

#[async_trait]
impl MetricsSource for Nginx {
    async fn sample(&self, window: Duration, _now: Timestamp) -> MetricsSample {
        let Some(log) = self.access_log.clone() else {
            return missing(window, "nginx: no access_log parameter".to_string());
        };
        let (stable_addrs, canary_addrs) = self.log_addresses().await;
        // Held across the read, so two samples never count the same lines.
        let mut cursor = self.log_cursor.lock().await;
        let previous = *cursor;
        let path = log.clone();
        let read = tokio::task::spawn_blocking(move || {
            let (next, text) = read_new_lines(&path, previous)?;
            Ok::<_, std::io::Error>((next, text.map(|t| tally(&t, &stable_addrs, &canary_addrs))))
        })
        .await;
        match read {
            Ok(Ok((next, tallies))) => {
                *cursor = Some(next);
                match tallies {
                    None => missing(window, "nginx: first access log reading, no window yet".to_string()),
                    Some((s, c)) => {
                        MetricsSample { window, stable: Some(s.window()), canary: Some(c.window()), missing: None }
                    }
                }
            }
            Ok(Err(e)) => {
                // A gap breaks the window: start over rather than report two windows as one.
                *cursor = None;
                missing(window, format!("nginx: cannot read access log {}: {e}", log.display()))
            }
            Err(e) => missing(window, format!("nginx: reading access log {} failed: {e}", log.display())),
        }
    }

    /// The access log is read in windows, not over an SLO period.
    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target(params: &[(&str, &str)]) -> Target {
        Target {
            backend: BackendKind::Nginx,
            group: "edge".into(),
            production: false,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    const PARAMS: [(&str, &str); 4] = [
        ("upstream_file", "/etc/nginx/flightdeck/app.conf"),
        ("upstream", "app"),
        ("stable_server", "10.0.0.1:8080"),
        ("canary_server", "10.0.0.2:8080"),
    ];

    fn nginx() -> Nginx {
        Nginx::from_target(&target(&PARAMS)).unwrap()
    }

    #[test]
    fn reads_the_target() {
        let n = nginx();
        assert_eq!(n.name(), "nginx upstream app in /etc/nginx/flightdeck/app.conf");
        assert_eq!((n.nginx.as_os_str(), n.conf.as_ref(), n.timeout), ("nginx".as_ref(), None, DEFAULT_TIMEOUT));
        let err = Nginx::from_target(&target(&PARAMS[..3])).unwrap_err();
        assert_eq!(err, TargetError::Missing { backend: "nginx", key: "canary_server" });
        let mut bad = PARAMS.to_vec();
        bad[2] = ("stable_server", "10.0.0.1:8080; evil");
        let err = Nginx::from_target(&target(&bad)).unwrap_err();
        let not_an_address = ParamError::new("stable_server", "`10.0.0.1:8080; evil` is not a host:port");
        assert_eq!(err, TargetError::Param(not_an_address));
        let mut more = PARAMS.to_vec();
        more.extend([("conf", "/etc/nginx/nginx.conf"), ("timeout_ms", "500"), ("nginx", "/usr/sbin/nginx")]);
        let n = Nginx::from_target(&target(&more)).unwrap();
        assert_eq!((n.conf.unwrap(), n.timeout), (PathBuf::from("/etc/nginx/nginx.conf"), Duration::from_millis(500)));
    }

    #[test]
    fn the_example_plan_is_a_valid_target() {
        let text = include_str!("../../../../examples/plans/nginx.toml");
        let plan = flightdeck_core::Plan::parse("examples/plans/nginx.toml", text).unwrap();
        let n = Nginx::from_target(&plan.target).unwrap();
        assert_eq!(n.name(), "nginx upstream checkout in /etc/nginx/flightdeck/checkout.conf");
        assert!(n.render(Desired::default()).contains("    keepalive 32;\n}"));
        assert!(n.access_log.is_some());
    }

    #[test]
    fn zero_percent_is_down_and_scale_keeps_the_weight() {
        let n = nginx();
        let d = Desired::default().with(&Effect::SetWeight { canary: 10 });
        let text = n.render(d);
        assert!(text
            .contains("upstream app {\n    server 10.0.0.1:8080 weight=90;\n    server 10.0.0.2:8080 weight=10;\n}"));
        let d = d.with(&Effect::Scale { version: Version::Canary, percent: 0 });
        assert!(n.render(d).contains("server 10.0.0.2:8080 weight=10 down;"));
        let d = d.with(&Effect::SwitchActive { to: Version::Canary });
        assert!(n.render(d).contains("server 10.0.0.1:8080 down;\n    server 10.0.0.2:8080 weight=100 down;"));
    }

    #[test]
    fn the_file_reads_back_as_written() {
        let n = nginx();
        for (canary, share) in [(0, Some(0)), (10, Some(10)), (50, Some(50)), (100, Some(100))] {
            let d = Desired::default().with(&Effect::SetWeight { canary });
            let (s, c) = n.servers(&n.render(d)).unwrap();
            assert_eq!(canary_share(&s, &c), share);
            assert_eq!(Desired::from_servers(&s, &c), d);
        }
        let out = Desired::default().with(&Effect::SetWeight { canary: 30 });
        let out = out.with(&Effect::Scale { version: Version::Canary, percent: 0 });
        let (s, c) = n.servers(&n.render(out)).unwrap();
        assert_eq!((canary_share(&s, &c), Desired::from_servers(&s, &c)), (Some(0), out));
    }

    #[test]
    fn hand_written_files_parse_like_nginx_reads_them() {
        let n = nginx();
        let text = "upstream other { server 10.0.0.2:8080 weight=5; }\n\
                    upstream app {  # edited\n  least_conn;\n  server 10.0.0.1:8080 max_fails=3;\n\
                    server 10.0.0.2:8080   weight=3 ;\n}\n";
        let (s, c) = n.servers(text).unwrap();
        assert_eq!((s.weight, c.weight), (None, Some(3)));
        assert_eq!(canary_share(&s, &c), Some(75));
        let both_down = "upstream app { server 10.0.0.1:8080 down; server 10.0.0.2:8080 down; }";
        let (s, c) = n.servers(both_down).unwrap();
        assert_eq!(canary_share(&s, &c), None);
        assert!(n.servers("upstream app { server 10.0.0.1:8080; }").unwrap_err().contains("no `server 10.0.0.2:8080`"));
        assert!(n.servers("upstream app { server 10.0.0.1:8080;").unwrap_err().contains("no `upstream app"));
        assert!(n.servers("").unwrap_err().contains("/etc/nginx/flightdeck/app.conf"));
    }
}
