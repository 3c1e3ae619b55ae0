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
//! # or: only named people approve, `required` of them (default 1); two
//! # approvals must come from two people.
//! approvers = ["alice", "bob", "carol"]
//! required = 2
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
//! # Latency that cannot be judged (a source with quantiles only, or
//! # histogram buckets coarser than the p99 margin) never lets a stage pass:
//! # it stays inconclusive and, after inconclusive_limit windows, asks a
//! # human. Setting this accepts the risk and passes on the other rows.
//! pass_unjudged_latency = false
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

mod check;
pub mod params;
pub mod promql;
mod raw;
#[cfg(test)]
mod tests;

pub use crate::toml_file::line_col;
use crate::toml_file::TomlFile;
use check::Checker;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// Stages that only named people may approve, `required` of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<StageApprovers>,
}

/// `approvers = ["alice", "bob", "carol"], required = 2` on a stage: the
/// rollout enters it when two different named people have approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageApprovers {
    /// 0-based index into [`Plan::stages`].
    pub stage: usize,
    pub names: Vec<String>,
    pub required: usize,
}

/// Where the analysis reads per-version metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", tag = "source")]
pub enum MetricsConfig {
    /// The backend's own numbers: the simulator, HAProxy's `show stat`,
    /// Envoy's `/stats/prometheus`, NGINX's access log.
    #[default]
    Backend,
    /// PromQL against a Prometheus server: per metric, one query per version
    /// (`{{version}}`) or one batched query for many rollouts
    /// (`{{versions}}`), with `{{interval}}` (e.g. `60s`) filled in.
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
///
/// A template is either *per version* (`{{version}}`: one query per metric
/// and version, answering one number) or *batched* (`{{versions}}` in
/// `label=~"{{versions}}"`, grouped `by (<version_label>)`: one query per
/// metric for every rollout that asks the same Prometheus the same thing at
/// the same time, each version read from its series). See
/// [`promql::Form`] for the rules `flightdeck check` applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromQueries {
    pub requests: String,
    pub errors: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    /// The latency histogram's buckets over the window, one series per
    /// bucket (`le`, in seconds as Prometheus names them) and version: the
    /// counts the latency tests judge on. Empty: none (quantiles only, which
    /// cannot pass a stage). When it answers nothing for a version (no
    /// such histogram), that version's latency is its quantiles.
    #[serde(default)]
    pub latency_buckets: String,
    /// The label whose value is the revision: batched answers are matched
    /// to versions by it.
    #[serde(default = "default_version_label")]
    pub version_label: String,
}

/// The conventional label, and [`PromQueries::version_label`]'s default.
pub const DEFAULT_VERSION_LABEL: &str = "version";

fn default_version_label() -> String {
    DEFAULT_VERSION_LABEL.to_owned()
}

impl Default for PromQueries {
    /// Batched queries for the conventional `http_requests_total{version,code}`
    /// counter and `http_request_duration_seconds` histogram: they answer
    /// the same numbers as [`PromQueries::per_version`], in 5 queries per
    /// window for a whole fleet instead of 10 per rollout.
    fn default() -> Self {
        PromQueries::batched(DEFAULT_VERSION_LABEL)
    }
}

impl PromQueries {
    /// The default queries, batched on `label` (`=~"{{versions}}"`, `sum by (label)`).
    pub fn batched(label: &str) -> PromQueries {
        let quantile = |q: &str| {
            format!(
                "1000 * histogram_quantile({q}, sum by (le, {label}) (rate(http_request_duration_seconds_bucket{{{label}=~\"{{{{versions}}}}\"}}[{{{{interval}}}}])))"
            )
        };
        PromQueries {
            requests: format!(
                "sum by ({label}) (increase(http_requests_total{{{label}=~\"{{{{versions}}}}\"}}[{{{{interval}}}}]))"
            ),
            errors: format!(
                "sum by ({label}) (increase(http_requests_total{{{label}=~\"{{{{versions}}}}\",code=~\"5..\"}}[{{{{interval}}}}]))"
            ),
            p50: quantile("0.5"),
            p95: quantile("0.95"),
            p99: quantile("0.99"),
            latency_buckets: format!(
                "sum by (le, {label}) (increase(http_request_duration_seconds_bucket{{{label}=~\"{{{{versions}}}}\"}}[{{{{interval}}}}]))"
            ),
            version_label: label.to_owned(),
        }
    }

    /// The same queries one version at a time (`version="{{version}}"`,
    /// `sum(...)`): what every plan ran before batching.
    pub fn per_version() -> PromQueries {
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
            latency_buckets:
                "sum by (le) (increase(http_request_duration_seconds_bucket{version=\"{{version}}\"}[{{interval}}]))"
                    .into(),
            version_label: default_version_label(),
        }
    }

    /// The five templates with their field names, in reading order.
    pub fn templates(&self) -> [(&'static str, &str); 5] {
        [
            ("requests", &self.requests),
            ("errors", &self.errors),
            ("p50", &self.p50),
            ("p95", &self.p95),
            ("p99", &self.p99),
        ]
    }
}

/// Keys of `[target]` itself; parameters with these names go in `[target.params]`.
pub const TARGET_KEYS: &[&str] = &["backend", "group", "production", "params"];

/// The backend a plan drives or observes, with that backend's parameters
/// (each backend declares its own as [`params::Param`]s).
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
    /// An Unleash feature flag's gradual rollout, driven.
    Unleash,
    /// An OpenFeature flagd flag definition file, driven.
    Flagd,
    /// An AWS Lambda alias's weighted routing between two versions, driven.
    Lambda,
}

impl BackendKind {
    /// Every backend with its name in plans: the one place names are written.
    const ALL: [(BackendKind, &'static str); 11] = [
        (BackendKind::Sim, "sim"),
        (BackendKind::Haproxy, "haproxy"),
        (BackendKind::Envoy, "envoy"),
        (BackendKind::Nginx, "nginx"),
        (BackendKind::ArgoRollouts, "argo-rollouts"),
        (BackendKind::Deployment, "deployment"),
        (BackendKind::Ecs, "ecs"),
        (BackendKind::Flagger, "flagger"),
        (BackendKind::Unleash, "unleash"),
        (BackendKind::Flagd, "flagd"),
        (BackendKind::Lambda, "lambda"),
    ];

    /// Every backend name accepted in a plan, for error messages.
    pub const NAMES: &'static [&'static str] = &{
        let mut names = [""; BackendKind::ALL.len()];
        let mut i = 0;
        while i < names.len() {
            names[i] = BackendKind::ALL[i].1;
            i += 1;
        }
        names
    };

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
        BackendKind::ALL.iter().find(|(kind, _)| *kind == self).map_or("", |(_, name)| name)
    }

    /// The backend with this plan name (one of [`BackendKind::NAMES`]).
    pub fn parse(name: &str) -> Option<BackendKind> {
        BackendKind::ALL.iter().find(|(_, n)| *n == name).map(|(kind, _)| *kind)
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
    /// Let a stage pass although its latency rows could not be judged
    /// (quantiles only, or buckets too coarse): the plan accepts the risk.
    #[serde(default)]
    pub pass_unjudged_latency: bool,
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
            pass_unjudged_latency: false,
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
    /// Who must approve entering stage `index`, if the plan names anyone.
    pub fn approvers_for(&self, index: usize) -> Option<&StageApprovers> {
        self.approvers.iter().find(|a| a.stage == index)
    }

    /// The strategy as the uniform list of stages the state machine walks.
    /// A canary whose last stage is below 100 % gets a final 100 % stage.
    pub fn stages(&self) -> Vec<Stage> {
        match &self.strategy {
            Strategy::Canary { stages } => {
                let mut out: Vec<Stage> = stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Stage {
                        weight: s.weight,
                        bake: s.bake,
                        // Named approvers gate their stage.
                        approval: s.approval || self.approvers_for(i).is_some(),
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
pub type PlanError = crate::toml_file::TomlError;

impl Plan {
    /// Parses and validates a plan. `file` is only used in error messages.
    ///
    /// Deserialization catches syntax errors, unknown keys and wrong types;
    /// validation then checks values, fills defaults and reports the first
    /// problem in a fixed order (rollout, target, strategy, analysis, slo).
    pub fn parse(file: &str, text: &str) -> Result<Plan, PlanError> {
        let toml = TomlFile::parse(file, text, "plan")?;
        let raw: raw::Plan = toml.deserialize()?;
        Checker { toml: &toml }.plan(raw)
    }
}
