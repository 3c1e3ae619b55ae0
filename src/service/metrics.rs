//! `/metrics`: the engine's state in the Prometheus text exposition format
//! (version 0.0.4), encoded by Prometheus's own Rust client
//! (`prometheus-client`). Each scrape builds a registry: gauges read from
//! the latest snapshot, counters kept from the engine's events as they pass
//! ([`Counters`]), and the backend call latency histograms ([`Latency`]),
//! the one family kept between scrapes.
//!
//! Counters start at zero when the process starts (as every Prometheus
//! counter does; `rate` and `increase` handle the reset): the events of
//! resumed runs, restored from their journals, are not counted again.

use crate::backend::{Backend, BackendError};
use crate::protocol::Output;
use flightdeck_core::rollout::{Effect, Observation, Phase, Rollout};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A series' labels, by name.
type Labels = Vec<(&'static str, String)>;

/// Every phase, as the `phase` label writes it: each is exposed, zero or not,
/// so a query for one that is empty finds 0 rather than nothing.
pub const PHASES: [&str; 8] =
    ["pending", "progressing", "paused", "awaiting_approval", "promoted", "aborted", "rolled_back", "failed"];

/// The `phase` label of a phase (`rolled_back`, `awaiting_approval`).
pub fn phase_label(phase: &Phase) -> &'static str {
    match phase {
        Phase::Pending => PHASES[0],
        Phase::Progressing { .. } => PHASES[1],
        Phase::Paused { .. } => PHASES[2],
        Phase::AwaitingApproval { .. } => PHASES[3],
        Phase::Promoted { .. } => PHASES[4],
        Phase::Aborted { .. } => PHASES[5],
        Phase::RolledBack { .. } => PHASES[6],
        Phase::Failed { .. } => PHASES[7],
    }
}

/// What the events have said since the process started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Per (rollout, verdict): `pass`, `fail`, `inconclusive`.
    pub verdicts: BTreeMap<(String, String), u64>,
    /// Per (rollout, who): `analysis`, `backend`, or the operator's name.
    pub rollbacks: BTreeMap<(String, String), u64>,
    /// Per rollout: effects that failed after every attempt.
    pub effect_failures: BTreeMap<String, u64>,
    /// Per rollout: attempts after an effect's first (each retry after a backend call failed).
    pub effect_retries: BTreeMap<String, u64>,
    /// Events this follower fell too far behind to see (it never slows the engine).
    pub skipped_events: u64,
    /// Per (sink, result): `sent`, `failed`, `dropped` (its queue was full).
    pub notifications: BTreeMap<(String, String), u64>,
}

impl Counters {
    /// Counts what `out` says (a rollback is counted by [`Counters::rollback`],
    /// whose caller knows who did it).
    pub fn observe(&mut self, out: &Output) {
        match out {
            Output::Verdict { rollout, verdict, .. } => {
                *self.verdicts.entry((rollout.clone(), verdict.label().to_string())).or_default() += 1;
            }
            Output::Effect { rollout, ok, attempts, .. } => {
                if !ok {
                    *self.effect_failures.entry(rollout.clone()).or_default() += 1;
                }
                *self.effect_retries.entry(rollout.clone()).or_default() += u64::from(attempts.saturating_sub(1));
            }
            _ => {}
        }
    }

    pub fn rollback(&mut self, rollout: &str, by: &str) {
        *self.rollbacks.entry((rollout.to_string(), by.to_string())).or_default() += 1;
    }

    pub fn notification(&mut self, sink: &str, result: &str) {
        *self.notifications.entry((sink.to_string(), result.to_string())).or_default() += 1;
    }
}

/// The upper bounds of the backend call latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// How long backend calls take, per rollout and call (`apply`, `observe`),
/// since the process started. Clones share it.
#[derive(Clone)]
pub struct Latency(Family<Labels, Histogram, fn() -> Histogram>);

impl Default for Latency {
    fn default() -> Latency {
        Latency(Family::new_with_constructor(latency_histogram))
    }
}

impl Latency {
    pub fn observe(&self, rollout: &str, call: &'static str, seconds: f64) {
        self.0.get_or_create(&vec![("rollout", rollout.to_owned()), ("call", call.to_owned())]).observe(seconds);
    }
}

/// A backend whose calls are timed into [`Latency`] (what `serve` runs).
pub struct Timed {
    inner: Arc<dyn Backend>,
    rollout: String,
    latency: Latency,
}

impl Timed {
    pub fn new(inner: Arc<dyn Backend>, rollout: String, latency: Latency) -> Timed {
        Timed { inner, rollout, latency }
    }
}

#[async_trait::async_trait]
impl Backend for Timed {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        let started = Instant::now();
        let result = self.inner.apply(effect).await;
        self.latency.observe(&self.rollout, "apply", started.elapsed().as_secs_f64());
        result
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let started = Instant::now();
        let result = self.inner.observe().await;
        self.latency.observe(&self.rollout, "observe", started.elapsed().as_secs_f64());
        result
    }

    fn run_on(&self, clock: crate::clock::Clock) {
        self.inner.run_on(clock)
    }

    fn effects_at(&self, at: flightdeck_core::time::Timestamp) {
        self.inner.effects_at(at)
    }

    fn simulation(&self) -> Option<crate::backend::sim::SimRun> {
        self.inner.simulation()
    }
}

/// `serve --leader-elect`: the Lease as this replica last read or wrote it.
#[derive(Debug, Clone, Default)]
pub struct LeaseView {
    /// "namespace/name".
    pub lease: String,
    /// Its `holderIdentity` (empty: released).
    pub holder: String,
    pub transitions: u64,
    /// Seconds since the record last changed as this replica saw it.
    pub renewed_ago: Option<f64>,
    /// This replica holds it and may act now.
    pub leading: bool,
}

/// A family of labelled series, filled by `fill`, registered as `name`.
fn family<M>(registry: &mut Registry, name: &str, help: &str, fill: impl FnOnce(&Family<Labels, M>))
where
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = Family::<Labels, M>::default();
    fill(&family);
    registry.register(name, help, family);
}

/// One label.
fn label(name: &'static str, value: &str) -> Labels {
    vec![(name, value.to_owned())]
}

/// The whole exposition: gauges from `rollouts` (the latest snapshot) and
/// `attached`, counters from `counters`, the latency histograms, and the
/// Lease when electing a leader.
pub fn render(
    counters: &Counters,
    rollouts: &[Arc<Rollout>],
    attached: usize,
    latency: &Latency,
    lease: Option<&LeaseView>,
) -> String {
    let mut registry = Registry::default();
    let r = &mut registry;
    family::<Gauge>(r, "flightdeck_rollouts", "Rollouts by phase", |f| {
        for phase in PHASES {
            let n = rollouts.iter().filter(|r| phase_label(&r.phase) == phase).count();
            f.get_or_create(&label("phase", phase)).set(n as i64);
        }
    });
    let per_rollout = |r: &mut Registry, name: &str, help: &str, value: fn(&Rollout) -> i64| {
        family::<Gauge>(r, name, help, |f| {
            for rollout in rollouts {
                f.get_or_create(&label("rollout", &rollout.id)).set(value(rollout));
            }
        })
    };
    per_rollout(r, "flightdeck_rollout_stage", "The stage a rollout is at, 1-based, as the cockpit shows it", |r| {
        r.stage as i64 + 1
    });
    per_rollout(r, "flightdeck_rollout_stages", "How many stages a rollout has", |r| r.stages().len() as i64);
    per_rollout(
        r,
        "flightdeck_rollout_canary_weight_percent",
        "The canary weight flightdeck has asked for, percent",
        |r| i64::from(r.canary_weight),
    );
    family::<Counter>(r, "flightdeck_verdicts", "Analysis verdicts since the process started", |f| {
        for ((rollout, verdict), n) in &counters.verdicts {
            f.get_or_create(&vec![("rollout", rollout.clone()), ("verdict", verdict.clone())]).inc_by(*n);
        }
    });
    family::<Counter>(r, "flightdeck_rollbacks", "Rollbacks since the process started, by who did them", |f| {
        for ((rollout, by), n) in &counters.rollbacks {
            f.get_or_create(&vec![("rollout", rollout.clone()), ("by", by.clone())]).inc_by(*n);
        }
    });
    let per_rollout_count = |r: &mut Registry, name: &str, help: &str, counts: &BTreeMap<String, u64>| {
        family::<Counter>(r, name, help, |f| {
            for rollout in rollouts {
                f.get_or_create(&label("rollout", &rollout.id)).inc_by(counts.get(&rollout.id).copied().unwrap_or(0));
            }
        })
    };
    per_rollout_count(
        r,
        "flightdeck_effect_failures",
        "Effects the backend failed to apply after every attempt",
        &counters.effect_failures,
    );
    per_rollout_count(
        r,
        "flightdeck_effect_retries",
        "Effect attempts after the first, each after a backend call failed",
        &counters.effect_retries,
    );
    r.register(
        "flightdeck_backend_call_duration_seconds",
        "How long backend calls take, by rollout and call (apply, observe)",
        latency.0.clone(),
    );
    let attached_clients = Gauge::<i64>::default();
    attached_clients.set(attached as i64);
    r.register("flightdeck_attached_clients", "Cockpits attached (socket and SSH)", attached_clients);
    let skipped = Counter::<u64>::default();
    skipped.inc_by(counters.skipped_events);
    r.register(
        "flightdeck_events_skipped",
        "Engine events the metrics and notifications fell too far behind to see",
        skipped,
    );
    family::<Counter>(r, "flightdeck_notifications", "Notifications by sink and result", |f| {
        for ((sink, result), n) in &counters.notifications {
            f.get_or_create(&vec![("sink", sink.clone()), ("result", result.clone())]).inc_by(*n);
        }
    });
    if let Some(lease) = lease {
        register_lease(r, lease);
    }
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).expect("writing to a String");
    out
}

/// `serve --leader-elect`: who holds the Lease, its transitions, whether
/// this replica leads, and how long ago it was renewed.
fn register_lease(r: &mut Registry, lease: &LeaseView) {
    family::<Gauge>(r, "flightdeck_lease_holder", "The Lease's holder as this replica last saw it (always 1)", |f| {
        if !lease.holder.is_empty() {
            f.get_or_create(&vec![("lease", lease.lease.clone()), ("holder", lease.holder.clone())]).set(1);
        }
    });
    family::<Gauge>(
        r,
        "flightdeck_lease_transitions",
        "The Lease's leaseTransitions as this replica last saw it",
        |f| {
            f.get_or_create(&label("lease", &lease.lease)).set(lease.transitions as i64);
        },
    );
    family::<Gauge>(r, "flightdeck_lease_is_leader", "1 while this replica holds the Lease and may act, else 0", |f| {
        f.get_or_create(&label("lease", &lease.lease)).set(i64::from(lease.leading));
    });
    family::<Gauge<f64, AtomicU64>>(
        r,
        "flightdeck_lease_renew_age_seconds",
        "Seconds since the Lease record last changed as this replica saw it (the holder's last renewal)",
        |f| {
            if let Some(ago) = lease.renewed_ago {
                f.get_or_create(&label("lease", &lease.lease)).set(ago);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::rollout::Effect;

    fn effect(rollout: &str, ok: bool, attempts: u32) -> Output {
        let effect = Effect::SetWeight { canary: 10 };
        Output::Effect { rollout: rollout.into(), at: Default::default(), effect, ok, attempts, error: None }
    }

    #[test]
    fn every_phase_is_exposed_and_counters_carry_their_labels_escaped() {
        let mut c = Counters::default();
        c.rollback("a\"b\\c\nd", "alice");
        c.notification("slack", "sent");
        let text = render(&c, &[], 2, &Latency::default(), None);
        for phase in PHASES {
            assert!(text.contains(&format!("flightdeck_rollouts{{phase=\"{phase}\"}} 0\n")), "{text}");
        }
        // Backslash, double quote and line feed escaped, as the format requires.
        assert!(text.contains("flightdeck_rollbacks_total{rollout=\"a\\\"b\\\\c\\nd\",by=\"alice\"} 1\n"), "{text}");
        assert!(text.contains("flightdeck_attached_clients 2\n"), "{text}");
        assert!(text.contains("flightdeck_notifications_total{sink=\"slack\",result=\"sent\"} 1\n"), "{text}");
        assert!(!text.contains("flightdeck_lease"), "no Lease without --leader-elect: {text}");
        // Every sample line belongs to a family announced before it.
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.iter().any(|t| name.starts_with(t.as_str())), "{name} has no # TYPE before it");
            }
        }
    }

    #[test]
    fn retries_failures_and_backend_call_latency_are_counted_per_rollout() {
        let mut c = Counters::default();
        c.observe(&effect("shop/a", true, 1));
        c.observe(&effect("shop/a", true, 3));
        c.observe(&effect("shop/a", false, 3));
        let plan = flightdeck_core::plan::Plan::parse(
            "p.toml",
            "[rollout]\nname = \"a\"\nstable = \"v1\"\ncanary = \"v2\"\n\n[[strategy.stages]]\nweight = 100\nbake = \"0s\"\n",
        )
        .unwrap();
        let rollout = Arc::new(Rollout::new("shop/a", plan));
        let latency = Latency::default();
        latency.observe("shop/a", "observe", 0.003);
        latency.observe("shop/a", "observe", 0.2);
        let text = render(&c, &[rollout], 0, &latency, None);
        assert!(text.contains("flightdeck_effect_retries_total{rollout=\"shop/a\"} 4\n"), "{text}");
        assert!(text.contains("flightdeck_effect_failures_total{rollout=\"shop/a\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE flightdeck_backend_call_duration_seconds histogram\n"), "{text}");
        let series = "flightdeck_backend_call_duration_seconds";
        assert!(
            text.contains(&format!("{series}_bucket{{le=\"0.005\",rollout=\"shop/a\",call=\"observe\"}} 1\n"))
                || text.contains(&format!("{series}_bucket{{rollout=\"shop/a\",call=\"observe\",le=\"0.005\"}} 1\n")),
            "{text}"
        );
        assert!(text.contains(&format!("{series}_count{{rollout=\"shop/a\",call=\"observe\"}} 2\n")), "{text}");
    }

    #[test]
    fn the_lease_says_its_holder_transitions_leadership_and_renewal_age() {
        let lease = LeaseView {
            lease: "flightdeck/flightdeck".into(),
            holder: "replica-a".into(),
            transitions: 3,
            renewed_ago: Some(0.25),
            leading: false,
        };
        let text = render(&Counters::default(), &[], 0, &Latency::default(), Some(&lease));
        let l = "lease=\"flightdeck/flightdeck\"";
        assert!(text.contains(&format!("flightdeck_lease_holder{{{l},holder=\"replica-a\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("flightdeck_lease_transitions{{{l}}} 3\n")), "{text}");
        assert!(text.contains(&format!("flightdeck_lease_is_leader{{{l}}} 0\n")), "{text}");
        assert!(text.contains(&format!("flightdeck_lease_renew_age_seconds{{{l}}} 0.25\n")), "{text}");
    }
}
