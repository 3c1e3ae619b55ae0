//! An Unleash feature flag's gradual rollout, through Unleash's Admin API.
//!
//! A stage's weight is the `rollout` percentage of the flag's gradual
//! rollout (the `flexibleRollout` strategy) in one environment: that share
//! of users, hashed by the strategy's stickiness (`userId`, `sessionId`,
//! `random` or a custom field) into its `groupId`, sees the flag on.
//! flightdeck changes that one number and nothing else: stickiness,
//! groupId, constraints, segments, variants and the strategy's title stay
//! as they are (a JSON patch `replace /parameters/rollout`, Unleash 5 and
//! later, after `test`s of the rollout, stickiness and groupId it read:
//! Unleash refuses the whole patch when one fails, so an edit made between
//! flightdeck's read and its write is never overwritten).
//!
//! ```toml
//! [target]
//! backend = "unleash"
//! server = "https://unleash.example.com"   # the Admin API is <server>/api/admin
//! project = "default"
//! environment = "production"
//! flag = "new-checkout"
//! token_env = "UNLEASH_API_TOKEN"          # or token_file = "/run/secrets/unleash"
//! revert = "zero"                          # or "disable": abort also turns the flag off
//! ```
//!
//! The Admin API token (an admin API token, a service account's or a
//! personal access token with rights to update the flag's strategies) is
//! read from the environment variable `token_env` (default
//! `UNLEASH_API_TOKEN`) or the file `token_file`, at every call, so a
//! rotated token is picked up; a plan never holds it (`token` is not a
//! parameter).
//!
//! The strategy driven is `strategy_id` when the plan names one, else the
//! environment's only strategy. Unleash turns a flag on for a user when any
//! of its strategies matches, so a second strategy adds users whatever the
//! rollout says: with more than one, the plan must name the strategy.
//!
//! Effects: `SetWeight { canary: w }` sets the rollout to `w` % and turns
//! the flag on in the environment if it is off (after the percentage is
//! set, so turning it on never shows more than `w` %). At 0 % with
//! `revert = "disable"` the flag is turned off first, then the rollout set
//! to 0. `SwitchActive` is 100/0. `Scale` changes nothing: both sides are
//! code paths of one deployment. `Undo` and `Native` are unsupported.
//!
//! Read-back: `observe` reads the environment and reports the rollout
//! percentage, or 0 % when the flag is off there or the strategy is
//! disabled (nobody sees the flag). A change made in Unleash (its UI, or
//! another API client) meanwhile is seen against what flightdeck last
//! wrote: a different percentage is drift (the core pauses with both
//! numbers; `resume` sets the stage's back), any other change to the
//! strategy (stickiness, groupId, constraints, variants, disabled) fails
//! the read-back with what changed, which pauses the rollout too (a new
//! stickiness or groupId reshuffles who is in the canary). A forward
//! change finding such an edit is refused once, with what it found;
//! `resume` then writes over it. Going to 0 % always applies.
//!
//! Refused, with Unleash's reason, and pausing the rollout: 401 (the token
//! is not valid), 403 (it may not change this flag), 404 (no such project,
//! flag, environment or strategy), a strategy that is not a gradual
//! rollout, a flag with no strategy or several and no `strategy_id`.
//! Unleash unreachable or slower than `timeout_ms` (default 5000) is
//! [`BackendError::Unreachable`].
//!
//! Metrics: none of its own. The application labels each request with
//! what the flag gave it (`variant="on"` / `"off"`), and Prometheus
//! compares the two (`[metrics] version_label`, the plan's `stable` and
//! `canary` being the two label values).

use crate::backend::target::{expect_backend, optional, required};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use flightdeck_core::plan::params::{Param, ParamKind};
use flightdeck_core::plan::params::{ParamError, TargetError};
use flightdeck_core::plan::{BackendKind, Target};
use flightdeck_core::rollout::{Effect, Observation, Version};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// What an Unleash target reads (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::required("server", ParamKind::Text, "Unleash's base URL; the Admin API is `<server>/api/admin`"),
    Param::required("environment", ParamKind::Text, "the environment whose gradual rollout is driven"),
    Param::required("flag", ParamKind::Text, "the feature flag's name"),
    Param::optional("project", ParamKind::Text, "the flag's project (default `default`)"),
    Param::optional(
        "strategy_id",
        ParamKind::Text,
        "the gradual rollout strategy's id, needed when the environment has several strategies",
    ),
    Param::optional(
        "token_env",
        ParamKind::Text,
        "the environment variable holding the Admin API token (default `UNLEASH_API_TOKEN`)",
    ),
    Param::optional("token_file", ParamKind::Text, "a file holding the Admin API token, read at every call"),
    Param::optional(
        "revert",
        ParamKind::OneOf(&["zero", "disable"]),
        "what abort and rollback do: `zero` sets the rollout to 0 % (default), `disable` also turns the flag off",
    ),
    Param::optional("timeout_ms", ParamKind::Millis, "limit for one call to Unleash, in milliseconds (default 5000)"),
];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_TOKEN_ENV: &str = "UNLEASH_API_TOKEN";
/// Unleash's name of the gradual rollout strategy.
const GRADUAL_ROLLOUT: &str = "flexibleRollout";

/// Where the Admin API token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenSource {
    Env(String),
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env(name) => write!(f, "${name}"),
            TokenSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What abort and rollback do to the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revert {
    /// The rollout to 0 %; the flag stays on (for the strategy's other users: none).
    Zero,
    /// Also the flag off in the environment.
    Disable,
}

/// The strategy flightdeck drives, as read.
#[derive(Debug, Clone, PartialEq)]
struct Gradual {
    id: String,
    rollout: u8,
    /// `rollout` as Unleash holds it (`"10"`), for a patch's `test`.
    rollout_as_written: Value,
    disabled: bool,
    /// Everything flightdeck keeps: the strategy without its percentage.
    kept: Value,
}

/// The environment as read: whether the flag is on there, and its strategy.
#[derive(Debug, Clone, PartialEq)]
struct Environment {
    enabled: bool,
    strategy: Gradual,
}

impl Environment {
    /// The share of users who see the flag on.
    fn exposure(&self) -> u8 {
        if self.enabled && !self.strategy.disabled {
            self.strategy.rollout
        } else {
            0
        }
    }
}

/// One flag's gradual rollout in one Unleash environment.
#[derive(Debug)]
pub struct Unleash {
    server: String,
    project: String,
    environment: String,
    flag: String,
    strategy_id: Option<String>,
    token: TokenSource,
    revert: Revert,
    timeout: Duration,
    client: reqwest::Client,
    /// What flightdeck last wrote (the strategy as it left it, and the
    /// percentage), to tell an edit made in Unleash meanwhile.
    written: Mutex<Option<Gradual>>,
    /// Held for a whole read-change-write.
    writing: tokio::sync::Mutex<()>,
}

impl Unleash {
    /// Reads the target's parameters (see the module doc). Contacts nothing.
    pub fn from_target(target: &Target) -> Result<Unleash, TargetError> {
        expect_backend(target, BackendKind::Unleash)?;
        let param = |key: &'static str| required(target, "unleash", key);
        let server = param("server")?.trim_end_matches('/').to_string();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(ParamError::new("server", format!("`{server}` is not an http:// or https:// URL")).into());
        }
        let segment = |key: &str, value: String| -> Result<String, ParamError> {
            // Unleash names are URL-friendly; anything else would change the path.
            if value.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)) {
                Ok(value)
            } else {
                Err(ParamError::new(key, format!("`{value}` is not an Unleash name (letters, digits, `-._~`)")))
            }
        };
        let token = match (optional(target, "token_file"), optional(target, "token_env")) {
            (Some(_), Some(_)) => {
                return Err(ParamError::new("token_file", "give token_file or token_env, not both").into())
            }
            (Some(file), None) => TokenSource::File(PathBuf::from(file)),
            (None, env) => TokenSource::Env(env.unwrap_or_else(|| DEFAULT_TOKEN_ENV.to_string())),
        };
        let revert = match optional(target, "revert").as_deref() {
            None | Some("zero") => Revert::Zero,
            Some("disable") => Revert::Disable,
            Some(other) => {
                let message = format!("unknown revert `{other}`; expected one of: zero, disable");
                return Err(ParamError::new("revert", message).into());
            }
        };
        let timeout = crate::backend::target::timeout(target, DEFAULT_TIMEOUT)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| TargetError::Target(format!("unleash: cannot build an HTTP client: {e}")))?;
        Ok(Unleash {
            server,
            project: segment("project", optional(target, "project").unwrap_or_else(|| "default".into()))?,
            environment: segment("environment", param("environment")?)?,
            flag: segment("flag", param("flag")?)?,
            strategy_id: optional(target, "strategy_id").map(|id| segment("strategy_id", id)).transpose()?,
            token,
            revert,
            timeout,
            client,
            written: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    fn refused(&self, action: &str, detail: String) -> BackendError {
        BackendError::Refused { backend: self.name(), action: action.to_string(), detail }
    }

    /// The Admin API token, read now.
    fn token(&self, action: &str) -> Result<String, BackendError> {
        let token = match &self.token {
            TokenSource::Env(name) => std::env::var(name).unwrap_or_default(),
            TokenSource::File(path) => crate::files::read_text_within(path, 64 * 1024)
                .map_err(|e| match e {
                    crate::files::TextError::Io(e) => format!("{e}"),
                    _ => crate::files::NOT_UTF8.to_string(),
                })
                .map_err(|e| self.refused(action, format!("cannot read the token file {}: {e}", path.display())))?,
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(self.refused(action, format!("no Admin API token in {}", self.token)));
        }
        Ok(token.to_string())
    }

    /// `<server>/api/admin/projects/P/features/F/environments/E` then `tail`.
    fn url(&self, tail: &str) -> String {
        format!(
            "{}/api/admin/projects/{}/features/{}/environments/{}{tail}",
            self.server, self.project, self.flag, self.environment
        )
    }

    /// One Admin API call; the answer's body when it is a success.
    async fn call(
        &self,
        action: &str,
        method: reqwest::Method,
        tail: &str,
        body: Option<Value>,
    ) -> Result<String, BackendError> {
        let token = self.token(action)?;
        let mut request = self.client.request(method, self.url(tail)).header("Authorization", token);
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| {
            let detail = if e.is_timeout() {
                format!("no answer within {} ms ({action})", self.timeout.as_millis())
            } else {
                format!("{action}: {e}")
            };
            BackendError::Unreachable { backend: self.name(), detail }
        };
        let answer = request.send().await.map_err(unreachable)?;
        let status = answer.status();
        let text = answer.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(text);
        }
        // Unleash answers errors as {"name", "message", "details"}.
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).and_then(|m| m.lines().next()).map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        let detail = match status.as_u16() {
            401 => format!("401 Unauthorized: Unleash does not accept the token in {} ({message})", self.token),
            403 => format!("403 Forbidden: the token in {} may not do this ({message})", self.token),
            404 => format!("404 Not Found: {message}"),
            _ => format!("HTTP {status}: {message}"),
        };
        Err(self.refused(action, detail))
    }

    /// The environment and the gradual rollout flightdeck drives in it.
    async fn read(&self, action: &str) -> Result<Environment, BackendError> {
        let text = self.call(action, reqwest::Method::GET, "", None).await?;
        let env: Value = serde_json::from_str(&text)
            .map_err(|e| self.refused(action, format!("the environment is not the JSON Unleash answers: {e}")))?;
        self.environment_of(&env).map_err(|detail| self.refused(action, detail))
    }

    fn environment_of(&self, env: &Value) -> Result<Environment, String> {
        let (flag, environment) = (&self.flag, &self.environment);
        let strategies = env.get("strategies").and_then(Value::as_array).cloned().unwrap_or_default();
        let id_of = |s: &Value| s.get("id").and_then(Value::as_str).unwrap_or("").to_string();
        let name_of = |s: &Value| s.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        let strategy = match &self.strategy_id {
            Some(id) => strategies
                .iter()
                .find(|s| id_of(s) == *id)
                .ok_or_else(|| format!("flag {flag} has no strategy {id} in {environment}"))?,
            None => match strategies.as_slice() {
                [one] => one,
                [] => {
                    return Err(format!(
                        "flag {flag} has no strategy in {environment}; add a gradual rollout at 0 % for flightdeck to drive"
                    ))
                }
                many => {
                    let listed: Vec<String> = many.iter().map(|s| format!("{} {}", name_of(s), id_of(s))).collect();
                    return Err(format!(
                        "flag {flag} has {} strategies in {environment} ({}); Unleash turns it on where any matches, \
                         so name the gradual rollout flightdeck drives with strategy_id",
                        many.len(),
                        listed.join(", ")
                    ));
                }
            },
        };
        let (id, name) = (id_of(strategy), name_of(strategy));
        if name != GRADUAL_ROLLOUT {
            return Err(format!(
                "strategy {id} of flag {flag} in {environment} is `{name}`, not a gradual rollout ({GRADUAL_ROLLOUT}); \
                 flightdeck sets only a gradual rollout's percentage"
            ));
        }
        let rollout = rollout_of(strategy)
            .ok_or_else(|| format!("strategy {id} of flag {flag} has no rollout percentage flightdeck can read"))?;
        let disabled = strategy.get("disabled").and_then(Value::as_bool).unwrap_or(false);
        let enabled = env.get("enabled").and_then(Value::as_bool).unwrap_or(false);
        let rollout_as_written = strategy["parameters"]["rollout"].clone();
        let kept = kept_of(strategy);
        Ok(Environment { enabled, strategy: Gradual { id, rollout, rollout_as_written, disabled, kept } })
    }

    /// Sets the gradual rollout to `canary` % (see the module doc).
    async fn set_rollout(&self, canary: u8) -> Result<(), BackendError> {
        let canary = canary.min(100);
        let action = format!("set {} to {canary} %", self.flag);
        let _writing = self.writing.lock().await;
        let env = self.read(&action).await?;
        let seen = env.strategy.clone();
        let last = self.written.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(last) =
            last.filter(|last| last.id == seen.id && (last.rollout, &last.kept) != (seen.rollout, &seen.kept))
        {
            if canary > env.exposure() {
                // Seen once, refused once: the captain's resume writes over it.
                *self.written.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen.clone());
                let what = changes(&last, &seen).join(", ");
                return Err(self.refused(
                    &action,
                    format!("the gradual rollout was changed in Unleash since flightdeck set it ({what}); not overwriting it"),
                ));
            }
        }
        if canary == 0 && self.revert == Revert::Disable && env.enabled {
            self.call(&action, reqwest::Method::POST, "/off", None).await?;
        }
        if canary > 0 && seen.disabled {
            return Err(self.refused(
                &action,
                format!("strategy {} is disabled in Unleash; enable it there, then resume", seen.id),
            ));
        }
        if seen.rollout != canary {
            let patch = compare_and_set(&seen, canary);
            let path = format!("/strategies/{}", seen.id);
            self.call(&action, reqwest::Method::PATCH, &path, Some(patch)).await.map_err(|e| match e {
                BackendError::Refused { detail, .. } if detail.contains("Test operation failed") => self.refused(
                    &action,
                    "the gradual rollout changed in Unleash between flightdeck's read and its write; not overwritten"
                        .into(),
                ),
                e => e,
            })?;
        }
        if canary > 0 && !env.enabled {
            self.call(&action, reqwest::Method::POST, "/on", None).await?;
        }
        let written = Gradual { rollout: canary, rollout_as_written: json!(canary.to_string()), ..seen };
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) = Some(written);
        Ok(())
    }
}

/// A JSON patch that sets the rollout to `canary` % only if the rollout,
/// stickiness and groupId are still what flightdeck read: Unleash applies
/// the `test` operations and the `replace` as one update, and refuses the
/// whole patch when a test fails (an edit in between is never overwritten).
fn compare_and_set(seen: &Gradual, canary: u8) -> Value {
    let mut patch = vec![json!({ "op": "test", "path": "/parameters/rollout", "value": seen.rollout_as_written })];
    for key in ["stickiness", "groupId"] {
        if let Some(value) = seen.kept["parameters"].get(key) {
            patch.push(json!({ "op": "test", "path": format!("/parameters/{key}"), "value": value }));
        }
    }
    patch.push(json!({ "op": "replace", "path": "/parameters/rollout", "value": canary.to_string() }));
    Value::Array(patch)
}

/// The percentage of a strategy's `rollout` parameter (Unleash stores "10").
fn rollout_of(strategy: &Value) -> Option<u8> {
    let rollout = strategy.get("parameters")?.get("rollout")?;
    let n = match rollout {
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    u8::try_from(n).ok().filter(|n| *n <= 100)
}

/// The parts of a strategy flightdeck keeps as they are.
fn kept_of(strategy: &Value) -> Value {
    let mut parameters = strategy.get("parameters").cloned().unwrap_or(Value::Null);
    if let Some(p) = parameters.as_object_mut() {
        p.remove("rollout");
    }
    let field = |key: &str| strategy.get(key).cloned().unwrap_or(Value::Null);
    json!({
        "parameters": parameters,
        "constraints": field("constraints"),
        "variants": field("variants"),
        "disabled": field("disabled"),
        "title": field("title"),
    })
}

/// What differs between what flightdeck wrote and what it reads, in words.
fn changes(written: &Gradual, seen: &Gradual) -> Vec<String> {
    let mut found = Vec::new();
    if written.rollout != seen.rollout {
        found.push(format!("rollout {} % where flightdeck set {} %", seen.rollout, written.rollout));
    }
    let (was, now) = (&written.kept, &seen.kept);
    if let (Some(a), Some(b)) = (was["parameters"].as_object(), now["parameters"].as_object()) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys.into_iter().filter(|k| a.get(*k) != b.get(*k)) {
            let show =
                |v: Option<&Value>| v.map_or("none".to_string(), |v| v.as_str().map_or(v.to_string(), str::to_string));
            found.push(format!("{key} {} → {}", show(a.get(key)), show(b.get(key))));
        }
    } else if was["parameters"] != now["parameters"] {
        found.push("parameters".into());
    }
    for key in ["constraints", "variants", "disabled", "title"] {
        if was[key] != now[key] {
            found.push(format!("{key} changed"));
        }
    }
    found
}

impl std::fmt::Display for Unleash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unleash {}/{} {}", self.project, self.flag, self.environment)
    }
}

#[async_trait]
impl Backend for Unleash {
    fn name(&self) -> String {
        self.to_string()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        match effect {
            Effect::SetWeight { canary } => self.set_rollout(*canary).await,
            Effect::SwitchActive { to: Version::Canary } => self.set_rollout(100).await,
            Effect::SwitchActive { to: Version::Stable } => self.set_rollout(0).await,
            // Both sides are code paths of one deployment: nothing to scale.
            Effect::Scale { .. } | Effect::Notify(_) => Ok(()),
            Effect::Undo { .. } | Effect::Native { .. } => {
                Err(BackendError::Unsupported { backend: self.name(), effect: effect.to_string() })
            }
        }
    }

    /// The share of users who see the flag on. A percentage changed in
    /// Unleash is reported as read (the core sees drift); any other change
    /// to the strategy since flightdeck wrote it fails the read-back.
    async fn observe(&self) -> Result<Observation, BackendError> {
        let env = self.read("read back").await?;
        let seen = &env.strategy;
        let last = self.written.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut detail = format!("gradual rollout {} %", seen.rollout);
        if let Some(stickiness) = seen.kept["parameters"]["stickiness"].as_str() {
            detail.push_str(&format!(" by {stickiness}"));
        }
        if !env.enabled {
            detail.push_str(&format!(", flag off in {}", self.environment));
        } else if seen.disabled {
            detail.push_str(", strategy disabled");
        }
        if let Some(last) = last.filter(|last| last.id == seen.id) {
            if last.kept != seen.kept {
                let what = changes(&last, seen).join(", ");
                return Err(self.refused(
                    "read back",
                    format!("the gradual rollout was changed in Unleash since flightdeck set it ({what}); resume keeps the change and sets the stage's percentage"),
                ));
            }
            if last.rollout != seen.rollout {
                detail.push_str(&format!(" — changed in Unleash: flightdeck set {} %", last.rollout));
            }
        }
        Ok(Observation { canary_weight: Some(env.exposure()), native_detail: Some(detail), ..Observation::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(params: &[(&str, &str)]) -> Target {
        Target {
            backend: BackendKind::Unleash,
            group: "flags".into(),
            production: false,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    const BASE: [(&str, &str); 3] =
        [("server", "http://unleash:4242/"), ("environment", "production"), ("flag", "new-checkout")];

    #[test]
    fn reads_the_target_and_never_a_token() {
        let u = Unleash::from_target(&target(&BASE)).unwrap();
        assert_eq!(
            u.url("/on"),
            "http://unleash:4242/api/admin/projects/default/features/new-checkout/environments/production/on"
        );
        assert_eq!(u.token, TokenSource::Env("UNLEASH_API_TOKEN".into()));
        assert_eq!((u.revert, u.timeout), (Revert::Zero, DEFAULT_TIMEOUT));
        let with = |extra: &[(&str, &str)]| {
            let mut params = BASE.to_vec();
            params.extend_from_slice(extra);
            Unleash::from_target(&target(&params))
        };
        assert_eq!(with(&[("token_file", "/run/t")]).unwrap().token, TokenSource::File("/run/t".into()));
        let both = ParamError::new("token_file", "give token_file or token_env, not both");
        assert_eq!(with(&[("token_file", "/run/t"), ("token_env", "T")]).unwrap_err(), both.into());
        assert_eq!(with(&[("revert", "disable")]).unwrap().revert, Revert::Disable);
        let not_a_name = ParamError::new("flag", "`a/b` is not an Unleash name (letters, digits, `-._~`)");
        assert_eq!(with(&[("flag", "a/b")]).unwrap_err(), not_a_name.into());
        let err = with(&[("server", "unleash:4242")]).unwrap_err();
        assert!(matches!(&err, TargetError::Param(p) if p.key == "server"), "{err}");
        assert!(!PARAMS.iter().any(|p| p.name == "token"), "a token never goes in a plan");
    }

    fn env(enabled: bool, strategies: Value) -> Value {
        json!({ "name": "new-checkout", "environment": "production", "enabled": enabled, "strategies": strategies })
    }

    fn gradual(id: &str, rollout: &str) -> Value {
        json!({ "id": id, "name": "flexibleRollout", "disabled": false, "constraints": [],
                "parameters": { "rollout": rollout, "stickiness": "userId", "groupId": "new-checkout" } })
    }

    #[test]
    fn drives_only_a_lone_or_named_gradual_rollout() {
        let u = Unleash::from_target(&target(&BASE)).unwrap();
        let e = u.environment_of(&env(true, json!([gradual("s1", "25")]))).unwrap();
        assert_eq!((e.strategy.id.as_str(), e.strategy.rollout, e.exposure()), ("s1", 25, 25));
        assert_eq!(u.environment_of(&env(false, json!([gradual("s1", "25")]))).unwrap().exposure(), 0);
        let standard = json!([{ "id": "s2", "name": "default", "parameters": {} }]);
        assert!(u.environment_of(&env(true, standard)).unwrap_err().contains("is `default`, not a gradual rollout"));
        assert!(u.environment_of(&env(true, json!([]))).unwrap_err().contains("has no strategy in production"));
        let two = json!([gradual("s1", "25"), { "id": "s2", "name": "userWithId" }]);
        assert!(u.environment_of(&env(true, two.clone())).unwrap_err().contains("2 strategies in production"));
        let mut params = BASE.to_vec();
        params.push(("strategy_id", "s1"));
        let named = Unleash::from_target(&target(&params)).unwrap();
        assert_eq!(named.environment_of(&env(true, two)).unwrap().strategy.rollout, 25);
        assert!(u
            .environment_of(&env(true, json!([gradual("s1", "250")])))
            .unwrap_err()
            .contains("no rollout percentage"));
    }

    #[test]
    fn a_write_tests_what_it_read_before_it_replaces_the_percentage() {
        let u = Unleash::from_target(&target(&BASE)).unwrap();
        let seen = u.environment_of(&env(true, json!([gradual("s1", "10")]))).unwrap().strategy;
        let patch = compare_and_set(&seen, 25);
        assert_eq!(
            patch,
            json!([
                { "op": "test", "path": "/parameters/rollout", "value": "10" },
                { "op": "test", "path": "/parameters/stickiness", "value": "userId" },
                { "op": "test", "path": "/parameters/groupId", "value": "new-checkout" },
                { "op": "replace", "path": "/parameters/rollout", "value": "25" },
            ])
        );
    }

    #[test]
    fn says_what_was_changed_besides_the_percentage() {
        let u = Unleash::from_target(&target(&BASE)).unwrap();
        let before = u.environment_of(&env(true, json!([gradual("s1", "10")]))).unwrap().strategy;
        let mut edited = gradual("s1", "35");
        edited["parameters"]["stickiness"] = json!("sessionId");
        let after = u.environment_of(&env(true, json!([edited]))).unwrap().strategy;
        assert_eq!(
            changes(&before, &after),
            ["rollout 35 % where flightdeck set 10 %", "stickiness userId → sessionId"]
        );
    }
}
