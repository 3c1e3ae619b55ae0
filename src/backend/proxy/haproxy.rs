//! HAProxy through its runtime API (the stats socket at `level admin`).
//!
//! The plan's target names the socket and two servers of one backend. The
//! HAProxy backend's name goes under `[target.params]`, because `backend` in
//! `[target]` itself names the flightdeck backend kind:
//!
//! ```toml
//! [target]
//! backend = "haproxy"
//! socket = "/run/haproxy/admin.sock"   # or "127.0.0.1:9999" for `stats socket ipv4@…`
//! stable_server = "v1"
//! canary_server = "v2"
//!
//! [target.params]
//! backend = "be_app"
//! ```
//!
//! Parameters (`[target]` or `[target.params]`): [`PARAMS`], and the
//! proxies' `timeout_ms` (default 2000): limit for one runtime API call,
//! connect to last byte.
//!
//! One command per connection: HAProxy's non-interactive mode answers and
//! closes, so a reply is everything up to EOF. A successful `set` answers an
//! empty line; anything else is HAProxy's error text ("No such server.") and
//! becomes [`BackendError::Refused`] with that text.
//!
//! Effects: `SetWeight { canary: w }` sets the canary server to `w` and the
//! stable server to `100 - w` (HAProxy weights run 0..=256; a percentage
//! fits, and weight 0 means "no new traffic"). `SwitchActive` is 100/0.
//! `Scale { version, 0 }` drains that server, `> 0` makes it ready again.
//! `Undo` and `Native` have no HAProxy meaning and are unsupported.
//!
//! Read-back: `observe` asks `get weight` for both servers and reports the
//! canary's share of their sum. Runtime weights live only in the running
//! process: when HAProxy restarts (or reloads without a server-state file)
//! the servers come back with the weights of `haproxy.cfg`. The read-back
//! then differs from what flightdeck set, the core sees drift and pauses
//! with a message, and `resume` re-applies the stage's weight.
//!
//! Metrics (`[metrics] source = "backend"`) come from `show stat`: per server,
//! requests are the HTTP responses (`hrsp_1xx..hrsp_5xx`, `hrsp_other`) plus
//! the requests HAProxy answered itself because the server failed (`econ`:
//! connection refused after retries, `eresp`: the server closed or timed out;
//! HAProxy's own 502/503 do not appear in the server's `hrsp_5xx`); errors are
//! `hrsp_5xx + econ + eresp`. The counters are cumulative, so the source keeps
//! the previous reading and reports the difference; the first reading (and
//! the first after the counters went back, i.e. a restart) has no window and
//! reports the version missing. Latency: `show stat` has no quantiles, only
//! `rtime`, the mean response time of the last 1024 requests. It is reported
//! as p50 (shown, never decides); p95 and p99 stay `None`, so the p95/p99
//! checks are inconclusive and a stage never *passes* on HAProxy's numbers
//! alone. Plans that need latency gates use `[metrics] source = "prometheus"`
//! with histograms from the application.

use super::{Baseline, Counters};
use crate::backend::{Backend, BackendError};
use crate::metrics::Unread;
use crate::metrics::{missing, MetricsSource};
use async_trait::async_trait;
use flightdeck_core::analysis::{MetricsSample, VersionWindow};
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::params::{Param, ParamKind::Text, TargetError};
use flightdeck_core::plan::{BackendKind, Target};
use flightdeck_core::rollout::{Effect, Observation, Version};
use flightdeck_core::time::Timestamp;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Limit for one runtime API call unless the plan sets `timeout_ms`.
/// What an HAProxy target reads (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::required("socket", Text, "a unix socket path, or `host:port` of a TCP stats socket"),
    Param::required("backend", Text, "the HAProxy backend holding both servers"),
    Param::required("stable_server", Text, "the stable server's name in that backend"),
    Param::required("canary_server", Text, "the canary server's name in that backend"),
];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where HAProxy's runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsSocket {
    Unix(PathBuf),
    /// `host:port` of a `stats socket ipv4@…` listener.
    Tcp(String),
}

impl StatsSocket {
    /// A path (anything with a `/`, or no `:port` suffix) is a unix socket;
    /// `host:port` with a numeric port is TCP.
    pub fn parse(text: &str) -> StatsSocket {
        let tcp = !text.contains('/')
            && text.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if tcp {
            StatsSocket::Tcp(text.to_string())
        } else {
            StatsSocket::Unix(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for StatsSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatsSocket::Unix(path) => write!(f, "{}", path.display()),
            StatsSocket::Tcp(addr) => f.write_str(addr),
        }
    }
}

/// One HAProxy backend with a stable and a canary server.
#[derive(Debug)]
pub struct Haproxy {
    socket: StatsSocket,
    backend: String,
    stable_server: String,
    canary_server: String,
    timeout: Duration,
    /// The previous `show stat` counters per version: the start of the next window.
    baseline: Baseline<ServerCounters>,
}

impl Haproxy {
    /// Reads the target's parameters (see the module doc).
    pub fn from_target(target: &Target) -> Result<Haproxy, TargetError> {
        crate::backend::target::expect_backend(target, BackendKind::Haproxy)?;
        let param = |key: &'static str| crate::backend::target::required(target, "haproxy", key);
        let timeout = crate::backend::target::timeout(target, DEFAULT_TIMEOUT)?;
        Ok(Haproxy {
            socket: StatsSocket::parse(&param("socket")?),
            backend: param("backend")?,
            stable_server: param("stable_server")?,
            canary_server: param("canary_server")?,
            timeout,
            baseline: Baseline::new("HAProxy"),
        })
    }

    pub fn socket(&self) -> &StatsSocket {
        &self.socket
    }

    fn server(&self, version: Version) -> &str {
        match version {
            Version::Stable => &self.stable_server,
            Version::Canary => &self.canary_server,
        }
    }

    /// `backend/server`, as the runtime API names a server.
    fn path(&self, version: Version) -> String {
        format!("{}/{}", self.backend, self.server(version))
    }

    fn unreachable(&self, detail: String) -> BackendError {
        BackendError::Unreachable { backend: self.name(), detail }
    }

    fn refused(&self, action: &str, reply: &str) -> BackendError {
        // Errors like "Unknown command" come with a page of help: the first line says it.
        let detail = reply.trim().lines().next().unwrap_or("empty reply").to_string();
        BackendError::Refused { backend: self.name(), action: action.to_string(), detail }
    }

    /// Sends one command and returns HAProxy's whole reply, within the timeout.
    async fn command(&self, command: &str) -> Result<String, BackendError> {
        match tokio::time::timeout(self.timeout, self.exchange(command)).await {
            Ok(reply) => reply,
            Err(_) => Err(self.unreachable(format!("no answer to `{command}` within {} ms", self.timeout.as_millis()))),
        }
    }

    async fn exchange(&self, command: &str) -> Result<String, BackendError> {
        let connect_failed = |e: std::io::Error| self.unreachable(format!("cannot connect to the stats socket: {e}"));
        let reply = match &self.socket {
            StatsSocket::Unix(path) => talk(UnixStream::connect(path).await.map_err(connect_failed)?, command).await,
            StatsSocket::Tcp(addr) => talk(TcpStream::connect(addr).await.map_err(connect_failed)?, command).await,
        };
        reply.map_err(|e| self.unreachable(format!("`{command}` broke off: {e}")))
    }

    /// A command whose success is an empty reply.
    async fn set(&self, command: String) -> Result<(), BackendError> {
        let reply = self.command(&command).await?;
        if reply.trim().is_empty() {
            Ok(())
        } else {
            Err(self.refused(&format!("`{command}`"), &reply))
        }
    }

    async fn set_weight(&self, version: Version, weight: u8) -> Result<(), BackendError> {
        self.set(format!("set weight {} {weight}", self.path(version))).await
    }

    /// Canary gets `canary` %, stable the rest. The side that gains is set
    /// first, so the backend never has both servers at weight 0 (503s)
    /// between the two commands; the moment in between is a mix of the old
    /// and new split.
    async fn split(&self, canary: u8) -> Result<(), BackendError> {
        let canary = canary.min(100);
        let stable = 100 - canary;
        if canary >= stable {
            self.set_weight(Version::Canary, canary).await?;
            self.set_weight(Version::Stable, stable).await
        } else {
            self.set_weight(Version::Stable, stable).await?;
            self.set_weight(Version::Canary, canary).await
        }
    }

    /// Drain, not maint: a drained server takes no new requests but finishes
    /// the ones in flight (and keeps sticky sessions until they end) and
    /// keeps its health checks, so bringing it back with `ready` is instant
    /// and honest about its health. Maint would cut persistent sessions over
    /// at once and stop the checks: right for repairs, too harsh for a
    /// rollback that must not fail requests.
    async fn scale(&self, version: Version, percent: u8) -> Result<(), BackendError> {
        let state = if percent == 0 { "drain" } else { "ready" };
        self.set(format!("set server {} state {state}", self.path(version))).await
    }

    /// The server's current runtime weight (`get weight` answers "10 (initial 1)").
    async fn weight(&self, version: Version) -> Result<u32, BackendError> {
        let command = format!("get weight {}", self.path(version));
        let reply = self.command(&command).await?;
        parse_weight(&reply).ok_or_else(|| self.refused(&format!("`{command}`"), &reply))
    }

    /// Per-version cumulative counters from one `show stat` of the backend's servers.
    async fn read_counters(&self) -> Result<[(Version, Result<ServerCounters, Unread>); 2], Unread> {
        // Type 4 = servers only; the backend's own rows are not needed.
        let command = format!("show stat {} 4 -1", self.backend);
        let reply = self.command(&command).await.map_err(|e| Unread::Unreachable(e.to_string()))?;
        let table = StatTable::parse(&reply).ok_or_else(|| {
            let first = reply.trim().lines().next().unwrap_or("empty reply");
            Unread::Malformed(format!("`{command}` answered {first:?}, not a stats table"))
        })?;
        let read = |version: Version| table.server(&self.backend, self.server(version));
        Ok([(Version::Stable, read(Version::Stable)), (Version::Canary, read(Version::Canary))])
    }
}

impl std::fmt::Display for Haproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "haproxy {} at {}", self.backend, self.socket)
    }
}

/// Writes `command` and reads the reply to EOF.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, command: &str) -> std::io::Result<String> {
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    Ok(reply)
}

/// "10 (initial 1)" → 10.
fn parse_weight(reply: &str) -> Option<u32> {
    reply.split_whitespace().next()?.parse().ok()
}

/// The canary's share of the two servers' weights, rounded to a percent.
/// `None` when both are 0: the backend serves nobody and there is no share.
fn canary_share(stable: u32, canary: u32) -> Option<u8> {
    let total = u64::from(stable) + u64::from(canary);
    (total > 0).then(|| ((u64::from(canary) * 100 + total / 2) / total) as u8)
}

#[async_trait]
impl Backend for Haproxy {
    fn name(&self) -> String {
        self.to_string()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        match effect {
            Effect::SetWeight { canary } => self.split(*canary).await,
            Effect::SwitchActive { to: Version::Canary } => self.split(100).await,
            Effect::SwitchActive { to: Version::Stable } => self.split(0).await,
            Effect::Scale { version, percent } => self.scale(*version, *percent).await,
            Effect::Undo { .. } | Effect::Native { .. } => {
                Err(BackendError::Unsupported { backend: self.name(), effect: effect.to_string() })
            }
            // Notices are for viewers; the engine never sends them here.
            Effect::Notify(_) => Ok(()),
        }
    }

    /// Both weights 0 reads as `canary_weight: None`: no share exists, and
    /// inventing 0 % would look like a healthy rollback. The metrics then
    /// show no requests on either side, which is inconclusive, never a pass.
    async fn observe(&self) -> Result<Observation, BackendError> {
        let stable = self.weight(Version::Stable).await?;
        let canary = self.weight(Version::Canary).await?;
        Ok(Observation { canary_weight: canary_share(stable, canary), ..Observation::default() })
    }
}

#[async_trait]
impl MetricsSource for Haproxy {
    async fn sample(&self, window: Duration, _now: Timestamp) -> MetricsSample {
        let readings = match self.read_counters().await {
            Ok(readings) => readings,
            Err(reason) => return missing(window, format!("haproxy: {reason}")),
        };
        let [(stable_version, stable), (canary_version, canary)] = readings;
        let window_of = |version, reading| self.baseline.window(version, reading);
        let (stable, canary) = (window_of(stable_version, stable), window_of(canary_version, canary));
        crate::metrics::per_version(window, "haproxy", stable, canary)
    }

    /// HAProxy's counters are per process lifetime, not an SLO window.
    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        None
    }
}

/// One server's cumulative counters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ServerCounters {
    /// Requests that got an answer: the server's or HAProxy's error in its place.
    requests: u64,
    errors: u64,
    /// Mean response time of the last 1024 requests, ms.
    rtime_ms: Option<f64>,
}

impl Counters for ServerCounters {
    fn since(&self, before: &ServerCounters) -> Option<VersionWindow> {
        let requests = self.requests.checked_sub(before.requests)?;
        let errors = self.errors.checked_sub(before.errors)?;
        Some(VersionWindow {
            requests,
            errors,
            // rtime covers the last 1024 requests: stale when the window had none.
            p50_ms: self.rtime_ms.filter(|_| requests > 0),
            p95_ms: None,
            p99_ms: None,
            ..VersionWindow::default()
        })
    }
}

/// `show stat` CSV, read by column name (the column set grows between versions).
struct StatTable {
    columns: HashMap<String, usize>,
    rows: Vec<Vec<String>>,
}

/// Counted as requests; `hrsp_5xx` also as errors.
const RESPONSE_COLUMNS: [&str; 6] = ["hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other"];
/// Requests HAProxy failed on the server's behalf: both requests and errors.
const FAILURE_COLUMNS: [&str; 2] = ["econ", "eresp"];

impl StatTable {
    /// `None` unless the reply starts with the "# pxname,svname,…" header.
    fn parse(reply: &str) -> Option<StatTable> {
        let mut lines = reply.lines();
        let header = lines.next()?.strip_prefix("# ")?;
        let columns: HashMap<String, usize> =
            split_csv(header).into_iter().enumerate().map(|(i, name)| (name, i)).collect();
        if !columns.contains_key("pxname") || !columns.contains_key("svname") {
            return None;
        }
        let rows = lines.filter(|l| !l.trim().is_empty()).map(split_csv).collect();
        Some(StatTable { columns, rows })
    }

    fn field<'a>(&self, row: &'a [String], name: &str) -> Option<&'a str> {
        row.get(*self.columns.get(name)?).map(String::as_str)
    }

    fn row(&self, backend: &str, server: &str) -> Option<&[String]> {
        self.rows
            .iter()
            .find(|r| self.field(r, "pxname") == Some(backend) && self.field(r, "svname") == Some(server))
            .map(Vec::as_slice)
    }

    fn server(&self, backend: &str, server: &str) -> Result<ServerCounters, Unread> {
        let row = self
            .row(backend, server)
            .ok_or_else(|| Unread::NotFound(format!("no server {backend}/{server} in show stat")))?;
        let counter = |name: &str| -> Result<u64, Unread> {
            let text = self.field(row, name).unwrap_or("");
            text.parse().map_err(|_| match text {
                // TCP-mode servers leave the HTTP columns empty.
                "" => {
                    Unread::NotFound(format!("{backend}/{server} has no {name} counter (is {backend} in mode http?)"))
                }
                _ => Unread::Malformed(format!("{backend}/{server} {name} is {text:?}, not a count")),
            })
        };
        let mut requests = 0;
        for name in RESPONSE_COLUMNS {
            requests += counter(name)?;
        }
        let mut failed = 0;
        for name in FAILURE_COLUMNS {
            failed += counter(name)?;
        }
        Ok(ServerCounters {
            requests: requests + failed,
            errors: counter("hrsp_5xx")? + failed,
            rtime_ms: self.field(row, "rtime").and_then(|t| t.parse().ok()),
        })
    }
}

/// Splits one CSV line; HAProxy quotes fields that hold commas or quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target(params: &[(&str, &str)]) -> Target {
        Target {
            backend: BackendKind::Haproxy,
            group: "edge".into(),
            production: false,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    const PARAMS: [(&str, &str); 4] = [
        ("socket", "/run/haproxy/admin.sock"),
        ("backend", "be_app"),
        ("stable_server", "v1"),
        ("canary_server", "v2"),
    ];

    #[test]
    fn reads_the_target() {
        use flightdeck_core::plan::params::ParamError;
        let h = Haproxy::from_target(&target(&PARAMS)).unwrap();
        assert_eq!(h.socket, StatsSocket::Unix("/run/haproxy/admin.sock".into()));
        assert_eq!(h.timeout, DEFAULT_TIMEOUT);
        assert_eq!(h.name(), "haproxy be_app at /run/haproxy/admin.sock");
        let mut with_timeout = PARAMS.to_vec();
        with_timeout.push(("timeout_ms", "250"));
        assert_eq!(Haproxy::from_target(&target(&with_timeout)).unwrap().timeout, Duration::from_millis(250));
        with_timeout.pop();
        with_timeout.push(("timeout_ms", "soon"));
        let err = Haproxy::from_target(&target(&with_timeout)).unwrap_err();
        let soon = ParamError::new("timeout_ms", "`soon` is not a positive number of milliseconds");
        assert_eq!(err, TargetError::Param(soon));
        let err = Haproxy::from_target(&target(&PARAMS[..3])).unwrap_err();
        assert_eq!(err, TargetError::Missing { backend: "haproxy", key: "canary_server" });
        assert_eq!(err.to_string(), "haproxy target needs `canary_server`");
    }

    #[test]
    fn tells_tcp_from_unix_sockets() {
        assert_eq!(StatsSocket::parse("127.0.0.1:9999"), StatsSocket::Tcp("127.0.0.1:9999".into()));
        assert_eq!(StatsSocket::parse("lb.internal:9999"), StatsSocket::Tcp("lb.internal:9999".into()));
        assert_eq!(StatsSocket::parse("admin.sock"), StatsSocket::Unix("admin.sock".into()));
        assert_eq!(StatsSocket::parse("/tmp/a:1"), StatsSocket::Unix("/tmp/a:1".into()));
    }

    #[test]
    fn weights_and_shares() {
        assert_eq!(parse_weight("10 (initial 1)\n\n"), Some(10));
        assert_eq!(parse_weight("No such server.\n\n"), None);
        assert_eq!(canary_share(90, 10), Some(10));
        assert_eq!(canary_share(0, 100), Some(100));
        assert_eq!(canary_share(100, 0), Some(0));
        assert_eq!(canary_share(2, 1), Some(33));
        assert_eq!(canary_share(0, 0), None);
    }

    #[test]
    fn csv_honours_quotes() {
        assert_eq!(split_csv(r#"a,"b,c",,"d""e""#), ["a", "b,c", "", "d\"e"]);
    }

    const STAT: &str = "# pxname,svname,econ,eresp,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,rtime,\n\
        be_app,v1,0,0,0,90,0,0,10,0,4,\n\
        be_app,v2,3,1,0,20,0,0,0,0,7,\n\
        be_tcp,v1,0,0,,,,,,,0,\n\n";

    #[test]
    fn counts_requests_and_errors_by_column_name() {
        let table = StatTable::parse(STAT).unwrap();
        let v1 = table.server("be_app", "v1").unwrap();
        assert_eq!((v1.requests, v1.errors, v1.rtime_ms), (100, 10, Some(4.0)));
        // HAProxy's own 503/502 for a failing server count as requests and errors.
        let v2 = table.server("be_app", "v2").unwrap();
        assert_eq!((v2.requests, v2.errors), (24, 4));
        let e = table.server("be_app", "v9").unwrap_err();
        assert_eq!(e, Unread::NotFound("no server be_app/v9 in show stat".into()));
        let e = table.server("be_tcp", "v1").unwrap_err();
        assert!(matches!(&e, Unread::NotFound(m) if m.contains("mode http")), "{e}");
        assert!(StatTable::parse("Unknown command.\n").is_none());
    }

    #[test]
    fn windows_are_deltas_and_never_invented() {
        let h = Haproxy::from_target(&target(&PARAMS)).unwrap();
        let at = |requests, errors| Ok(ServerCounters { requests, errors, rtime_ms: Some(3.0) });
        assert_eq!(h.baseline.window(Version::Canary, at(100, 5)).unwrap_err(), Unread::FirstReading);
        let w = h.baseline.window(Version::Canary, at(160, 17)).unwrap();
        assert_eq!((w.requests, w.errors, w.p50_ms, w.p99_ms), (60, 12, Some(3.0), None));
        assert_eq!(h.baseline.window(Version::Canary, at(160, 17)).unwrap().p50_ms, None, "no requests, no latency");
        assert_eq!(h.baseline.window(Version::Canary, at(3, 0)).unwrap_err(), Unread::CountersWentBack("HAProxy"));
        let gone = Unread::Unreachable("socket gone".into());
        assert_eq!(h.baseline.window(Version::Canary, Err(gone.clone())).unwrap_err(), gone);
        assert_eq!(h.baseline.window(Version::Canary, at(10, 0)).unwrap_err(), Unread::FirstReading);
    }
}
