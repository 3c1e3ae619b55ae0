//! Raw, unvalidated mirror of the file: every field optional, spans kept
//! so that validation can point at the offending value (a table's own
//! header is looked up in the document: it may have none).

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub rollout: Option<Rollout>,
    pub target: Option<Target>,
    pub strategy: Option<Strategy>,
    pub analysis: Option<Analysis>,
    pub slo: Option<Slo>,
    pub metrics: Option<Metrics>,
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
    pub latency_buckets: Option<Spanned<String>>,
    pub version_label: Option<Spanned<String>>,
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
    pub approvers: Option<Spanned<Vec<String>>>,
    pub required: Option<Spanned<i64>>,
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
    pub pass_unjudged_latency: Option<bool>,
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
