//! The checker: turns the raw file into the validated model, with positions.

use super::promql;
use super::raw;
use super::{
    AnalysisConfig, BackendKind, CanaryStage, CloudwatchMetrics, MetricsConfig, Plan, PlanError, PromQueries, Slo,
    StageApprovers, Strategy, Target, DEFAULT_CLOUDWATCH_LAG, DEFAULT_VERSION_LABEL,
};
use crate::toml_file::TomlFile;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// The longest rollout name or group, in bytes: both go into a journal's
/// file name, which most file systems cap at 255 bytes.
const MAX_NAME_BYTES: usize = 100;

/// Turns raw values into the validated model; knows the parsed file, so
/// that every error gets its position and a table its header.
pub(super) struct Checker<'a> {
    pub(super) toml: &'a TomlFile<'a>,
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

impl Checker<'_> {
    // ---- errors and positions ------------------------------------------

    /// An error at `span` (1:1 when the span is unknown).
    fn error(&self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) -> PlanError {
        self.toml.error(span.as_ref(), field, message)
    }

    /// An error at a spanned value.
    fn at<T>(&self, value: &Spanned<T>, field: &str, message: impl Into<String>) -> PlanError {
        self.error(Some(value.span()), field, message)
    }

    // ---- sections, in the order errors are reported ----------------------

    pub(super) fn plan(&self, raw: raw::Plan) -> Checked<Plan> {
        let names = self.rollout(raw.rollout)?;
        let approvers = self.approvers(raw.strategy.as_ref())?;
        let interval_span = raw.analysis.as_ref().and_then(|a| a.interval.as_ref()).map(Spanned::span);
        let plan = Plan {
            name: names.name,
            stable: names.stable,
            canary: names.canary,
            theme: names.theme,
            target: self.target(raw.target)?,
            strategy: self.strategy(raw.strategy)?,
            analysis: self.analysis(raw.analysis.unwrap_or_default())?,
            slo: self.slo(raw.slo.unwrap_or_default())?,
            metrics: self.metrics(raw.metrics)?,
            approvers,
        };
        self.cloudwatch_interval(&plan, interval_span)?;
        Ok(plan)
    }

    /// CloudWatch serves a load balancer's metrics one datapoint per whole
    /// minute (AWS, "CloudWatch metrics for your Application Load
    /// Balancer": reported in 60-second intervals): a window that is not
    /// whole minutes would be missing most of the time, or count a minute
    /// twice into tests that assume fresh windows.
    fn cloudwatch_interval(&self, plan: &Plan, span: Option<Range<usize>>) -> Checked<()> {
        let interval = plan.analysis.interval;
        if !matches!(plan.metrics, MetricsConfig::Cloudwatch(_)) || interval.as_millis().is_multiple_of(60_000) {
            return Ok(());
        }
        let text = humantime::format_duration(interval);
        let message = format!(
            "{text} is not a whole number of minutes: CloudWatch has one load balancer datapoint per minute, \
             so each window reads whole minutes; use 1m, 2m, 5m …"
        );
        Err(self.error(span.or_else(|| self.toml.span_of(&["analysis"])), "analysis.interval", message))
    }

    /// `approvers` and `required` of the canary stages.
    fn approvers(&self, strategy: Option<&raw::Strategy>) -> Checked<Vec<StageApprovers>> {
        let stages = strategy.and_then(|s| s.stages.as_ref());
        let mut out = Vec::new();
        for (i, stage) in stages.into_iter().flatten().enumerate() {
            let field = |key: &str| format!("strategy.stages[{i}].{key}");
            let s = stage.get_ref();
            let Some(names) = &s.approvers else {
                if let Some(required) = &s.required {
                    return Err(self.at(
                        required,
                        &field("required"),
                        "`required` counts approvers: add `approvers = [\"…\"]`",
                    ));
                }
                continue;
            };
            let list = names.get_ref();
            if list.is_empty() || list.iter().any(|n| n.trim().is_empty()) {
                return Err(self.at(names, &field("approvers"), "name at least one approver; names cannot be empty"));
            }
            if let Some(twice) = list.iter().enumerate().find_map(|(k, n)| list[..k].contains(n).then_some(n)) {
                return Err(self.at(
                    names,
                    &field("approvers"),
                    format!("{twice:?} is named twice; each approver counts once"),
                ));
            }
            if s.approval == Some(false) {
                return Err(self.at(
                    names,
                    &field("approvers"),
                    "named approvers gate the stage: drop `approval = false`",
                ));
            }
            let required = match &s.required {
                Some(r) => self.int_in(r, &field("required"), 1, list.len() as i64)? as usize,
                None => 1,
            };
            out.push(StageApprovers { stage: i, names: list.clone(), required });
        }
        Ok(out)
    }

    fn metrics(&self, raw: Option<raw::Metrics>) -> Checked<MetricsConfig> {
        let (span, m) = (self.toml.span_of(&["metrics"]), raw.unwrap_or_default());
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
        let keys: [(&str, Option<Range<usize>>, &str); 12] = [
            ("address", m.address.as_ref().map(Spanned::span), "prometheus"),
            ("requests", m.requests.as_ref().map(Spanned::span), "prometheus"),
            ("errors", m.errors.as_ref().map(Spanned::span), "prometheus"),
            ("p50", m.p50.as_ref().map(Spanned::span), "prometheus"),
            ("p95", m.p95.as_ref().map(Spanned::span), "prometheus"),
            ("p99", m.p99.as_ref().map(Spanned::span), "prometheus"),
            ("latency_buckets", m.latency_buckets.as_ref().map(Spanned::span), "prometheus"),
            ("version_label", m.version_label.as_ref().map(Spanned::span), "prometheus"),
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
                let label = self.version_label(m.version_label)?;
                let d = PromQueries::batched(&label);
                let queries = PromQueries {
                    requests: self.query(m.requests, "metrics.requests", d.requests, &label)?,
                    errors: self.query(m.errors, "metrics.errors", d.errors, &label)?,
                    p50: self.query(m.p50, "metrics.p50", d.p50, &label)?,
                    p95: self.query(m.p95, "metrics.p95", d.p95, &label)?,
                    p99: self.query(m.p99, "metrics.p99", d.p99, &label)?,
                    latency_buckets: match m.latency_buckets {
                        // "" turns the buckets off: latency is then quantiles only.
                        Some(v) if v.get_ref().trim().is_empty() => String::new(),
                        other => self.query(other, "metrics.latency_buckets", d.latency_buckets, &label)?,
                    },
                    version_label: label,
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

    /// A PromQL template in one of the forms of [`promql::form`]: it must
    /// select versions, or every version would read the same series and the
    /// comparison would mean nothing; a batched one must keep the label.
    fn query(&self, value: Option<Spanned<String>>, field: &str, default: String, label: &str) -> Checked<String> {
        let Some(value) = value else { return Ok(default) };
        promql::form(value.get_ref(), label).map_err(|e| self.at(&value, field, e.to_string()))?;
        Ok(value.into_inner())
    }

    /// `version_label`: a Prometheus label name, `version` when unset.
    fn version_label(&self, value: Option<Spanned<String>>) -> Checked<String> {
        let Some(value) = value else { return Ok(DEFAULT_VERSION_LABEL.to_owned()) };
        if !promql::is_label_name(value.get_ref()) {
            let message = format!(
                "{:?} is not a Prometheus label name (letters, digits and _, not starting with a digit)",
                value.get_ref()
            );
            return Err(self.at(&value, "metrics.version_label", message));
        }
        Ok(value.into_inner())
    }

    fn rollout(&self, raw: Option<raw::Rollout>) -> Checked<Names> {
        let span = self.toml.span_of(&["rollout"]);
        let Some(r) = raw else {
            let message = "missing required field; a plan needs a [rollout] table with name, stable and canary";
            return Err(self.error(None, "rollout.name", message));
        };
        let name = self.required_text(r.name.clone(), &span, "rollout.name", "checkout-api")?;
        if let Some(n) = &r.name {
            self.usable_name(n, "rollout.name")?;
        }
        let stable = self.required_text(r.stable, &span, "rollout.stable", "v1.4.2")?;
        let canary = self.required_text(r.canary.clone(), &span, "rollout.canary", "v1.5.0")?;
        if let Some(c) = r.canary.as_ref().filter(|_| canary == stable) {
            let message = format!("is the same version as rollout.stable ({stable:?}); a rollout needs a new version");
            return Err(self.at(c, "rollout.canary", message));
        }
        Ok(Names { name, stable, canary, theme: r.theme.map(|t| self.non_empty(t, "rollout.theme")).transpose()? })
    }

    /// A rollout's name and group name its journal file and its rows: no
    /// control characters, and short enough that the file name fits every
    /// file system (255 bytes with group, name and suffix).
    fn usable_name(&self, value: &Spanned<String>, field: &str) -> Checked<()> {
        let text = value.get_ref();
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(self.at(value, field, format!("contains the control character {c:?}; use printable text")));
        }
        if text.len() > MAX_NAME_BYTES {
            let message = format!("is {} bytes long; at most {MAX_NAME_BYTES} (it names a journal file)", text.len());
            return Err(self.at(value, field, message));
        }
        Ok(())
    }

    fn target(&self, raw: Option<raw::Target>) -> Checked<Target> {
        let t = raw.unwrap_or_default();
        let backend = match &t.backend {
            Some(b) => self.backend(b)?,
            None => BackendKind::Sim,
        };
        if backend == BackendKind::Ecs {
            self.ecs_controller(&t)?;
        }
        let group = match t.group {
            Some(g) => {
                self.usable_name(&g, "target.group")?;
                self.non_empty(g, "target.group")?
            }
            None => backend.name().to_owned(),
        };
        let params = self.params(t.inline, t.nested)?;
        Ok(Target { backend, group, production: t.production.unwrap_or(false), params })
    }

    fn strategy(&self, raw: Option<raw::Strategy>) -> Checked<Strategy> {
        let span = self.toml.span_of(&["strategy"]);
        let Some(s) = raw else {
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
            pass_unjudged_latency: a.pass_unjudged_latency.unwrap_or(d.pass_unjudged_latency),
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
