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
//! # bake (duration, default "15m"; "0s" only on the 100 % stage) and
//! # approval (bool, default false). Without stages: 1, 10, 50 with 15m
//! # bakes and 100 with bake "0s".
//! [[strategy.stages]]
//! weight = 10
//! bake = "15m"
//! approval = true
//!
//! # blue-green: preview (duration > 0, default "5m"), verification
//! # (duration > 0, default "5m"), approval (bool, default false).
//! # rolling: batch_percent (1..=100, default 25), bake (duration > 0,
//! # default "5m").
//! # Keys of another kind are errors (e.g. `stages` with kind = "rolling").
//!
//! [analysis]                 # all optional; defaults = AnalysisConfig::default()
//! interval = "1m"            # > 0
//! max_error_increase_pp = 1.0  # (0, 100]
//! max_p99_increase_pct = 10.0  # > 0
//! min_requests = 100         # ≥ 1
//! failure_threshold = 5      # ≥ 1
//! inconclusive_limit = 3     # ≥ 1
//! confidence = 0.95          # (0.5, 1)
//! immediate_rollback = "high"  # off | critical | high
//! max_error_rate_pct = 5.0   # (0, 100]
//! max_p99_ms = 1000.0        # > 0
//!
//! [slo]                      # optional; defaults = Slo::default()
//! objective_pct = 99.9       # (0, 100)
//! window = "30d"             # > 0
//! ```
//!
//! Durations are humantime strings ("30s", "15m", "1h 30m"). Errors carry
//! the file, the 1-based line and column of the offending value (or of the
//! table header when a key is missing), the dotted field path with 0-based
//! array indices (`strategy.stages[2].weight`) and a message that says what
//! is wrong and what is allowed. Only the first error is reported.

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
}

impl BackendKind {
    /// Every backend name accepted in a plan, for error messages.
    pub const NAMES: &'static [&'static str] =
        &["sim", "haproxy", "envoy", "nginx", "argo-rollouts", "deployment", "ecs"];

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
        }
    }

    /// Whether a native controller runs the rollout and flightdeck observes it.
    pub fn control(self) -> Control {
        match self {
            BackendKind::ArgoRollouts => Control::Observed,
            _ => Control::Driven,
        }
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
    /// Canary requests needed in a window before any verdict but inconclusive.
    pub min_requests: u64,
    /// Consecutive failed checks that roll back (Flagger's `threshold`).
    pub failure_threshold: u32,
    /// Consecutive inconclusive checks (missing metrics) that pause for a human.
    pub inconclusive_limit: u32,
    /// One-sided confidence a regression needs before it counts as a failure.
    pub confidence: f64,
    /// Severity at and above which a failure rolls back at once.
    pub immediate_rollback: ImmediateRollback,
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
            failure_threshold: 5,
            inconclusive_limit: 3,
            confidence: 0.95,
            immediate_rollback: ImmediateRollback::High,
            max_error_rate_pct: 5.0,
            max_p99_ms: 1000.0,
        }
    }
}

/// When a single failed check rolls back without waiting for the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImmediateRollback {
    /// Never: only the failure counter rolls back.
    Off,
    /// Critical regressions only (error rate > 5× stable).
    Critical,
    /// High and critical (error rate > 2× stable, p99 +50 %).
    High,
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
                    .map(|s| Stage { weight: s.weight, bake: s.bake, approval: s.approval, action: StageAction::Weight })
                    .collect();
                if out.last().map_or(true, |s| s.weight < 100) {
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
        let raw: raw::Plan = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| check.from_toml(&e))?;
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

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Analysis {
        pub interval: Option<Spanned<DurationText>>,
        pub max_error_increase_pp: Option<Spanned<f64>>,
        pub max_p99_increase_pct: Option<Spanned<f64>>,
        pub min_requests: Option<Spanned<i64>>,
        pub failure_threshold: Option<Spanned<i64>>,
        pub inconclusive_limit: Option<Spanned<i64>>,
        pub confidence: Option<Spanned<f64>>,
        pub immediate_rollback: Option<Spanned<String>>,
        pub max_error_rate_pct: Option<Spanned<f64>>,
        pub max_p99_ms: Option<Spanned<f64>>,
    }

    #[derive(Deserialize)]
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

use std::ops::Range;
use toml::Spanned;

/// Turns raw values into the validated model; knows the file and text so
/// that every error gets its position.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
}

/// Shorthand for the results of validation steps.
type Checked<T> = Result<T, PlanError>;

const DURATION_HINT: &str = r#"write a number with a unit, e.g. "30s", "15m" or "1h 30m""#;

/// Keys every strategy kind accepts besides `kind`.
const CANARY_KEYS: &[&str] = &["stages"];
const BLUE_GREEN_KEYS: &[&str] = &["preview", "verification", "approval"];
const ROLLING_KEYS: &[&str] = &["batch_percent", "bake"];

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
    fn from_toml(&self, e: &serde_path_to_error::Error<toml::de::Error>) -> PlanError {
        let field = field_path(e.path());
        self.error(e.inner().span(), &field, humanize(e.inner().message()))
    }

    // ---- whole plan ----------------------------------------------------

    fn plan(&self, raw: raw::Plan) -> Checked<Plan> {
        let (name, stable, canary, theme) = self.rollout(raw.rollout)?;
        Ok(Plan {
            name,
            stable,
            canary,
            theme,
            target: self.target(raw.target)?,
            strategy: self.strategy(raw.strategy)?,
            analysis: self.analysis(raw.analysis)?,
            slo: self.slo(raw.slo)?,
        })
    }

    fn rollout(&self, raw: Option<raw::Located<raw::Rollout>>) -> Checked<(String, String, String, Option<String>)> {
        let (span, r) = match raw {
            Some(l) => (l.span, Some(l.value)),
            None => (None, None),
        };
        let mut take = |pick: fn(&mut raw::Rollout) -> Option<Spanned<String>>, field: &str, example: &str| {
            let value = r.as_mut().and_then(pick);
            self.required_text(value, span.clone(), field, example)
        };
        let mut r = r;
        let _ = &mut take; // (closure defined before use below for readability)
        let name = take(|r| r.name.take(), "rollout.name", "checkout-api");
        todo!()
    }
}
