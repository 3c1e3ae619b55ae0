//! Notifications: what needs a human (a rollback, an abort, a pause the
//! analysis or a backend made, an approval request with who may approve, a
//! failure) and what settles it (a promotion, an acknowledge), sent to
//! Slack incoming webhooks, the PagerDuty Events API v2 and signed generic
//! webhooks.
//!
//! Configured in the user config, one `[[notify]]` table per destination;
//! a secret (a Slack webhook URL, a PagerDuty routing key, a webhook's
//! HMAC key) is named by an environment variable or a file, never written
//! inline:
//!
//! ```toml
//! [[notify]]
//! kind = "slack"
//! url_env = "FLIGHTDECK_SLACK_URL"        # or url_file = "/etc/flightdeck/slack-url"
//! events = ["rollback", "abort", "paused", "approval", "promoted"]
//!
//! [[notify]]
//! kind = "pagerduty"
//! routing_key_file = "/etc/flightdeck/pagerduty-key"
//! events = ["rollback", "abort", "failed", "promoted", "acknowledged"]
//!
//! [[notify]]
//! kind = "webhook"
//! url = "https://deploys.example.com/hooks/flightdeck"
//! secret_env = "FLIGHTDECK_WEBHOOK_SECRET"
//! ```
//!
//! Each destination has its own task and bounded queue ([`QUEUE`]): a slow
//! or dead one delays nobody, the engine least of all (a full queue drops
//! the notification and says so). Each send is tried up to [`ATTEMPTS`]
//! times with backoff; every attempt's outcome is logged, and every
//! notification's end (sent, failed, dropped) is journaled, one JSON line
//! each, in [`journal_path`].

use crate::protocol::{inert, Output};
use flightdeck_core::rollout::{Gate, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use flightdeck_core::TomlFile;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Notifications one destination may have waiting.
pub const QUEUE: usize = 64;
/// Tries per notification.
pub const ATTEMPTS: u32 = 3;
/// The wait before the second try; doubled before each later one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long one try may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// PagerDuty's Events API v2 endpoint, unless an entry names another.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// What happened, as a `[[notify]]` entry's `events` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The canary was rolled back (by the analysis, a backend or someone).
    Rollback,
    /// The canary's traffic was taken away, to retry or roll back.
    Abort,
    /// Paused by the analysis, a backend or a journal that cannot be written: a human must decide.
    Paused,
    /// Waiting at an approval gate, with who may approve.
    Approval,
    /// The canary takes all traffic: the rollout is done.
    Promoted,
    /// Someone acknowledged a rollback or an abort.
    Acknowledged,
    /// An effect failed after a rollback or abort, or a native controller
    /// reports the rollout degraded: a human must look.
    Failed,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Rollback,
        EventKind::Abort,
        EventKind::Paused,
        EventKind::Approval,
        EventKind::Promoted,
        EventKind::Acknowledged,
        EventKind::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Rollback => "rollback",
            EventKind::Abort => "abort",
            EventKind::Paused => "paused",
            EventKind::Approval => "approval",
            EventKind::Promoted => "promoted",
            EventKind::Acknowledged => "acknowledged",
            EventKind::Failed => "failed",
        }
    }
}

/// Who may approve a gate: `required` of `names`, or any captain (no names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approvers {
    pub names: Vec<String>,
    pub required: usize,
}

impl Approvers {
    fn text(&self) -> String {
        if self.names.is_empty() {
            "any captain".to_string()
        } else {
            format!("{} of {}", self.required, self.names.join(", "))
        }
    }
}

/// One thing to tell: also the generic webhook's JSON body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub event: EventKind,
    pub rollout: String,
    /// The engine's time, milliseconds since the Unix epoch (simulated time in simulations).
    pub at: Timestamp,
    /// Who did it (`analysis`, `backend`, `journal`, or a person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// 1-based, as the cockpit shows it.
    pub stage: usize,
    pub stages: usize,
    pub canary_weight: u8,
    pub stable: String,
    pub canary: String,
    pub production: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// One line, plain text.
    pub summary: String,
}

/// The last accepted command of a rollout: a change of phase in the same
/// step (the same instant) is that person's doing.
#[derive(Debug, Clone)]
struct LastAction {
    at: Timestamp,
    actor: String,
    command: String,
}

/// Turns the engine's events into notifications.
#[derive(Debug, Default)]
pub struct Watcher {
    last_action: HashMap<String, LastAction>,
}

impl Watcher {
    /// The notification `out` calls for, if any. `rollout` is the rollout
    /// as the latest snapshot has it (its plan, and who set its phase).
    pub fn notice(&mut self, out: &Output, rollout: Option<&Rollout>) -> Option<Notification> {
        match out {
            Output::Action { rollout: id, at, actor, command, accepted: true, .. } => {
                let last = LastAction { at: *at, actor: actor.0.clone(), command: command.clone() };
                self.last_action.insert(id.clone(), last);
                if command != "acknowledge" {
                    return None;
                }
                let what = match rollout.map(|r| &r.phase) {
                    Some(Phase::Aborted { .. }) => "abort",
                    _ => "rollback",
                };
                let mut n = base(EventKind::Acknowledged, id, *at, rollout, None, None);
                n.by = Some(actor.0.clone());
                n.summary = format!("{id}: {} acknowledged the {what}", inert(&actor.0));
                Some(n)
            }
            Output::Transition { rollout: id, at, to, stage, stages, weight, reason, .. } => {
                let human =
                    self.last_action.get(id).filter(|a| a.at == *at).map(|a| (a.actor.clone(), a.command.clone()));
                let reason = reason.as_deref().map(|r| inert(r).into_owned());
                let (event, by) = match to.as_str() {
                    "rolled back" => {
                        let by = human.map(|h| h.0).or_else(|| phase_by(rollout, *at)).unwrap_or("analysis".into());
                        (EventKind::Rollback, Some(by))
                    }
                    "aborted" => {
                        let by = human.map(|h| h.0).or_else(|| phase_by(rollout, *at)).unwrap_or("backend".into());
                        (EventKind::Abort, Some(by))
                    }
                    "paused" => {
                        // Someone paused it: they know.
                        if human.as_ref().is_some_and(|h| h.1 == "pause") {
                            return None;
                        }
                        (EventKind::Paused, Some(phase_by(rollout, *at).unwrap_or("analysis".into())))
                    }
                    "awaiting approval" => (EventKind::Approval, None),
                    "promoted" => (EventKind::Promoted, human.map(|h| h.0)),
                    "failed" => (EventKind::Failed, None),
                    _ => return None,
                };
                let mut n = base(event, id, *at, rollout, by, reason);
                n.stage = stage + 1;
                n.stages = *stages;
                n.canary_weight = *weight;
                if event == EventKind::Approval {
                    n.approvers = Some(approvers(rollout, *stage));
                }
                n.summary = summary(&n);
                Some(n)
            }
            _ => None,
        }
    }
}

/// Who set the rollout's phase at `at`, if the snapshot still shows it.
fn phase_by(rollout: Option<&Rollout>, at: Timestamp) -> Option<String> {
    match &rollout?.phase {
        Phase::RolledBack { by, at: when, .. } | Phase::Aborted { by, at: when, .. } if *when == at => {
            Some(by.0.clone())
        }
        Phase::Paused { by, since, .. } if *since == at => Some(by.0.clone()),
        _ => None,
    }
}

/// Who may approve the gate a rollout at `stage` waits at.
fn approvers(rollout: Option<&Rollout>, stage: usize) -> Approvers {
    let anyone = Approvers { names: Vec::new(), required: 1 };
    let Some(r) = rollout else { return anyone };
    let next = match r.phase {
        Phase::AwaitingApproval { gate: Gate::Stage, next, .. } => next,
        Phase::AwaitingApproval { .. } => return anyone,
        _ => stage + 1,
    };
    match r.plan().approvers_for(next) {
        Some(named) => Approvers { names: named.names.clone(), required: named.required },
        None => anyone,
    }
}

fn base(
    event: EventKind,
    id: &str,
    at: Timestamp,
    rollout: Option<&Rollout>,
    by: Option<String>,
    reason: Option<String>,
) -> Notification {
    Notification {
        event,
        rollout: id.to_string(),
        at,
        by,
        reason,
        stage: rollout.map_or(1, |r| r.stage + 1),
        stages: rollout.map_or(1, |r| r.stages().len()),
        canary_weight: rollout.map_or(0, |r| r.canary_weight),
        stable: rollout.map(|r| r.stable_revision.clone()).unwrap_or_default(),
        canary: rollout.map(|r| r.canary_revision.clone()).unwrap_or_default(),
        production: rollout.is_some_and(|r| r.plan().target.production),
        approvers: None,
        summary: String::new(),
    }
}

/// One plain line: what happened to which rollout, by whom and why.
fn summary(n: &Notification) -> String {
    let prod = if n.production { "[production] " } else { "" };
    let id = &n.rollout;
    let by = n.by.as_deref().map(|b| inert(b).into_owned()).unwrap_or_default();
    let why = n.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    let at = format!("stage {} of {}", n.stage, n.stages);
    let line = match n.event {
        EventKind::Rollback => format!("{prod}{id} rolled back to {} by {by} at {at}{why}", n.stable),
        EventKind::Abort => format!("{prod}{id} aborted by {by} at {at}: canary {} gets no traffic{why}", n.canary),
        EventKind::Paused => format!("{prod}{id} paused by {by} at {at} and needs a human{why}"),
        EventKind::Approval => format!(
            "{prod}{id} waits for approval at {at} ({} may approve){why}",
            n.approvers.as_ref().map_or_else(|| "any captain".into(), Approvers::text)
        ),
        EventKind::Promoted => format!("{prod}{id} promoted: {} takes all traffic", n.canary),
        EventKind::Acknowledged => format!("{prod}{id}: {by} acknowledged"),
        EventKind::Failed => format!("{prod}{id} failed at {at}: a human must look{why}"),
    };
    line
}

// --- Payloads -------------------------------------------------------------

/// Text as Slack's `mrkdwn` takes it literally: `&`, `<` and `>` escaped.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Slack incoming webhook's body: `{"text": …}`.
pub fn slack_body(n: &Notification) -> serde_json::Value {
    let icon = match n.event {
        EventKind::Rollback => ":rotating_light:",
        EventKind::Abort => ":octagonal_sign:",
        EventKind::Paused => ":double_vertical_bar:",
        EventKind::Approval => ":raised_hand:",
        EventKind::Promoted => ":white_check_mark:",
        EventKind::Acknowledged => ":eyes:",
        EventKind::Failed => ":fire:",
    };
    serde_json::json!({ "text": format!("{icon} {}", slack_escape(&n.summary)) })
}

/// PagerDuty's `dedup_key` for a rollout: one incident per rollout, which
/// its promotion or an acknowledge resolves.
pub fn dedup_key(rollout: &str) -> String {
    format!("flightdeck/{rollout}")
}

/// Whether `event` opens (or adds to) a PagerDuty incident, with its
/// severity, or resolves it (`None`).
pub fn pagerduty_severity(event: EventKind) -> Option<&'static str> {
    match event {
        EventKind::Rollback | EventKind::Failed => Some("critical"),
        EventKind::Abort => Some("error"),
        EventKind::Paused => Some("warning"),
        EventKind::Approval => Some("info"),
        EventKind::Promoted | EventKind::Acknowledged => None,
    }
}

/// A PagerDuty Events API v2 event: `trigger` with a payload, or `resolve`.
pub fn pagerduty_body(n: &Notification, routing_key: &str, source: &str) -> serde_json::Value {
    let dedup = dedup_key(&n.rollout);
    match pagerduty_severity(n.event) {
        Some(severity) => {
            // PagerDuty takes at most 1,024 characters of summary.
            let summary: String = n.summary.chars().take(1024).collect();
            serde_json::json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup,
                "client": "flightdeck",
                "payload": {
                    "summary": summary,
                    "source": source,
                    "severity": severity,
                    "component": n.rollout,
                    "class": n.event.name(),
                    "custom_details": n,
                },
            })
        }
        None => serde_json::json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup,
        }),
    }
}

/// The generic webhook's body: the notification as JSON.
pub fn webhook_body(n: &Notification) -> Vec<u8> {
    serde_json::to_vec(n).unwrap_or_default()
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`, as the
/// `X-Flightdeck-Signature` header carries it.
#[cfg(feature = "notify")]
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag.as_ref() {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

// --- Configuration --------------------------------------------------------

/// Where a `[[notify]]` entry sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    Slack,
    Pagerduty,
    Webhook,
}

impl SinkKind {
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Slack => "slack",
            SinkKind::Pagerduty => "pagerduty",
            SinkKind::Webhook => "webhook",
        }
    }
}

/// Where a value comes from: written in the config (never a secret), an
/// environment variable, or a file (its text, trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Inline(String),
    Env(String),
    File(PathBuf),
}

/// One `[[notify]]` entry, checked for shape as the config is read (errors
/// at its `file:line`); its secrets are read by [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawNotify")]
pub struct NotifyConfig {
    pub kind: SinkKind,
    /// How the logs and `flightdeck_notifications_total` name it (default: its kind).
    pub name: String,
    pub url: Source,
    /// A PagerDuty routing key, or a webhook's HMAC key.
    pub secret: Option<Source>,
    pub events: Vec<EventKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    kind: SinkKind,
    name: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    routing_key_env: Option<String>,
    routing_key_file: Option<PathBuf>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    events: Option<Vec<EventKind>>,
}

/// The one source of `what` among those given, if any.
fn one_of(what: &str, given: Vec<(&str, Option<Source>)>) -> Result<Option<Source>, String> {
    let set: Vec<(&str, Source)> = given.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
    match set.len() {
        0 => Ok(None),
        1 => Ok(set.into_iter().next().map(|(_, v)| v)),
        _ => {
            let keys: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
            Err(format!("{what}: give one of {}, not several", keys.join(", ")))
        }
    }
}

impl TryFrom<RawNotify> for NotifyConfig {
    type Error = String;

    fn try_from(raw: RawNotify) -> Result<Self, String> {
        let kind = raw.kind;
        let k = kind.name();
        let url = one_of(
            "url",
            vec![
                ("url", raw.url.map(Source::Inline)),
                ("url_env", raw.url_env.map(Source::Env)),
                ("url_file", raw.url_file.map(Source::File)),
            ],
        )?;
        let routing_key = one_of(
            "routing key",
            vec![
                ("routing_key_env", raw.routing_key_env.map(Source::Env)),
                ("routing_key_file", raw.routing_key_file.map(Source::File)),
            ],
        )?;
        let secret = one_of(
            "secret",
            vec![("secret_env", raw.secret_env.map(Source::Env)), ("secret_file", raw.secret_file.map(Source::File))],
        )?;
        let (url, secret) = match kind {
            SinkKind::Slack => {
                if routing_key.is_some() || secret.is_some() {
                    return Err("a slack entry takes only its webhook URL (url_env or url_file)".into());
                }
                match url {
                    Some(Source::Inline(_)) => {
                        return Err("a Slack webhook URL is a secret: name it with url_env (an environment \
                                    variable) or url_file (a file), never inline"
                            .into())
                    }
                    Some(url) => (url, None),
                    None => return Err("a slack entry needs url_env or url_file (its incoming webhook URL)".into()),
                }
            }
            SinkKind::Pagerduty => {
                if secret.is_some() {
                    return Err(
                        "a pagerduty entry's secret is its routing key: routing_key_env or routing_key_file".into()
                    );
                }
                let Some(key) = routing_key else {
                    return Err("a pagerduty entry needs routing_key_env or routing_key_file".into());
                };
                (url.unwrap_or_else(|| Source::Inline(PAGERDUTY_URL.into())), Some(key))
            }
            SinkKind::Webhook => {
                if routing_key.is_some() {
                    return Err("routing_key_env and routing_key_file are for pagerduty entries".into());
                }
                let Some(url) = url else { return Err("a webhook entry needs url (or url_env, url_file)".into()) };
                let Some(secret) = secret else {
                    return Err("a webhook entry needs secret_env or secret_file: its bodies are signed \
                                (X-Flightdeck-Signature)"
                        .into());
                };
                (url, Some(secret))
            }
        };
        if let Source::Inline(u) = &url {
            check_url(u)?;
        }
        let events = match raw.events {
            Some(e) if e.is_empty() => {
                return Err("events: an empty list would send nothing; leave it out for all".into())
            }
            Some(e) => e,
            None => EventKind::ALL.to_vec(),
        };
        let name = raw.name.unwrap_or_else(|| k.to_string());
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
            return Err("name: 1 to 64 printable characters".into());
        }
        Ok(NotifyConfig { kind, name, url, secret, events })
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err("the URL must start with https:// (or http://)".into())
    }
}

/// A destination with its secrets read: never printed (its `Debug` hides them).
#[derive(Clone)]
pub struct Sink {
    pub kind: SinkKind,
    pub name: String,
    pub url: String,
    pub secret: Option<String>,
    pub events: Vec<EventKind>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("events", &self.events)
            .finish()
    }
}

/// Reads every entry's secrets: an environment variable that is not set (or
/// empty), a file that cannot be read, or a URL that is not one, is an
/// error at the entry's `file:line`. `text` is the config's text, to place it.
pub fn resolve(entries: &[NotifyConfig], file: &Path, text: &str) -> Result<Vec<Sink>, String> {
    let shown = file.display().to_string();
    let place = |i: usize| -> String {
        let line = TomlFile::parse(&shown, text, "config").ok().and_then(|toml| {
            let tree = toml.tree();
            let line = tree.value.entries().find(|(k, _)| k.name == "notify").and_then(|(_, node)| match &node.value {
                flightdeck_core::toml_file::Value::Array(items) => items.get(i).map(|n| toml.line(Some(&n.span))),
                _ => None,
            });
            line
        });
        format!("{shown}:{}: notify[{i}]", line.unwrap_or(1))
    };
    let mut sinks = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let read = |what: &str, source: &Source| -> Result<String, String> {
            let value = match source {
                Source::Inline(v) => v.clone(),
                Source::Env(var) => match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
                    _ => return Err(format!("{}: {what}: environment variable {var} is not set", place(i))),
                },
                Source::File(path) => match crate::files::read_text(path) {
                    Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
                    Ok(_) => return Err(format!("{}: {what}: {} is empty", place(i), path.display())),
                    Err(err) => {
                        return Err(format!("{}: {what}: {}", place(i), err.at(&path.display().to_string(), what)))
                    }
                },
            };
            Ok(value)
        };
        let url = read("url", &e.url)?;
        check_url(&url).map_err(|m| format!("{}: url: {m}", place(i)))?;
        let secret = e.secret.as_ref().map(|s| read("secret", s)).transpose()?;
        sinks.push(Sink { kind: e.kind, name: e.name.clone(), url, secret, events: e.events.clone() });
    }
    Ok(sinks)
}

/// This host's name, PagerDuty's `source`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "flightdeck".to_owned(),
    }
}

// --- Sending --------------------------------------------------------------

/// One request to make: where, the body and its headers.
pub struct Request {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Sink {
    /// Whether this destination wants `event`.
    pub fn wants(&self, event: EventKind) -> bool {
        self.events.contains(&event)
    }

    /// The request that tells `n` here.
    #[cfg(feature = "notify")]
    pub fn request(&self, n: &Notification, source: &str) -> Request {
        let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap_or_default();
        let mut headers = vec![("content-type", "application/json".to_string())];
        let body = match self.kind {
            SinkKind::Slack => json(slack_body(n)),
            SinkKind::Pagerduty => json(pagerduty_body(n, self.secret.as_deref().unwrap_or_default(), source)),
            SinkKind::Webhook => {
                let body = webhook_body(n);
                let secret = self.secret.as_deref().unwrap_or_default();
                headers.push(("x-flightdeck-signature", signature(secret.as_bytes(), &body)));
                headers.push(("x-flightdeck-event", n.event.name().to_string()));
                headers.push(("x-flightdeck-delivery", format!("{}/{}/{}", n.rollout, n.event.name(), n.at.0)));
                body
            }
        };
        Request { body, headers }
    }
}

/// The notification journal: `<data dir>/notifications.jsonl`.
pub fn journal_path() -> PathBuf {
    crate::paths::data_dir().join("notifications.jsonl")
}

/// One line of the notification journal: how one notification to one destination ended.
#[derive(Debug, Serialize)]
pub struct Journaled<'a> {
    /// Wall-clock milliseconds when it ended.
    pub wall: u64,
    pub sink: &'a str,
    pub kind: &'a str,
    pub event: &'a str,
    pub rollout: &'a str,
    /// The engine's time of what it tells (the webhook's delivery id ends with it).
    pub at: u64,
    pub attempts: u32,
    /// `sent`, `failed` (after every attempt, or refused) or `dropped` (its queue was full).
    pub result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// Appends `record` to the journal at `path` (one write of one line: lines
/// of several destinations never interleave). A journal that cannot be
/// written is logged; the notification went out or not all the same.
pub fn journal(path: &Path, record: &Journaled) {
    use std::io::Write;
    let line = serde_json::to_string(record).unwrap_or_default() + "\n";
    let written = crate::paths::private_file()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "the notification journal cannot be written");
    }
}

/// Sends notifications to every destination, each from its own task.
#[cfg(feature = "notify")]
pub struct Notifier {
    queues: Vec<(Sink, tokio::sync::mpsc::Sender<Notification>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counters: std::sync::Arc<std::sync::Mutex<super::metrics::Counters>>,
    journal: PathBuf,
}

#[cfg(feature = "notify")]
impl Notifier {
    /// Starts one task per sink; results are counted in `counters` and journaled in `journal`.
    pub fn start(
        sinks: Vec<Sink>,
        counters: std::sync::Arc<std::sync::Mutex<super::metrics::Counters>>,
        journal: PathBuf,
    ) -> Result<Notifier, String> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("flightdeck/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("notifications: no HTTP client: {e}"))?;
        let source = hostname();
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for sink in sinks {
            let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
            let task = deliver(sink.clone(), rx, client.clone(), source.clone(), counters.clone(), journal.clone());
            tasks.push(tokio::spawn(task));
            queues.push((sink, tx));
        }
        Ok(Notifier { queues, tasks, counters, journal })
    }

    /// Queues `n` for every sink that wants it; never waits.
    pub fn offer(&self, n: &Notification) {
        for (sink, tx) in &self.queues {
            if !sink.wants(n.event) {
                continue;
            }
            if tx.try_send(n.clone()).is_err() {
                tracing::warn!(sink = %sink.name, event = n.event.name(), rollout = %n.rollout,
                    "notification dropped: {QUEUE} already wait for this destination");
                self.counters.lock().expect("counters").notification(&sink.name, "dropped");
                let record = Journaled {
                    wall: crate::clock::wall_ms(),
                    sink: &sink.name,
                    kind: sink.kind.name(),
                    event: n.event.name(),
                    rollout: &n.rollout,
                    at: n.at.0,
                    attempts: 0,
                    result: "dropped",
                    status: None,
                    error: None,
                };
                journal(&self.journal, &record);
            }
        }
    }

    /// Lets what is queued go out for at most `grace`, then stops.
    pub async fn finish(self, grace: Duration) {
        drop(self.queues);
        let all = join_all(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("notifications still queued at shutdown were not sent");
        }
    }
}

#[cfg(feature = "notify")]
async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// What one try came to.
#[cfg(feature = "notify")]
enum Outcome {
    Sent(u16),
    /// Worth another try (a network error, a timeout, 408, 429, 5xx).
    Retry(String),
    /// Not worth another (the destination refused the request itself).
    Refused(String),
}

#[cfg(feature = "notify")]
async fn deliver(
    sink: Sink,
    mut rx: tokio::sync::mpsc::Receiver<Notification>,
    client: reqwest::Client,
    source: String,
    counters: std::sync::Arc<std::sync::Mutex<super::metrics::Counters>>,
    journal_at: PathBuf,
) {
    while let Some(n) = rx.recv().await {
        let request = sink.request(&n, &source);
        let mut delay = FIRST_BACKOFF;
        let mut attempt = 0;
        let (event, rollout) = (n.event.name(), n.rollout.as_str());
        let (result, status, error) = loop {
            attempt += 1;
            let outcome = post(&client, &sink.url, &request).await;
            match outcome {
                Outcome::Sent(status) => {
                    tracing::info!(sink = %sink.name, kind = sink.kind.name(), event, rollout, attempt, status,
                        "notification sent");
                    break ("sent", Some(status), None);
                }
                Outcome::Retry(why) if attempt < ATTEMPTS => {
                    tracing::warn!(sink = %sink.name, kind = sink.kind.name(), event, rollout, attempt, error = %why,
                        "notification not sent; trying again in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Outcome::Retry(why) | Outcome::Refused(why) => {
                    tracing::error!(sink = %sink.name, kind = sink.kind.name(), event, rollout, attempt, error = %why,
                        "notification failed");
                    break ("failed", None, Some(why));
                }
            }
        };
        counters.lock().expect("counters").notification(&sink.name, result);
        let record = Journaled {
            wall: crate::clock::wall_ms(),
            sink: &sink.name,
            kind: sink.kind.name(),
            event,
            rollout,
            at: n.at.0,
            attempts: attempt,
            result,
            status,
            error: error.as_deref(),
        };
        journal(&journal_at, &record);
    }
}

/// One POST. Errors never carry the URL (a Slack webhook URL is a secret).
#[cfg(feature = "notify")]
async fn post(client: &reqwest::Client, url: &str, request: &Request) -> Outcome {
    let mut builder = client.post(url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    match builder.send().await {
        Ok(response) => {
            let status = response.status();
            let code = status.as_u16();
            if status.is_success() {
                return Outcome::Sent(code);
            }
            // The first bytes of the answer: the destination's reason.
            let text = response.text().await.unwrap_or_default();
            let text: String = inert(text.trim()).chars().take(200).collect();
            let why = format!("HTTP {code}: {text}");
            if code == 408 || code == 429 || status.is_server_error() {
                Outcome::Retry(why)
            } else {
                Outcome::Refused(why)
            }
        }
        Err(e) => {
            let e = e.without_url();
            let mut why = e.to_string();
            // Name the causes too (connection refused, a timeout, DNS).
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why.push_str(": ");
                why.push_str(&s.to_string());
                source = s.source();
            }
            Outcome::Retry(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::rollout::Actor;
    use flightdeck_core::Plan;

    const PLAN: &str = include_str!("../../examples/plans/canary.toml");
    const ID: &str = "sim-eu-1/checkout-api";

    fn rollout(phase: Phase) -> Rollout {
        let mut r = Rollout::new(ID, Plan::parse("canary.toml", PLAN).unwrap());
        r.phase = phase;
        r
    }

    fn transition(to: &str, at: u64) -> Output {
        Output::Transition {
            rollout: ID.into(),
            at: Timestamp(at),
            from: "progressing".into(),
            to: to.into(),
            stage: 1,
            stages: 4,
            weight: 0,
            still_at: None,
            reason: Some("error rate \u{1b}[31m up".into()),
        }
    }

    fn action(command: &str, at: u64) -> Output {
        Output::Action {
            rollout: ID.into(),
            at: Timestamp(at),
            actor: Actor::new("alice"),
            command: command.into(),
            stage: 1,
            accepted: true,
            reason: None,
            detail: None,
            revision: String::new(),
            session: None,
        }
    }

    #[test]
    fn a_rollback_is_the_analysis_unless_someone_sent_it_in_the_same_step() {
        let mut w = Watcher::default();
        let by_analysis = rollout(Phase::RolledBack { by: Actor::analysis(), reason: "r".into(), at: Timestamp(5) });
        let n = w.notice(&transition("rolled back", 5), Some(&by_analysis)).unwrap();
        assert_eq!((n.event, n.by.as_deref(), n.stage), (EventKind::Rollback, Some("analysis"), 2));
        // What someone typed is made inert before it goes anywhere.
        assert!(n.summary.contains("error rate \\x1b[31m up"), "{}", n.summary);
        assert!(w.notice(&action("rollback", 9), None).is_none());
        let n = w.notice(&transition("rolled back", 9), None).unwrap();
        assert_eq!(n.by.as_deref(), Some("alice"));
    }

    #[test]
    fn a_pause_someone_made_is_not_told_one_the_analysis_made_is() {
        let mut w = Watcher::default();
        w.notice(&action("pause", 3), None);
        assert!(w.notice(&transition("paused", 3), None).is_none());
        let n = w.notice(&transition("paused", 4), None).unwrap();
        assert_eq!((n.event, n.by.as_deref()), (EventKind::Paused, Some("analysis")));
        assert!(w.notice(&transition("progressing", 5), None).is_none());
    }

    #[test]
    fn an_approval_says_who_may_approve_and_an_acknowledge_who_acknowledged() {
        let mut w = Watcher::default();
        let text = PLAN.replace("weight = 10\n", "weight = 10\napprovers = [\"alice\", \"bob\"]\nrequired = 1\n");
        let mut r = Rollout::new(ID, Plan::parse("canary.toml", &text).unwrap());
        r.phase = Phase::AwaitingApproval { next: 1, gate: Gate::Stage, since: Timestamp(1) };
        let n = w.notice(&transition("awaiting approval", 1), Some(&r)).unwrap();
        assert_eq!(n.approvers, Some(Approvers { names: vec!["alice".into(), "bob".into()], required: 1 }));
        assert!(n.summary.contains("(1 of alice, bob may approve)"), "{}", n.summary);
        let n = w.notice(&action("acknowledge", 7), Some(&rollout(Phase::Pending))).unwrap();
        assert_eq!((n.event, n.by.as_deref()), (EventKind::Acknowledged, Some("alice")));
    }

    #[test]
    fn payloads_have_the_shapes_slack_and_pagerduty_document() {
        let mut w = Watcher::default();
        let n = w.notice(&transition("rolled back", 5), None).unwrap();
        let mut n2 = n.clone();
        n2.summary = "a < b & c > d".into();
        assert_eq!(slack_body(&n2)["text"], ":rotating_light: a &lt; b &amp; c &gt; d");
        let pd = pagerduty_body(&n, "KEY", "host-1");
        assert_eq!(pd["event_action"], "trigger");
        assert_eq!(pd["dedup_key"], "flightdeck/sim-eu-1/checkout-api");
        assert_eq!(
            (pd["payload"]["severity"].as_str(), pd["payload"]["source"].as_str()),
            (Some("critical"), Some("host-1"))
        );
        let mut done = n.clone();
        done.event = EventKind::Promoted;
        let resolve = pagerduty_body(&done, "KEY", "host-1");
        assert_eq!(resolve["event_action"], "resolve");
        assert!(resolve.get("payload").is_none());
        let mut long = n.clone();
        long.summary = "x".repeat(5000);
        assert_eq!(pagerduty_body(&long, "K", "h")["payload"]["summary"].as_str().unwrap().len(), 1024);
    }

    #[cfg(feature = "notify")]
    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_missing_secret_is_named_with_its_entry_and_line() {
        let text = "actor = \"x\"\n\n[[notify]]\nkind = \"slack\"\nurl_env = \"FD_UNIT_UNSET\"\n\n[[notify]]\nkind = \"webhook\"\nurl = \"https://h\"\nsecret_file = \"/nonexistent/flightdeck\"\n";
        let config = crate::config::Config::parse("c.toml", text).unwrap();
        let err = resolve(&config.notify, Path::new("c.toml"), text).unwrap_err();
        assert_eq!(err, "c.toml:3: notify[0]: url: environment variable FD_UNIT_UNSET is not set");
        let webhook = &config.notify[1..];
        let only = "\n[[notify]]\nkind = \"webhook\"\nurl = \"https://h\"\nsecret_file = \"/nonexistent/flightdeck\"\n";
        let err = resolve(webhook, Path::new("d.toml"), only).unwrap_err();
        assert!(err.starts_with("d.toml:2: notify[0]: secret: /nonexistent/flightdeck"), "{err}");
        let sink = Sink {
            kind: SinkKind::Slack,
            name: "s".into(),
            url: "https://secret".into(),
            secret: None,
            events: vec![],
        };
        assert!(!format!("{sink:?}").contains("secret"), "Debug hides the URL");
    }
}
