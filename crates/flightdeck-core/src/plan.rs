//! Plan files: what a rollout should do, parsed from TOML and validated.
//!
//! A plan names the rollout, its target (backend and its parameters), the
//! strategy, the analysis thresholds and the SLO. Every default comes from
//! the domain facts (stages 1/10/50/100 with 15 min bakes, error increase
//! ≤ 1 pp, p99 increase ≤ 10 %, ≥ 100 canary requests, SLO 99.9 % / 30 d).
//!
//! # File format
//!
//! ```toml
//! [rollout]
//! name = "checkout-api"      # required
//! stable = "v1.4.2"          # required
//! canary = "v1.5.0"          # required
//! theme = "prod"             # optional
//!
//! [target]
//! backend = "sim"            # default "sim"; one of BackendKind::NAMES
//! group = "prod-eu-1"        # optional, default: the backend name
//! production = false         # optional, default false
//! # every other key is a backend parameter (string, integer or boolean,
//! # stored as a string)
//! scenario = "healthy"
//!
//! # Parameters may also go in a sub-table; this is the only way to set a
//! # parameter whose name is one of the keys above (HAProxy's `backend`).
//! [target.params]
//! backend = "checkout"
//!
//! [strategy]
//! kind = "canary"            # "canary" (default) | "blue-green" | "rolling"
//!
//! # canary: stages with weight (integer 1..=100, strictly increasing),
//! # bake (duration ≤ 7d, default "15m"; "0s" only on the 100 % stage) and
//! # approval (bool, default false). Without stages: 1, 10, 50 with 15m
//! # bakes and 100 with bake "0s".
//! [[strategy.stages]]
//! weight = 10
//! bake = "15m"
//! approval = true
//!
//! # blue-green: preview (duration in (0, 7d], default "5m"), verification
//! # (duration in (0, 7d], default "5m"), approval (bool, default false).
//! # rolling: batch_percent (1..=100, default 25), bake (duration in
//! # (0, 7d], default "5m").
//! # Keys of another kind are errors (e.g. `stages` with kind = "rolling").
//!
//! [analysis]                 # all optional; defaults = AnalysisConfig::default()
//! interval = "1m"            # > 0, ≤ 1h
//! max_error_increase_pp = 1.0  # (0, 100]
//! max_p99_increase_pct = 10.0  # > 0
//! min_requests = 100         # ≥ 1
//! inconclusive_limit = 3     # ≥ 1
//! alpha = 0.01               # (0, 0.2]
//! confidence = 0.95          # (0.5, 1)
//! max_error_rate_pct = 5.0   # (0, 100]
//! max_p99_ms = 1000.0        # > 0
//!
//! [slo]                      # optional; defaults = Slo::default()
//! objective_pct = 99.9       # (0, 100)
//! window = "30d"             # > 0, ≤ 1y (365.25 days)
//! ```
//!
//! Durations are humantime strings ("30s", "15m", "1h 30m"), bounded above
//! so that a unit typo ("15d" for "15m") or an absurd value is an error, not
//! a rollout that never ends or a clock that overflows. Errors carry
//! the file, the 1-based line and column of the offending value (or of the
//! table header when a key is missing), the dotted field path with 0-based
//! array indices (`strategy.stages[2].weight`) and a message that says what
//! is wrong and what is allowed. Only the first error is reported.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// A validated plan. Build one with [`Plan::parse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Rollout name, unique within a target group ("checkout-api").
    pub name: String,
    /// Revision currently serving ("v1.4.2").
    pub stable: String,
    /// Revision being rolled out ("v1.5.0").
    pub canary: String,
    /// Theme the cockpit uses for this rollout (so prod never looks like staging).
    pub theme: Option<String>,
    /// Where the rollout runs and how flightdeck reaches it.
    pub target: Target,
    pub strategy: Strategy,
    pub analysis: AnalysisConfig,
    pub slo: Slo,
    /// Where per-version metrics come from.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// Where the analysis reads per-version metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", tag = "source")]
pub enum MetricsConfig {
    /// The backend's own numbers: the simulator, HAProxy's `show stat`,
    /// Envoy's `/stats/prometheus`, NGINX's access log.
    #[default]
    Backend,
    /// PromQL against a Prometheus server, one query per metric with
    /// `{{version}}` (the revision) and `{{interval}}` (e.g. `60s`) filled in.
    Prometheus { address: String, queries: PromQueries },
    /// CloudWatch's Application Load Balancer metrics, one target group per
    /// version (`RequestCount`, `HTTPCode_Target_5XX_Count`,
    /// `TargetResponseTime` p50/p95/p99).
    Cloudwatch(CloudwatchMetrics),
}

/// Where CloudWatch finds each version's numbers. Unset dimensions come
/// from the target (an ECS target's `listener_rule` and target groups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudwatchMetrics {
    /// The `LoadBalancer` dimension (`app/<name>/<id>`) or the load balancer's ARN.
    pub load_balancer: Option<String>,
    /// The `TargetGroup` dimensions (`targetgroup/<name>/<id>`) or target group ARNs.
    pub stable_target_group: Option<String>,
    pub canary_target_group: Option<String>,
    /// How long before `now` each window ends: the load balancer publishes
    /// a minute's datapoints about a minute later.
    #[serde(with = "crate::time::humane")]
    pub lag: Duration,
}

/// The default [`CloudwatchMetrics::lag`].
pub const DEFAULT_CLOUDWATCH_LAG: Duration = Duration::from_secs(60);

/// PromQL templates, one per metric. Latency queries answer in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromQueries {
    pub requests: String,
    pub errors: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
}

impl Default for PromQueries {
    /// Queries for the conventional `http_requests_total{version,code}`
    /// counter and `http_request_duration_seconds` histogram.
    fn default() -> Self {
        let quantile = |q: &str| {
            format!(
                "1000 * histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{{version=\"{{{{version}}}}\"}}[{{{{interval}}}}])))"
            )
        };
        PromQueries {
            requests: "sum(increase(http_requests_total{version=\"{{version}}\"}[{{interval}}]))".into(),
            errors: "sum(increase(http_requests_total{version=\"{{version}}\",code=~\"5..\"}[{{interval}}]))".into(),
            p50: quantile("0.5"),
            p95: quantile("0.95"),
            p99: quantile("0.99"),
        }
    }
}

/// The backend a plan drives or observes, with that backend's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub backend: BackendKind,
    /// Grouping label shown in the cockpit: cluster, account or proxy name.
    pub group: String,
    /// Marks the target as production (the cockpit shows it loudly).
    pub production: bool,
    /// Backend parameters, all as strings ("socket" = "/run/haproxy.sock").
    pub params: BTreeMap<String, String>,
}

impl Target {
    /// Who moves this target's rollouts. An ECS service is observed when
    /// its own deployment controller runs it (the default), driven when
    /// `controller = "external"` lets flightdeck run task sets.
    pub fn control(&self) -> Control {
        match self.backend {
            BackendKind::Ecs if self.params.get("controller").is_some_and(|c| c == "external") => Control::Driven,
            other => other.control(),
        }
    }
}

/// The backends flightdeck knows. `Sim` is the embedded default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    Sim,
    Haproxy,
    Envoy,
    Nginx,
    ArgoRollouts,
    Deployment,
    Ecs,
    /// Flagger (`flagger.app` Canary), observed.
    Flagger,
}

impl BackendKind {
    /// Every backend name accepted in a plan, for error messages.
    pub const NAMES: &'static [&'static str] =
        &["sim", "haproxy", "envoy", "nginx", "argo-rollouts", "deployment", "ecs", "flagger"];

    /// The parameters a target of this backend must set.
    pub fn required_params(self) -> &'static [&'static str] {
        match self {
            BackendKind::Sim => &[],
            BackendKind::Haproxy => &["socket", "backend", "stable_server", "canary_server"],
            BackendKind::Envoy => &["admin", "stable_cluster", "canary_cluster"],
            BackendKind::Nginx => &["upstream_file", "upstream", "stable_server", "canary_server"],
            BackendKind::ArgoRollouts => &["namespace", "rollout"],
            BackendKind::Deployment => &["namespace", "stable_deployment", "canary_deployment"],
            BackendKind::Ecs => &["cluster", "service"],
            BackendKind::Flagger => &["namespace", "canary"],
        }
    }

    /// Whether a native controller runs the rollout and flightdeck observes
    /// it (ECS by default; see [`Target::control`]).
    pub fn control(self) -> Control {
        match self {
            BackendKind::ArgoRollouts | BackendKind::Ecs | BackendKind::Flagger => Control::Observed,
            _ => Control::Driven,
        }
    }

    /// Whether each version runs on capacity made for it (ECS task sets,
    /// billed per task) rather than on fixed servers or Deployments: an
    /// aborted canary is then scaled to 0 at once (a retry scales it up
    /// before it gets traffic) and a promoted canary's old side is removed.
    pub fn removes_idle_side(self) -> bool {
        matches!(self, BackendKind::Ecs)
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Sim => "sim",
            BackendKind::Haproxy => "haproxy",
            BackendKind::Envoy => "envoy",
            BackendKind::Nginx => "nginx",
            BackendKind::ArgoRollouts => "argo-rollouts",
            BackendKind::Deployment => "deployment",
            BackendKind::Ecs => "ecs",
            BackendKind::Flagger => "flagger",
        }
    }
}

/// Who moves the rollout: flightdeck itself, or a native controller that
/// flightdeck mirrors and commands through native verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    Driven,
    Observed,
}

/// How the new revision reaches users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Strategy {
    /// Weighted traffic in stages.
    Canary { stages: Vec<CanaryStage> },
    /// Preview checks, one switch, then a verification window.
    BlueGreen {
        #[serde(with = "crate::time::humane")]
        preview: Duration,
        #[serde(with = "crate::time::humane")]
        verification: Duration,
        /// Ask a human before the switch.
        approval: bool,
    },
    /// Replicas replaced in batches of `batch_percent`.
    Rolling {
        batch_percent: u8,
        #[serde(with = "crate::time::humane")]
        bake: Duration,
    },
}

/// One canary stage as written in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryStage {
    /// Canary traffic share in percent, 1..=100.
    pub weight: u8,
    /// How long the stage must hold (with passing analysis) before the next.
    #[serde(with = "crate::time::humane")]
    pub bake: Duration,
    /// A human must approve before the rollout enters this stage.
    pub approval: bool,
}

/// What entering a stage does to the running system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageAction {
    /// Send `weight` % of traffic to the canary.
    Weight,
    /// Blue-green: the preview runs beside active and takes no user traffic.
    Preview,
    /// Blue-green: all traffic switches to the new side.
    Switch,
    /// Rolling: `weight` % of replicas run the new revision.
    Batch,
}

/// One step of any strategy, in the uniform form the state machine walks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub weight: u8,
    #[serde(with = "crate::time::humane")]
    pub bake: Duration,
    pub approval: bool,
    pub action: StageAction,
}

/// Canary analysis settings. Defaults from the domain facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfig {
    /// How often a verdict is computed (Flagger's `interval`).
    #[serde(with = "crate::time::humane")]
    pub interval: Duration,
    /// Largest allowed canary error-rate increase over stable, in percentage points.
    pub max_error_increase_pp: f64,
    /// Largest allowed canary p99 increase over stable, in percent of stable.
    pub max_p99_increase_pct: f64,
    /// Canary requests a stage needs before it can pass.
    pub min_requests: u64,
    /// Windows in a row that cannot move the rollout on (metrics missing,
    /// no decision after the bake) before it pauses and asks a human.
    pub inconclusive_limit: u32,
    /// Largest chance of rolling back a canary that is within every limit,
    /// over the whole rollout, however many windows it takes.
    pub alpha: f64,
    /// Confidence a stage needs that the canary is within every limit before it passes.
    pub confidence: f64,
    /// Absolute ceiling on the canary error rate, percent.
    pub max_error_rate_pct: f64,
    /// Absolute ceiling on canary p99 latency, milliseconds.
    pub max_p99_ms: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            interval: Duration::from_secs(60),
            max_error_increase_pp: 1.0,
            max_p99_increase_pct: 10.0,
            min_requests: 100,
            inconclusive_limit: 3,
            alpha: 0.01,
            confidence: 0.95,
            max_error_rate_pct: 5.0,
            max_p99_ms: 1000.0,
        }
    }
}

/// Service level objective the error budget is computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Target availability in percent (99.9).
    pub objective_pct: f64,
    /// Rolling window the objective applies to (30 days).
    #[serde(with = "crate::time::humane")]
    pub window: Duration,
}

impl Default for Slo {
    fn default() -> Self {
        Slo { objective_pct: 99.9, window: Duration::from_secs(30 * 24 * 3600) }
    }
}

impl Plan {
    /// The strategy as the uniform list of stages the state machine walks.
    /// A canary whose last stage is below 100 % gets a final 100 % stage.
    pub fn stages(&self) -> Vec<Stage> {
        match &self.strategy {
            Strategy::Canary { stages } => {
                let mut out: Vec<Stage> = stages
                    .iter()
                    .map(|s| Stage {
                        weight: s.weight,
                        bake: s.bake,
                        approval: s.approval,
                        action: StageAction::Weight,
                    })
                    .collect();
                if out.last().is_none_or(|s| s.weight < 100) {
                    out.push(Stage { weight: 100, bake: Duration::ZERO, approval: false, action: StageAction::Weight });
                }
                out
            }
            Strategy::BlueGreen { preview, verification, approval } => vec![
                Stage { weight: 0, bake: *preview, approval: false, action: StageAction::Preview },
                Stage { weight: 100, bake: *verification, approval: *approval, action: StageAction::Switch },
            ],
            Strategy::Rolling { batch_percent, bake } => {
                let step = (*batch_percent).clamp(1, 100) as u32;
                let mut out = Vec::new();
                let mut w = 0u32;
                while w < 100 {
                    w = (w + step).min(100);
                    out.push(Stage { weight: w as u8, bake: *bake, approval: false, action: StageAction::Batch });
                }
                out
            }
        }
    }

    /// Human name of the strategy ("canary", "blue-green", "rolling").
    pub fn strategy_name(&self) -> &'static str {
        match self.strategy {
            Strategy::Canary { .. } => "canary",
            Strategy::BlueGreen { .. } => "blue-green",
            Strategy::Rolling { .. } => "rolling",
        }
    }
}

/// A plan that could not be read, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct PlanError {
    pub file: String,
    /// 1-based line of the offending value (or key).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted path of the field ("strategy.stages[2].weight").
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl Plan {
    /// Parses and validates a plan. `file` is only used in error messages.
    ///
    /// Deserialization catches syntax errors, unknown keys and wrong types;
    /// validation then checks values, fills defaults and reports the first
    /// problem in a fixed order (rollout, target, strategy, analysis, slo).
    pub fn parse(file: &str, text: &str) -> Result<Plan, PlanError> {
        let check = Checker { file, text };
        let raw: raw::Plan =
            serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| check.toml_error(&e))?;
        check.plan(raw)
    }
}

/// Raw, unvalidated mirror of the file: every field optional, spans kept
/// so that validation can point at the offending value.
mod raw {
    use serde::de::value::{MapAccessDeserializer, MapDeserializer};
    use serde::de::{DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;
    use std::ops::Range;
    use toml::Spanned;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Plan {
        pub rollout: Option<Located<Rollout>>,
        pub target: Option<Located<Target>>,
        pub strategy: Option<Located<Strategy>>,
        pub analysis: Option<Analysis>,
        pub slo: Option<Slo>,
        pub metrics: Option<Located<Metrics>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Metrics {
        pub source: Option<Spanned<String>>,
        pub address: Option<Spanned<String>>,
        pub requests: Option<Spanned<String>>,
        pub errors: Option<Spanned<String>>,
        pub p50: Option<Spanned<String>>,
        pub p95: Option<Spanned<String>>,
        pub p99: Option<Spanned<String>>,
        pub load_balancer: Option<Spanned<String>>,
        pub stable_target_group: Option<Spanned<String>>,
        pub canary_target_group: Option<Spanned<String>>,
        pub lag: Option<Spanned<DurationText>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rollout {
        pub name: Option<Spanned<String>>,
        pub stable: Option<Spanned<String>>,
        pub canary: Option<Spanned<String>>,
        pub theme: Option<Spanned<String>>,
    }

    /// `[target]`: three known keys, everything else is a backend parameter,
    /// so it is read by hand instead of with `deny_unknown_fields`.
    #[derive(Default)]
    pub struct Target {
        pub backend: Option<Spanned<String>>,
        pub group: Option<Spanned<String>>,
        pub production: Option<bool>,
        /// Parameters written directly in `[target]`.
        pub inline: BTreeMap<String, Spanned<ParamText>>,
        /// Parameters written in `[target.params]`.
        pub nested: BTreeMap<String, Spanned<ParamText>>,
    }

    impl<'de> Deserialize<'de> for Target {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(TargetVisitor)
        }
    }

    struct TargetVisitor;

    impl<'de> Visitor<'de> for TargetVisitor {
        type Value = Target;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a table of backend, group, production and backend parameters")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Target, A::Error> {
            let mut target = Target::default();
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "backend" => target.backend = Some(map.next_value()?),
                    "group" => target.group = Some(map.next_value()?),
                    "production" => target.production = Some(map.next_value()?),
                    "params" => target.nested = map.next_value()?,
                    _ => {
                        target.inline.insert(key, map.next_value()?);
                    }
                }
            }
            Ok(target)
        }
    }

    /// A backend parameter: TOML string, integer or boolean, kept as text.
    pub struct ParamText(pub String);

    impl<'de> Deserialize<'de> for ParamText {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ParamVisitor)
        }
    }

    struct ParamVisitor;

    impl<'de> Visitor<'de> for ParamVisitor {
        type Value = ParamText;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a backend parameter (string, integer or boolean)")
        }
        fn visit_str<E>(self, v: &str) -> Result<ParamText, E> {
            Ok(ParamText(v.to_owned()))
        }
        fn visit_i64<E>(self, v: i64) -> Result<ParamText, E> {
            Ok(ParamText(v.to_string()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<ParamText, E> {
            Ok(ParamText(v.to_string()))
        }
        fn visit_bool<E>(self, v: bool) -> Result<ParamText, E> {
            Ok(ParamText(v.to_string()))
        }
    }

    /// `[strategy]` holds the keys of every kind; validation rejects the
    /// ones that do not belong to the chosen kind.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Strategy {
        pub kind: Option<Spanned<String>>,
        pub stages: Option<Vec<Spanned<Stage>>>,
        pub preview: Option<Spanned<DurationText>>,
        pub verification: Option<Spanned<DurationText>>,
        pub approval: Option<Spanned<bool>>,
        pub batch_percent: Option<Spanned<i64>>,
        pub bake: Option<Spanned<DurationText>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Stage {
        pub weight: Option<Spanned<i64>>,
        pub bake: Option<Spanned<DurationText>>,
        pub approval: Option<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Analysis {
        pub interval: Option<Spanned<DurationText>>,
        pub max_error_increase_pp: Option<Spanned<f64>>,
        pub max_p99_increase_pct: Option<Spanned<f64>>,
        pub min_requests: Option<Spanned<i64>>,
        pub inconclusive_limit: Option<Spanned<i64>>,
        pub alpha: Option<Spanned<f64>>,
        pub confidence: Option<Spanned<f64>>,
        pub max_error_rate_pct: Option<Spanned<f64>>,
        pub max_p99_ms: Option<Spanned<f64>>,
        // Keys of the per-window analysis, refused with what replaced them.
        pub failure_threshold: Option<Spanned<toml::Value>>,
        pub immediate_rollback: Option<Spanned<toml::Value>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Slo {
        pub objective_pct: Option<Spanned<f64>>,
        pub window: Option<Spanned<DurationText>>,
    }

    /// A duration as written; parsed during validation so that the error
    /// can say why it is wrong. Its own type only for a clearer "expected".
    pub struct DurationText(pub String);

    impl<'de> Deserialize<'de> for DurationText {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(DurationVisitor)
        }
    }

    struct DurationVisitor;

    impl<'de> Visitor<'de> for DurationVisitor {
        type Value = DurationText;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(r#"a duration string such as "30s", "15m" or "1h 30m""#)
        }
        fn visit_str<E>(self, v: &str) -> Result<DurationText, E> {
            Ok(DurationText(v.to_owned()))
        }
    }

    // The protocol toml uses to hand out spans (the one `toml::Spanned`
    // speaks, defined by serde_spanned). Pinned by toml 0.8 in Cargo.lock.
    const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
    const START_FIELD: &str = "$__serde_spanned_private_start";
    const END_FIELD: &str = "$__serde_spanned_private_end";
    const VALUE_FIELD: &str = "$__serde_spanned_private_value";
    /// Path segment the spanned protocol adds; hidden from field paths.
    pub const SPANNED_SEGMENT: &str = VALUE_FIELD;

    /// A table with its span when it has one. `toml::Spanned` fails on
    /// tables TOML creates implicitly (`[[strategy.stages]]` without a
    /// `[strategy]` header has no span); this wrapper falls back to no span.
    pub struct Located<T> {
        pub span: Option<Range<usize>>,
        pub value: T,
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            const FIELDS: &[&str] = &[START_FIELD, END_FIELD, VALUE_FIELD];
            d.deserialize_struct(SPANNED_NAME, FIELDS, LocatedVisitor(PhantomData))
        }
    }

    struct LocatedVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for LocatedVisitor<T> {
        type Value = Located<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a table")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located<T>, A::Error> {
            let Some(first) = map.next_key::<String>()? else {
                let empty = MapDeserializer::new(std::iter::empty::<(String, String)>());
                return Ok(Located { span: None, value: T::deserialize(empty)? });
            };
            if first != START_FIELD {
                // A plain table without span: hand it to T, first key included.
                let rest = Prepended { first: Some(first), map };
                let value = T::deserialize(MapAccessDeserializer::new(rest))?;
                return Ok(Located { span: None, value });
            }
            let start: usize = map.next_value()?;
            map.next_key::<String>()?; // END_FIELD
            let end: usize = map.next_value()?;
            map.next_key::<String>()?; // VALUE_FIELD
            let value: T = map.next_value()?;
            Ok(Located { span: Some(start..end), value })
        }
    }

    /// A map whose first key was already read.
    struct Prepended<A> {
        first: Option<String>,
        map: A,
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for Prepended<A> {
        type Error = A::Error;

        fn next_key_seed<K>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error>
        where
            K: DeserializeSeed<'de>,
        {
            match self.first.take() {
                Some(key) => seed.deserialize(IntoDeserializer::<A::Error>::into_deserializer(key)).map(Some),
                None => self.map.next_key_seed(seed),
            }
        }

        fn next_value_seed<V>(&mut self, seed: V) -> Result<V::Value, A::Error>
        where
            V: DeserializeSeed<'de>,
        {
            self.map.next_value_seed(seed)
        }
    }
}

/// Turns raw values into the validated model; knows the file and text so
/// that every error gets its position.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
}

/// Result of a validation step.
type Checked<T> = Result<T, PlanError>;

/// The `[rollout]` strings, validated.
struct Names {
    name: String,
    stable: String,
    canary: String,
    theme: Option<String>,
}

/// Strategy kinds, with the keys each accepts besides `kind`.
#[derive(Clone, Copy)]
enum Kind {
    Canary,
    BlueGreen,
    Rolling,
}

impl Kind {
    const NAMES: &'static str = "canary, blue-green, rolling";

    fn parse(name: &str) -> Option<Kind> {
        match name {
            "canary" => Some(Kind::Canary),
            "blue-green" => Some(Kind::BlueGreen),
            "rolling" => Some(Kind::Rolling),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Canary => "canary",
            Kind::BlueGreen => "blue-green",
            Kind::Rolling => "rolling",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Canary => &["stages"],
            Kind::BlueGreen => &["preview", "verification", "approval"],
            Kind::Rolling => &["batch_percent", "bake"],
        }
    }
}

/// Defaults of the strategy parameters (domain facts: 15 min canary bakes,
/// a 5 min blue-green preview and verification, rolling batches of 25 %).
const DEFAULT_STAGE_BAKE: Duration = Duration::from_secs(15 * 60);
const DEFAULT_PREVIEW: Duration = Duration::from_secs(5 * 60);
const DEFAULT_VERIFICATION: Duration = Duration::from_secs(5 * 60);
const DEFAULT_BATCH_PERCENT: u8 = 25;
const DEFAULT_ROLLING_BAKE: Duration = Duration::from_secs(5 * 60);

const DURATION_HINT: &str = r#"write a positive number with a unit, e.g. "30s", "15m" or "1h 30m""#;

/// The longest a duration may be, as the message shows it. Past a bound a
/// plan is a typo (`"15d"` for `"15m"`), and huge values would overflow the
/// millisecond clock.
#[derive(Clone, Copy)]
struct MaxDuration {
    max: Duration,
    text: &'static str,
}

/// Stage bakes, rolling bakes, the blue-green preview and verification: a
/// week holds any real bake and catches a unit typo.
const MAX_BAKE: MaxDuration = MaxDuration { max: Duration::from_secs(7 * 24 * 3600), text: "7d" };
/// The analysis interval: a verdict at least every hour.
const MAX_INTERVAL: MaxDuration = MaxDuration { max: Duration::from_secs(3600), text: "1h" };
/// The SLO window: at most a (humantime) year of 365.25 days, so "1y" fits.
const MAX_SLO_WINDOW: MaxDuration = MaxDuration { max: Duration::from_secs(31_557_600), text: "1y" };

/// Keys of `[target]` itself; parameters with these names go in `[target.params]`.
const TARGET_KEYS: &[&str] = &["backend", "group", "production", "params"];

impl Checker<'_> {
    // ---- errors and positions ------------------------------------------

    /// An error at `span` (1:1 when the span is unknown).
    fn error(&self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) -> PlanError {
        let (line, column) = span.map_or((1, 1), |s| line_col(self.text, s.start));
        PlanError { file: self.file.to_owned(), line, column, field: field.to_owned(), message: message.into() }
    }

    /// An error at a spanned value.
    fn at<T>(&self, value: &Spanned<T>, field: &str, message: impl Into<String>) -> PlanError {
        self.error(Some(value.span()), field, message)
    }

    /// Syntax, unknown-key and type errors found while deserializing.
    fn toml_error(&self, e: &serde_path_to_error::Error<toml::de::Error>) -> PlanError {
        self.error(e.inner().span(), &field_path(e.path()), humanize(e.inner().message()))
    }

    // ---- sections, in the order errors are reported ----------------------

    fn plan(&self, raw: raw::Plan) -> Checked<Plan> {
        let names = self.rollout(raw.rollout)?;
        Ok(Plan {
            name: names.name,
            stable: names.stable,
            canary: names.canary,
            theme: names.theme,
            target: self.target(raw.target)?,
            strategy: self.strategy(raw.strategy)?,
            analysis: self.analysis(raw.analysis.unwrap_or_default())?,
            slo: self.slo(raw.slo.unwrap_or_default())?,
            metrics: self.metrics(raw.metrics)?,
        })
    }

    fn metrics(&self, raw: Option<raw::Located<raw::Metrics>>) -> Checked<MetricsConfig> {
        let (span, m) = raw.map_or((None, raw::Metrics::default()), |l| (l.span, l.value));
        let source = m.source.as_ref().map_or("backend", |s| s.get_ref().as_str());
        if !["backend", "prometheus", "cloudwatch"].contains(&source) {
            let message = format!("unknown metrics source {source:?}; allowed: backend, prometheus, cloudwatch");
            return Err(self.at(
                m.source.as_ref().expect("a non-default source was written"),
                "metrics.source",
                message,
            ));
        }
        // A key of another source, kept silently, would read as if the
        // numbers came from it: the first one in the file is an error.
        let keys: [(&str, Option<Range<usize>>, &str); 10] = [
            ("address", m.address.as_ref().map(Spanned::span), "prometheus"),
            ("requests", m.requests.as_ref().map(Spanned::span), "prometheus"),
            ("errors", m.errors.as_ref().map(Spanned::span), "prometheus"),
            ("p50", m.p50.as_ref().map(Spanned::span), "prometheus"),
            ("p95", m.p95.as_ref().map(Spanned::span), "prometheus"),
            ("p99", m.p99.as_ref().map(Spanned::span), "prometheus"),
            ("load_balancer", m.load_balancer.as_ref().map(Spanned::span), "cloudwatch"),
            ("stable_target_group", m.stable_target_group.as_ref().map(Spanned::span), "cloudwatch"),
            ("canary_target_group", m.canary_target_group.as_ref().map(Spanned::span), "cloudwatch"),
            ("lag", m.lag.as_ref().map(Spanned::span), "cloudwatch"),
        ];
        let stray = keys
            .into_iter()
            .filter_map(|(key, span, owner)| span.filter(|_| owner != source).map(|span| (key, span, owner)))
            .min_by_key(|(_, span, _)| span.start);
        if let Some((key, span, owner)) = stray {
            let read = match source {
                "backend" => "the backend's own metrics are read",
                "prometheus" => "Prometheus is queried",
                _ => "CloudWatch is queried",
            };
            let message = format!(
                "`{key}` only applies to source = \"{owner}\"; with source = \"{source}\" {read}, \
                 so remove it or set source = \"{owner}\""
            );
            return Err(self.error(Some(span), &format!("metrics.{key}"), message));
        }
        match source {
            "prometheus" => {
                let Some(address) = m.address else {
                    let message =
                        "missing required field; source = \"prometheus\" needs address = \"http://host:9090\"";
                    return Err(self.error(span, "metrics.address", message));
                };
                let text = address.get_ref();
                if !(text.starts_with("http://") || text.starts_with("https://")) {
                    let message = format!("{text:?} is not an http:// or https:// URL");
                    return Err(self.at(&address, "metrics.address", message));
                }
                let d = PromQueries::default();
                let queries = PromQueries {
                    requests: self.query(m.requests, "metrics.requests", d.requests)?,
                    errors: self.query(m.errors, "metrics.errors", d.errors)?,
                    p50: self.query(m.p50, "metrics.p50", d.p50)?,
                    p95: self.query(m.p95, "metrics.p95", d.p95)?,
                    p99: self.query(m.p99, "metrics.p99", d.p99)?,
                };
                Ok(MetricsConfig::Prometheus { address: address.into_inner(), queries })
            }
            "cloudwatch" => Ok(MetricsConfig::Cloudwatch(CloudwatchMetrics {
                load_balancer: m.load_balancer.map(|v| self.non_empty(v, "metrics.load_balancer")).transpose()?,
                stable_target_group: m
                    .stable_target_group
                    .map(|v| self.non_empty(v, "metrics.stable_target_group"))
                    .transpose()?,
                canary_target_group: m
                    .canary_target_group
                    .map(|v| self.non_empty(v, "metrics.canary_target_group"))
                    .transpose()?,
                lag: match &m.lag {
                    Some(lag) => self.duration(lag, "metrics.lag", true, MAX_INTERVAL)?,
                    None => DEFAULT_CLOUDWATCH_LAG,
                },
            })),
            _ => Ok(MetricsConfig::Backend),
        }
    }

    /// A PromQL template: must name `{{version}}`, or every version would
    /// read the same series and the comparison would mean nothing.
    fn query(&self, value: Option<Spanned<String>>, field: &str, default: String) -> Checked<String> {
        let Some(value) = value else { return Ok(default) };
        if !value.get_ref().contains("{{version}}") {
            let message = "the query must select one version with {{version}} (e.g. version=\"{{version}}\")";
            return Err(self.at(&value, field, message));
        }
        Ok(value.into_inner())
    }

    fn rollout(&self, raw: Option<raw::Located<raw::Rollout>>) -> Checked<Names> {
        let Some(raw::Located { span, value: r }) = raw else {
            let message = "missing required field; a plan needs a [rollout] table with name, stable and canary";
            return Err(self.error(None, "rollout.name", message));
        };
        Ok(Names {
            name: self.required_text(r.name, &span, "rollout.name", "checkout-api")?,
            stable: self.required_text(r.stable, &span, "rollout.stable", "v1.4.2")?,
            canary: self.required_text(r.canary, &span, "rollout.canary", "v1.5.0")?,
            theme: r.theme.map(|t| self.non_empty(t, "rollout.theme")).transpose()?,
        })
    }

    fn target(&self, raw: Option<raw::Located<raw::Target>>) -> Checked<Target> {
        let (span, t) = raw.map_or((None, raw::Target::default()), |l| (l.span, l.value));
        let backend = match &t.backend {
            Some(b) => self.backend(b)?,
            None => BackendKind::Sim,
        };
        if backend == BackendKind::Ecs {
            self.ecs_controller(&t)?;
        }
        let group = match t.group {
            Some(g) => self.non_empty(g, "target.group")?,
            None => backend.name().to_owned(),
        };
        let params = self.params(t.inline, t.nested)?;
        self.required_params(backend, &params, span)?;
        Ok(Target { backend, group, production: t.production.unwrap_or(false), params })
    }

    fn strategy(&self, raw: Option<raw::Located<raw::Strategy>>) -> Checked<Strategy> {
        let Some(raw::Located { span, value: s }) = raw else {
            return Ok(Strategy::Canary { stages: default_stages() });
        };
        let kind = match &s.kind {
            Some(k) => Kind::parse(k.get_ref()).ok_or_else(|| {
                self.at(
                    k,
                    "strategy.kind",
                    format!("unknown strategy kind {:?}; allowed: {}", k.get_ref(), Kind::NAMES),
                )
            })?,
            None => Kind::Canary,
        };
        self.strategy_keys(kind, &s, &span)?;
        match kind {
            Kind::Canary => self.canary(s.stages, span),
            Kind::BlueGreen => Ok(Strategy::BlueGreen {
                preview: self.duration_or(s.preview.as_ref(), "strategy.preview", DEFAULT_PREVIEW, MAX_BAKE)?,
                verification: self.duration_or(
                    s.verification.as_ref(),
                    "strategy.verification",
                    DEFAULT_VERIFICATION,
                    MAX_BAKE,
                )?,
                approval: s.approval.is_some_and(|a| *a.get_ref()),
            }),
            Kind::Rolling => Ok(Strategy::Rolling {
                batch_percent: match &s.batch_percent {
                    Some(b) => self.int_in(b, "strategy.batch_percent", 1, 100)? as u8,
                    None => DEFAULT_BATCH_PERCENT,
                },
                bake: self.duration_or(s.bake.as_ref(), "strategy.bake", DEFAULT_ROLLING_BAKE, MAX_BAKE)?,
            }),
        }
    }

    fn analysis(&self, a: raw::Analysis) -> Checked<AnalysisConfig> {
        let d = AnalysisConfig::default();
        for (key, value) in [("failure_threshold", &a.failure_threshold), ("immediate_rollback", &a.immediate_rollback)]
        {
            if let Some(value) = value {
                let message = "no longer used: a rollback now needs sequential evidence, and `alpha` (default 0.01) \
                               bounds the chance of rolling back a healthy canary; remove this key";
                return Err(self.at(value, &format!("analysis.{key}"), message));
            }
        }
        Ok(AnalysisConfig {
            interval: self.duration_or(a.interval.as_ref(), "analysis.interval", d.interval, MAX_INTERVAL)?,
            max_error_increase_pp: self.float(
                a.max_error_increase_pp,
                "analysis.max_error_increase_pp",
                |v| v > 0.0 && v <= 100.0,
                "greater than 0 and at most 100 (percentage points)",
                d.max_error_increase_pp,
            )?,
            max_p99_increase_pct: self.float(
                a.max_p99_increase_pct,
                "analysis.max_p99_increase_pct",
                |v| v > 0.0,
                "greater than 0 (percent of stable p99)",
                d.max_p99_increase_pct,
            )?,
            min_requests: self.count(a.min_requests, "analysis.min_requests", d.min_requests)?,
            inconclusive_limit: self.count32(
                a.inconclusive_limit,
                "analysis.inconclusive_limit",
                d.inconclusive_limit,
            )?,
            alpha: self.float(
                a.alpha,
                "analysis.alpha",
                |v| v > 0.0 && v <= 0.2,
                "greater than 0 and at most 0.2",
                d.alpha,
            )?,
            confidence: self.float(
                a.confidence,
                "analysis.confidence",
                |v| v > 0.5 && v < 1.0,
                "greater than 0.5 and less than 1",
                d.confidence,
            )?,
            max_error_rate_pct: self.float(
                a.max_error_rate_pct,
                "analysis.max_error_rate_pct",
                |v| v > 0.0 && v <= 100.0,
                "greater than 0 and at most 100 (percent)",
                d.max_error_rate_pct,
            )?,
            max_p99_ms: self.float(
                a.max_p99_ms,
                "analysis.max_p99_ms",
                |v| v > 0.0,
                "greater than 0 (milliseconds)",
                d.max_p99_ms,
            )?,
        })
    }

    fn slo(&self, s: raw::Slo) -> Checked<Slo> {
        let d = Slo::default();
        Ok(Slo {
            objective_pct: self.float(
                s.objective_pct,
                "slo.objective_pct",
                |v| v > 0.0 && v < 100.0,
                "greater than 0 and less than 100 (percent)",
                d.objective_pct,
            )?,
            window: self.duration_or(s.window.as_ref(), "slo.window", d.window, MAX_SLO_WINDOW)?,
        })
    }

    // ---- rollout and target helpers ------------------------------------

    /// A required, non-empty string; when missing, points at the table header.
    fn required_text(
        &self,
        value: Option<Spanned<String>>,
        table: &Option<Range<usize>>,
        field: &str,
        example: &str,
    ) -> Checked<String> {
        match value {
            Some(v) => self.non_empty(v, field),
            None => {
                let key = field.rsplit('.').next().unwrap_or(field);
                let message = format!("missing required field; add e.g. {key} = {example:?}");
                Err(self.error(table.clone(), field, message))
            }
        }
    }

    fn non_empty(&self, value: Spanned<String>, field: &str) -> Checked<String> {
        if value.get_ref().trim().is_empty() {
            return Err(self.at(&value, field, "must not be empty; give a non-blank string"));
        }
        Ok(value.into_inner())
    }

    fn backend(&self, name: &Spanned<String>) -> Checked<BackendKind> {
        BackendKind::parse(name.get_ref()).ok_or_else(|| {
            let message = format!("unknown backend {:?}; allowed: {}", name.get_ref(), BackendKind::NAMES.join(", "));
            self.at(name, "target.backend", message)
        })
    }

    /// Merges `[target]` and `[target.params]`; a parameter set in both is an error.
    fn params(
        &self,
        inline: BTreeMap<String, Spanned<raw::ParamText>>,
        nested: BTreeMap<String, Spanned<raw::ParamText>>,
    ) -> Checked<BTreeMap<String, String>> {
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in nested {
            if let Some(first) = inline.get(&key) {
                // Report the later of the two, where the reader notices the clash.
                let later = if first.span().start > value.span().start { first } else { &value };
                let message = format!("parameter `{key}` is set both in [target] and in [target.params]; set it once");
                return Err(self.at(later, &format!("target.params.{key}"), message));
            }
            params.insert(key, value.into_inner().0);
        }
        params.extend(inline.into_iter().map(|(k, v)| (k, v.into_inner().0)));
        Ok(params)
    }

    /// An ECS target's `controller` decides who runs the rollout (see
    /// [`Target::control`]): a misspelt one must not silently mean "ecs".
    fn ecs_controller(&self, t: &raw::Target) -> Checked<()> {
        let inline = t.inline.get("controller").map(|v| (v, "target.controller"));
        let Some((value, field)) =
            inline.or_else(|| t.nested.get("controller").map(|v| (v, "target.params.controller")))
        else {
            return Ok(());
        };
        match value.get_ref().0.as_str() {
            "ecs" | "external" => Ok(()),
            other => Err(self.at(
                value,
                field,
                format!(
                    "unknown ECS deployment controller {other:?}; allowed: ecs (ECS runs the deployment and \
                     flightdeck observes it), external (flightdeck drives task sets and listener weights)"
                ),
            )),
        }
    }

    fn required_params(
        &self,
        backend: BackendKind,
        params: &BTreeMap<String, String>,
        table: Option<Range<usize>>,
    ) -> Checked<()> {
        let required = backend.required_params();
        let Some(missing) = required.iter().find(|p| !params.contains_key(**p)) else {
            return Ok(());
        };
        // A parameter named like a [target] key can only be set in [target.params].
        let (field, place) = if TARGET_KEYS.contains(missing) {
            (format!("target.params.{missing}"), "[target.params]")
        } else {
            (format!("target.{missing}"), "[target]")
        };
        let message = format!(
            "backend {:?} needs parameter `{missing}` in {place}; required for {}: {}",
            backend.name(),
            backend.name(),
            required.join(", ")
        );
        Err(self.error(table, &field, message))
    }

    // ---- strategy helpers ----------------------------------------------

    /// Rejects keys of another strategy kind, reporting the earliest in the file.
    fn strategy_keys(&self, kind: Kind, s: &raw::Strategy, table: &Option<Range<usize>>) -> Checked<()> {
        let misplaced = present_strategy_keys(s, table)
            .into_iter()
            .filter(|(key, _)| !kind.keys().contains(key))
            .min_by_key(|(_, span)| span.as_ref().map_or(0, |s| s.start));
        let Some((key, span)) = misplaced else {
            return Ok(());
        };
        let message = format!(
            "`{key}` does not apply to kind = {:?}; {} allows: kind, {}",
            kind.name(),
            kind.name(),
            kind.keys().join(", ")
        );
        Err(self.error(span, &format!("strategy.{key}"), message))
    }

    fn canary(&self, stages: Option<Vec<Spanned<raw::Stage>>>, table: Option<Range<usize>>) -> Checked<Strategy> {
        let Some(raw_stages) = stages else {
            return Ok(Strategy::Canary { stages: default_stages() });
        };
        if raw_stages.is_empty() {
            let message = "no stages given; add [[strategy.stages]] entries or omit `stages` for 1/10/50/100";
            return Err(self.error(table, "strategy.stages", message));
        }
        let mut out: Vec<CanaryStage> = Vec::with_capacity(raw_stages.len());
        for (i, stage) in raw_stages.iter().enumerate() {
            let previous = out.last().map(|s| s.weight);
            out.push(self.stage(i, stage, previous)?);
        }
        Ok(Strategy::Canary { stages: out })
    }

    fn stage(&self, i: usize, stage: &Spanned<raw::Stage>, previous: Option<u8>) -> Checked<CanaryStage> {
        let field = |key: &str| format!("strategy.stages[{i}].{key}");
        let Some(weight) = &stage.get_ref().weight else {
            let message = "missing required field; each stage needs a weight from 1 to 100";
            return Err(self.at(stage, &field("weight"), message));
        };
        let w = self.int_in(weight, &field("weight"), 1, 100)? as u8;
        if let Some(p) = previous.filter(|p| w <= *p) {
            let message =
                format!("weight {w} is not above the previous stage's {p}; stage weights must strictly increase");
            return Err(self.at(weight, &field("weight"), message));
        }
        let bake = match &stage.get_ref().bake {
            Some(b) => self.duration(b, &field("bake"), w == 100, MAX_BAKE)?,
            None => DEFAULT_STAGE_BAKE,
        };
        Ok(CanaryStage { weight: w, bake, approval: stage.get_ref().approval.unwrap_or(false) })
    }

    // ---- value helpers -------------------------------------------------

    /// A duration that must be positive and at most `max`, or `default` when absent.
    fn duration_or(
        &self,
        value: Option<&Spanned<raw::DurationText>>,
        field: &str,
        default: Duration,
        max: MaxDuration,
    ) -> Checked<Duration> {
        value.map_or(Ok(default), |v| self.duration(v, field, false, max))
    }

    fn duration(
        &self,
        value: &Spanned<raw::DurationText>,
        field: &str,
        zero_ok: bool,
        max: MaxDuration,
    ) -> Checked<Duration> {
        let text = value.get_ref().0.trim();
        if text.starts_with('-') {
            return Err(self.at(value, field, format!("{text:?} is negative; {DURATION_HINT}")));
        }
        let d = humantime::parse_duration(text)
            .map_err(|e| self.at(value, field, format!("cannot read {text:?} as a duration ({e}); {DURATION_HINT}")))?;
        if d.is_zero() && !zero_ok {
            let only = if field.contains(".stages[") { "; only the 100 % stage may bake 0s" } else { "" };
            return Err(self.at(value, field, format!("must be greater than zero{only}; {DURATION_HINT}")));
        }
        if d > max.max {
            return Err(self.at(value, field, format!("{text:?} is too long; allowed: at most {}", max.text)));
        }
        Ok(d)
    }

    /// An integer within `min..=max`. Integers stay i64 until checked so
    /// that 0, negatives and overflow get this message, not a type error.
    fn int_in(&self, value: &Spanned<i64>, field: &str, min: i64, max: i64) -> Checked<i64> {
        let v = *value.get_ref();
        if (min..=max).contains(&v) {
            return Ok(v);
        }
        // Machine-sized bounds mean nothing to a reader: name only the one crossed.
        let allowed = if max < i64::from(u32::MAX) {
            format!("integers from {min} to {max}")
        } else if v < min {
            format!("integers of at least {min}")
        } else {
            format!("integers up to {max}")
        };
        Err(self.at(value, field, format!("{v} is out of range; allowed: {allowed}")))
    }

    /// A count ≥ 1, or `default` when absent.
    fn count(&self, value: Option<Spanned<i64>>, field: &str, default: u64) -> Checked<u64> {
        value.map_or(Ok(default), |v| self.int_in(&v, field, 1, i64::MAX).map(|n| n as u64))
    }

    /// A count ≥ 1 that fits in a u32, or `default` when absent.
    fn count32(&self, value: Option<Spanned<i64>>, field: &str, default: u32) -> Checked<u32> {
        value.map_or(Ok(default), |v| self.int_in(&v, field, 1, u32::MAX.into()).map(|n| n as u32))
    }

    /// A finite number accepted by `ok`, or `default` when absent.
    fn float(
        &self,
        value: Option<Spanned<f64>>,
        field: &str,
        ok: fn(f64) -> bool,
        allowed: &str,
        default: f64,
    ) -> Checked<f64> {
        let Some(value) = value else {
            return Ok(default);
        };
        let v = *value.get_ref();
        if !v.is_finite() || !ok(v) {
            return Err(self.at(
                &value,
                field,
                // Debug keeps the decimal point: 1.0 reads as written.
                format!("{v:?} is out of range; allowed: {allowed}"),
            ));
        }
        Ok(v)
    }
}

impl BackendKind {
    /// The backend with this plan name (one of [`BackendKind::NAMES`]).
    pub fn parse(name: &str) -> Option<BackendKind> {
        const ALL: [BackendKind; 8] = [
            BackendKind::Sim,
            BackendKind::Haproxy,
            BackendKind::Envoy,
            BackendKind::Nginx,
            BackendKind::ArgoRollouts,
            BackendKind::Deployment,
            BackendKind::Ecs,
            BackendKind::Flagger,
        ];
        ALL.into_iter().find(|b| b.name() == name)
    }
}

/// The kind-specific strategy keys the file sets, with where they are (no
/// span for an empty `stages = []` in a table that has none).
fn present_strategy_keys(s: &raw::Strategy, table: &Option<Range<usize>>) -> Vec<(&'static str, Option<Range<usize>>)> {
    // Outer Option: is the key there at all; inner: do we know where.
    let stages = s.stages.as_ref().map(|v| v.first().map(|st| st.span()).or_else(|| table.clone()));
    let keys = [
        ("stages", stages),
        ("preview", s.preview.as_ref().map(|v| Some(v.span()))),
        ("verification", s.verification.as_ref().map(|v| Some(v.span()))),
        ("approval", s.approval.as_ref().map(|v| Some(v.span()))),
        ("batch_percent", s.batch_percent.as_ref().map(|v| Some(v.span()))),
        ("bake", s.bake.as_ref().map(|v| Some(v.span()))),
    ];
    keys.into_iter().filter_map(|(key, span)| span.map(|span| (key, span))).collect()
}

/// The domain default: 1 %, 10 %, 50 % with 15 min bakes, then 100 %.
fn default_stages() -> Vec<CanaryStage> {
    let stage =
        |weight: u8, minutes: u64| CanaryStage { weight, bake: Duration::from_secs(minutes * 60), approval: false };
    vec![stage(1, 15), stage(10, 15), stage(50, 15), stage(100, 0)]
}

/// 1-based line and column (in characters) of a byte offset. Every file
/// flightdeck reads (plans, themes, keymaps, config) reports errors with it.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Dotted field path ("strategy.stages[2].weight"), "plan" when unknown.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if key == raw::SPANNED_SEGMENT {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(if out.is_empty() { "?" } else { ".?" }),
        }
    }
    if out.is_empty() {
        "plan".to_owned()
    } else {
        out
    }
}

/// toml/serde messages on one line, with Rust type names in plain words.
fn humanize(message: &str) -> String {
    message
        .trim()
        .replace('\n', "; ")
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("unknown field", "unknown key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    const ROLLOUT: &str = "[rollout]\nname = \"checkout-api\"\nstable = \"v1.4.2\"\ncanary = \"v1.5.0\"\n";

    fn repo_dir(sub: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(sub)
    }

    /// The `.toml` files of `dir`, sorted so that failures are stable.
    fn toml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        files
    }

    fn parse_ok(extra: &str) -> Plan {
        Plan::parse("test.toml", &format!("{ROLLOUT}{extra}")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    #[test]
    fn invalid_plans_report_the_expected_error() {
        let dir = repo_dir("tests/invalid_plans");
        let files = toml_files(&dir);
        assert!(!files.is_empty(), "no invalid plans in {}", dir.display());
        for path in files {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let expected_path = path.with_extension("expected");
            let expected =
                std::fs::read_to_string(&expected_path).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            let error = Plan::parse(&format!("tests/invalid_plans/{name}"), &text)
                .expect_err(&format!("{name} should not parse"));
            assert_eq!(error.to_string(), expected.trim(), "{name}");
        }
    }

    #[test]
    fn example_plans_parse() {
        let dir = repo_dir("examples/plans");
        let files = toml_files(&dir);
        assert!(!files.is_empty(), "no example plans in {}", dir.display());
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = Plan::parse(&path.display().to_string(), &text) {
                panic!("{e}");
            }
        }
    }

    #[test]
    fn minimal_plan_gets_every_default() {
        let plan = parse_ok("[analysis]\n");
        assert_eq!(plan.theme, None);
        let sim = Target { backend: BackendKind::Sim, group: "sim".into(), production: false, params: BTreeMap::new() };
        assert_eq!(plan.target, sim);
        assert_eq!(plan.analysis, AnalysisConfig::default());
        assert_eq!(plan.slo, Slo::default());
        let Strategy::Canary { stages } = &plan.strategy else { panic!("default strategy is canary") };
        let got: Vec<(u8, Duration, bool)> = stages.iter().map(|s| (s.weight, s.bake, s.approval)).collect();
        assert_eq!(
            got,
            [(1, mins(15), false), (10, mins(15), false), (50, mins(15), false), (100, Duration::ZERO, false)]
        );
    }

    #[test]
    fn stage_fields_default_individually() {
        let plan = parse_ok(
            "[[strategy.stages]]\nweight = 5\n\n[[strategy.stages]]\nweight = 100\nbake = \"0s\"\napproval = true\n",
        );
        let Strategy::Canary { stages } = plan.strategy else { panic!("canary") };
        assert_eq!(stages[0], CanaryStage { weight: 5, bake: mins(15), approval: false });
        assert_eq!(stages[1], CanaryStage { weight: 100, bake: Duration::ZERO, approval: true });
    }

    #[test]
    fn canary_stages_get_a_final_full_stage() {
        let plan =
            parse_ok("[strategy]\nstages = [{ weight = 5, bake = \"10m\", approval = true }, { weight = 25 }]\n");
        let got: Vec<(u8, Duration, bool, StageAction)> =
            plan.stages().iter().map(|s| (s.weight, s.bake, s.approval, s.action)).collect();
        assert_eq!(
            got,
            [
                (5, mins(10), true, StageAction::Weight),
                (25, mins(15), false, StageAction::Weight),
                (100, Duration::ZERO, false, StageAction::Weight),
            ]
        );
        assert_eq!(plan.strategy_name(), "canary");
    }

    #[test]
    fn blue_green_defaults_and_stages() {
        let plan = parse_ok("[strategy]\nkind = \"blue-green\"\n");
        assert_eq!(plan.strategy, Strategy::BlueGreen { preview: mins(5), verification: mins(5), approval: false });
        let plan =
            parse_ok("[strategy]\nkind = \"blue-green\"\npreview = \"2m\"\nverification = \"30s\"\napproval = true\n");
        assert_eq!(plan.strategy_name(), "blue-green");
        assert_eq!(
            plan.stages(),
            [
                Stage { weight: 0, bake: mins(2), approval: false, action: StageAction::Preview },
                Stage { weight: 100, bake: Duration::from_secs(30), approval: true, action: StageAction::Switch },
            ]
        );
    }

    #[test]
    fn rolling_defaults_and_stages() {
        let plan = parse_ok("[strategy]\nkind = \"rolling\"\n");
        assert_eq!(plan.strategy, Strategy::Rolling { batch_percent: 25, bake: mins(5) });
        let plan = parse_ok("[strategy]\nkind = \"rolling\"\nbatch_percent = 40\nbake = \"1h 30m\"\n");
        assert_eq!(plan.strategy_name(), "rolling");
        let stages = plan.stages();
        let weights: Vec<u8> = stages.iter().map(|s| s.weight).collect();
        assert_eq!(weights, [40, 80, 100]);
        assert!(stages.iter().all(|s| s.bake == mins(90) && s.action == StageAction::Batch && !s.approval));
    }

    #[test]
    fn backend_parameters_are_kept_as_text() {
        let plan = parse_ok(
            "[target]\nbackend = \"haproxy\"\ngroup = \"edge-1\"\nproduction = true\nsocket = \"/run/haproxy.sock\"\n\
             stable_server = \"v1\"\ncanary_server = \"v2\"\nport = 8404\nmaint = false\n\n\
             [target.params]\nbackend = \"checkout\"\n",
        );
        let t = plan.target;
        assert_eq!((t.backend, t.group.as_str(), t.production), (BackendKind::Haproxy, "edge-1", true));
        let params: Vec<(&str, &str)> = t.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            params,
            [
                ("backend", "checkout"),
                ("canary_server", "v2"),
                ("maint", "false"),
                ("port", "8404"),
                ("socket", "/run/haproxy.sock"),
                ("stable_server", "v1"),
            ]
        );
    }

    #[test]
    fn every_backend_name_parses() {
        for name in BackendKind::NAMES {
            assert_eq!(BackendKind::parse(name).map(BackendKind::name), Some(*name));
        }
        assert_eq!(BackendKind::parse("kubernetes"), None);
    }

    #[test]
    fn full_plan_round_trips() {
        let text = r#"
            [rollout]
            name = "checkout-api"
            stable = "v1.4.2"
            canary = "v1.5.0"
            theme = "prod"

            [target]
            backend = "ecs"
            group = "prod-eu-1"
            production = true
            cluster = "prod"
            service = "checkout"

            [strategy]
            kind = "canary"
            stages = [
                { weight = 1, bake = "10m" },
                { weight = 5, bake = "10m", approval = true },
                { weight = 100, bake = "0s" },
            ]

            [analysis]
            interval = "30s"
            max_error_increase_pp = 0.5
            max_p99_increase_pct = 20
            min_requests = 500
            inconclusive_limit = 4
            alpha = 0.005
            confidence = 0.99
            max_error_rate_pct = 2.5
            max_p99_ms = 750.0

            [slo]
            objective_pct = 99.95
            window = "7d"

            [metrics]
            source = "prometheus"
            address = "http://127.0.0.1:9090"
            p99 = 'checkout_p99_ms{version="{{version}}"}'
        "#;
        let plan = Plan::parse("full.toml", text).unwrap_or_else(|e| panic!("{e}"));
        let params = [("cluster", "prod"), ("service", "checkout")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let expected = Plan {
            name: "checkout-api".into(),
            stable: "v1.4.2".into(),
            canary: "v1.5.0".into(),
            theme: Some("prod".into()),
            target: Target {
                backend: BackendKind::Ecs,
                group: "prod-eu-1".into(),
                production: true,
                params: params.into(),
            },
            strategy: Strategy::Canary {
                stages: vec![
                    CanaryStage { weight: 1, bake: mins(10), approval: false },
                    CanaryStage { weight: 5, bake: mins(10), approval: true },
                    CanaryStage { weight: 100, bake: Duration::ZERO, approval: false },
                ],
            },
            analysis: AnalysisConfig {
                interval: Duration::from_secs(30),
                max_error_increase_pp: 0.5,
                max_p99_increase_pct: 20.0,
                min_requests: 500,
                inconclusive_limit: 4,
                alpha: 0.005,
                confidence: 0.99,
                max_error_rate_pct: 2.5,
                max_p99_ms: 750.0,
            },
            slo: Slo { objective_pct: 99.95, window: Duration::from_secs(7 * 24 * 3600) },
            metrics: MetricsConfig::Prometheus {
                address: "http://127.0.0.1:9090".into(),
                queries: PromQueries {
                    p99: r#"checkout_p99_ms{version="{{version}}"}"#.into(),
                    ..PromQueries::default()
                },
            },
        };
        assert_eq!(plan, expected);
        // The validated model survives serialization (state is stored as JSON).
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }

    #[test]
    fn every_duration_is_accepted_up_to_its_bound_and_refused_past_it() {
        let cases = [
            ("[[strategy.stages]]\nweight = 10\nbake = \"{}\"\n", "strategy.stages[0].bake", "7d"),
            ("[strategy]\nkind = \"rolling\"\nbake = \"{}\"\n", "strategy.bake", "7d"),
            ("[strategy]\nkind = \"blue-green\"\npreview = \"{}\"\n", "strategy.preview", "7d"),
            ("[strategy]\nkind = \"blue-green\"\nverification = \"{}\"\n", "strategy.verification", "7d"),
            ("[analysis]\ninterval = \"{}\"\n", "analysis.interval", "1h"),
            ("[slo]\nwindow = \"{}\"\n", "slo.window", "1y"),
        ];
        for (template, field, max) in cases {
            parse_ok(&template.replace("{}", max));
            for over in [format!("{max} 1s"), "18446744073709552s".into(), "1000000000y".into()] {
                let text = format!("{ROLLOUT}{}", template.replace("{}", &over));
                let e = Plan::parse("d.toml", &text).expect_err(&over);
                assert_eq!(e.field, field);
                assert_eq!(e.message, format!("{over:?} is too long; allowed: at most {max}"));
            }
        }
    }

    #[test]
    fn prometheus_keys_are_refused_without_a_prometheus_source() {
        for key in ["address", "requests", "errors", "p50", "p95", "p99"] {
            // `source` left out means "backend" too.
            for source in ["", "source = \"backend\"\n"] {
                let text = format!("{ROLLOUT}[metrics]\n{source}{key} = 'x{{{{version}}}}'\n");
                let e = Plan::parse("m.toml", &text).expect_err(key);
                assert_eq!(e.field, format!("metrics.{key}"));
                assert!(e.message.starts_with(&format!("`{key}` only applies to source = \"prometheus\"")), "{e}");
            }
        }
        // Several: the first in the file is reported.
        let e = Plan::parse("m.toml", &format!("{ROLLOUT}[metrics]\np95 = 'a'\naddress = 'b'\n")).unwrap_err();
        assert_eq!(e.field, "metrics.p95");
    }

    #[test]
    fn cloudwatch_metrics_take_their_dimensions_and_lag() {
        let plan = parse_ok("[metrics]\nsource = \"cloudwatch\"\ncanary_target_group = \"targetgroup/green/1\"\n");
        let expected = CloudwatchMetrics {
            load_balancer: None,
            stable_target_group: None,
            canary_target_group: Some("targetgroup/green/1".into()),
            lag: DEFAULT_CLOUDWATCH_LAG,
        };
        assert_eq!(plan.metrics, MetricsConfig::Cloudwatch(expected));
        let plan = parse_ok("[metrics]\nsource = \"cloudwatch\"\nlag = \"0s\"\n");
        assert!(matches!(plan.metrics, MetricsConfig::Cloudwatch(CloudwatchMetrics { lag, .. }) if lag.is_zero()));
        let e =
            Plan::parse("m.toml", &format!("{ROLLOUT}[metrics]\nsource = \"backend\"\nlag = \"1m\"\n")).unwrap_err();
        assert_eq!(e.field, "metrics.lag");
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let text = "[rollout]\nname = \"é\"\nstable = \"v1\"\ncanary = \"v2\"\ntheme = \"ü\" ; x\n";
        let e = Plan::parse("u.toml", text).unwrap_err();
        assert_eq!((e.line, e.column, e.field.as_str()), (5, 13, "plan"));
    }

    #[test]
    fn strategy_table_may_be_implicit() {
        // `[[strategy.stages]]` without `[strategy]`: TOML gives that table no span.
        let plan = parse_ok("[[strategy.stages]]\nweight = 20\n");
        assert_eq!(plan.stages().len(), 2);
    }

    #[test]
    fn errors_inside_an_implicit_table_keep_their_path() {
        let e = Plan::parse("i.toml", &format!("{ROLLOUT}[[strategy.stages]]\nweight = 20\nwait = 1\n")).unwrap_err();
        assert_eq!((e.line, e.column, e.field.as_str()), (7, 1, "strategy.stages[0].wait"));
    }
}
