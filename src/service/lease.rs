//! `serve --leader-elect`: one replica drives, the others stand by, and a
//! `coordination.k8s.io/v1` Lease decides which, as client-go's
//! `tools/leaderelection/leaderelection.go` does it (the same algorithm,
//! on kube-rs):
//!
//! - **acquire**: try every `retry period`, jittered by up to 1.2 times it
//!   (client-go's `JitterFactor`), until the Lease is free or expired;
//! - **expired** is judged on this process's clock only: the record (its
//!   raw bytes) has not changed for its `leaseDurationSeconds` since this
//!   replica last saw it change. Timestamps in the record are not trusted
//!   (another node's clock wrote them);
//! - **renew**: the holder updates `renewTime` every retry period with the
//!   `resourceVersion` it read (optimistic concurrency: a replica that lost
//!   a race gets 409 Conflict and reads again); a new holder counts one more
//!   `leaseTransitions`;
//! - **renew deadline**: a holder that has not renewed within it stops
//!   (here: its [`Fence`] ends, so no journal is written and no effect is
//!   applied, and `serve` exits to start again as a standby);
//! - **release** on a clean stop: the holder empties `holderIdentity` (and
//!   sets a 1 s duration) so a standby need not wait out the lease.
//!
//! Validation as client-go's `NewLeaderElector`: lease duration > renew
//! deadline > 1.2 × retry period > 0.

use crate::engine::journal::{Fence, Term};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use rand::Rng;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// client-go's `JitterFactor`.
pub const JITTER_FACTOR: f64 = 1.2;

/// Which Lease, who we are, and its timing (`serve --leader-elect …`).
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// This replica's `holderIdentity` (the pod's name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseOptions {
    /// The checks client-go's `NewLeaderElector` makes, in its words' spirit.
    pub fn check(&self) -> Result<(), String> {
        if self.identity.is_empty() {
            return Err("--lease-identity: empty (the pod's name, from $POD_NAME, is the usual one)".into());
        }
        if self.retry_period.is_zero() {
            return Err("--lease-retry-period must be greater than zero".into());
        }
        if self.lease_duration.as_secs() < 1 || self.lease_duration.subsec_nanos() != 0 {
            return Err("--lease-duration must be whole seconds, at least 1s (the Lease keeps seconds)".into());
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "--lease-duration ({:?}) must be greater than --lease-renew-deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(format!(
                "--lease-renew-deadline ({:?}) must be greater than {JITTER_FACTOR} × --lease-retry-period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }

    /// "flightdeck/serve" as kubectl names it.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The record as last read or written, and when it was last seen to change.
#[derive(Debug, Clone)]
struct Observed {
    holder: String,
    transitions: u64,
    duration: Duration,
    acquire_time: Option<MicroTime>,
    /// The record's bytes: any change (a renewal) restarts the expiry.
    raw: String,
    resource_version: Option<String>,
    /// This process's clock when `raw` last changed.
    at: Instant,
}

/// The Lease as this replica last read or wrote it, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Its `holderIdentity` (empty: released).
    pub holder: String,
    pub transitions: u64,
    /// This process's clock when the record last changed: the holder's
    /// last renewal as seen here (the leader's own last renewal, sent).
    pub renewed: Option<Instant>,
}

/// What an attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold it: the term, and the time the request was sent (the fence
    /// counts its renew deadline from there).
    Held(Term, Instant),
    /// Another replica holds it and has renewed within its duration.
    HeldBy(Term),
    /// The API server could not be asked, or a race was lost (409).
    Failed(String),
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    options: LeaseOptions,
    observed: Option<Observed>,
    /// Replicas started together must not retry in step.
    jitter: rand_chacha::ChaCha8Rng,
    /// What `/metrics` reads.
    seen: Arc<Mutex<Seen>>,
}

impl Elector {
    pub fn new(client: Client, options: LeaseOptions) -> Elector {
        let api = Api::namespaced(client, &options.namespace);
        let seed = u64::from(std::process::id()) ^ crate::clock::wall_ms().rotate_left(17);
        let jitter = rand::SeedableRng::seed_from_u64(seed);
        Elector { api, options, observed: None, jitter, seen: Arc::default() }
    }

    /// The Lease as last read or written, kept up to date.
    pub fn seen(&self) -> Arc<Mutex<Seen>> {
        self.seen.clone()
    }

    pub fn options(&self) -> &LeaseOptions {
        &self.options
    }

    fn is_leader(&self) -> bool {
        self.observed.as_ref().is_some_and(|o| o.holder == self.options.identity)
    }

    fn lease_valid(&self, now: Instant) -> bool {
        self.observed.as_ref().is_some_and(|o| o.at + o.duration > now)
    }

    fn term(&self) -> Option<Term> {
        self.observed.as_ref().map(|o| Term { holder: o.holder.clone(), transitions: o.transitions })
    }

    /// client-go's `tryAcquireOrRenew`, step by step.
    pub async fn try_acquire_or_renew(&mut self) -> Attempt {
        let sent = Instant::now();
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let me = self.options.identity.clone();
        // 1. The holder's fast path: update what it observed last.
        if self.is_leader() && self.lease_valid(sent) {
            let o = self.observed.clone().expect("a leader observed the record");
            let lease =
                self.record(&me, now.clone(), o.acquire_time.clone(), o.transitions, o.resource_version.clone());
            if let Ok(written) = self.replace(&lease).await {
                self.observe(&written, sent);
                return Attempt::Held(self.term().expect("observed"), sent);
            }
            // Fall back to reading it.
        }
        // 2. Read it, or create it.
        let current =
            match tokio::time::timeout(self.options.renew_deadline, self.api.get_opt(&self.options.name)).await {
                Err(_) => return Attempt::Failed(format!("reading the Lease {} timed out", self.options.describe())),
                Ok(Err(e)) => return Attempt::Failed(format!("reading the Lease {}: {e}", self.options.describe())),
                Ok(Ok(current)) => current,
            };
        let Some(current) = current else {
            let lease = self.record(&me, now.clone(), Some(now), 0, None);
            let created =
                tokio::time::timeout(self.options.renew_deadline, self.api.create(&PostParams::default(), &lease))
                    .await;
            return match created {
                Ok(Ok(written)) => {
                    self.observe(&written, sent);
                    Attempt::Held(self.term().expect("observed"), sent)
                }
                Ok(Err(e)) => Attempt::Failed(format!("creating the Lease {}: {e}", self.options.describe())),
                Err(_) => Attempt::Failed(format!("creating the Lease {} timed out", self.options.describe())),
            };
        };
        // 3. Note a change (a renewal restarts the expiry), then decide.
        self.observe(&current, sent);
        let o = self.observed.clone().expect("just observed");
        if !o.holder.is_empty() && self.lease_valid(sent) && !self.is_leader() {
            return Attempt::HeldBy(self.term().expect("observed"));
        }
        // 4. Take it (one more transition) or renew it (slow path).
        let (acquire, transitions) = match self.is_leader() {
            true => (o.acquire_time.clone(), o.transitions),
            false => (Some(now.clone()), o.transitions + 1),
        };
        let lease = self.record(&me, now, acquire, transitions, o.resource_version.clone());
        match self.replace(&lease).await {
            Ok(written) => {
                self.observe(&written, sent);
                Attempt::Held(self.term().expect("observed"), sent)
            }
            Err(e) => Attempt::Failed(e),
        }
    }

    /// Gives the Lease up (a clean stop): no holder, a 1 s duration, the
    /// same transitions, so a standby takes it at its next try.
    pub async fn release(&mut self) -> Result<(), String> {
        if !self.is_leader() {
            return Ok(());
        }
        let o = self.observed.clone().expect("a leader observed the record");
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut lease = self.record("", now.clone(), Some(now), o.transitions, o.resource_version);
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
        }
        let written = self.replace(&lease).await?;
        self.observe(&written, Instant::now());
        Ok(())
    }

    fn record(
        &self,
        holder: &str,
        renew: MicroTime,
        acquire: Option<MicroTime>,
        transitions: u64,
        resource_version: Option<String>,
    ) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.options.name.clone()),
                namespace: Some(self.options.namespace.clone()),
                resource_version,
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(self.options.lease_duration.as_secs() as i32),
                acquire_time: acquire,
                renew_time: Some(renew),
                lease_transitions: Some(transitions.min(i32::MAX as u64) as i32),
                ..Default::default()
            }),
        }
    }

    /// An update with the `resourceVersion` read: 409 when another wrote first.
    async fn replace(&self, lease: &Lease) -> Result<Lease, String> {
        let what = self.options.describe();
        let params = PostParams::default();
        let put = self.api.replace(&self.options.name, &params, lease);
        match tokio::time::timeout(self.options.renew_deadline, put).await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => {
                Err(format!("updating the Lease {what}: another replica wrote it first (409 Conflict)"))
            }
            Ok(Err(e)) => Err(format!("updating the Lease {what}: {e}")),
            Err(_) => Err(format!("updating the Lease {what} timed out")),
        }
    }

    fn observe(&mut self, lease: &Lease, now: Instant) {
        let spec = lease.spec.clone().unwrap_or_default();
        // The record as client-go compares it (its spec), not the metadata.
        let raw = serde_json::to_string(&spec).unwrap_or_default();
        let at = match &self.observed {
            Some(o) if o.raw == raw => o.at,
            _ => now,
        };
        let holder = spec.holder_identity.unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0).max(0) as u64;
        *self.seen.lock().expect("lease seen") = Seen { holder: holder.clone(), transitions, renewed: Some(at) };
        self.observed = Some(Observed {
            holder,
            transitions,
            duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64),
            acquire_time: spec.acquire_time,
            raw,
            resource_version: lease.metadata.resource_version.clone(),
            at,
        });
    }

    /// Waits until this replica holds the Lease (client-go's `acquire`:
    /// every retry period, jittered), telling `standby` who holds it
    /// meanwhile. Returns the fence of the new term.
    pub async fn acquire(&mut self, mut standby: impl FnMut(&str)) -> Fence {
        loop {
            match self.try_acquire_or_renew().await {
                Attempt::Held(term, sent) => {
                    tracing::info!(lease = %self.options.describe(), %term, "took the lease");
                    return Fence::new(term, sent + self.options.renew_deadline);
                }
                Attempt::HeldBy(term) => standby(&format!("the lease {} is held by {term}", self.options.describe())),
                Attempt::Failed(why) => standby(&why),
            }
            tokio::time::sleep(jittered(self.options.retry_period, self.jitter.gen::<f64>())).await;
        }
    }

    /// Renews every retry period while the term lasts (client-go's
    /// `renew`); returns why it ended: the renew deadline passed without a
    /// renewal, or another holder was seen. The fence ends first.
    pub async fn keep(&mut self, fence: &Fence) -> String {
        loop {
            tokio::time::sleep(self.options.retry_period).await;
            if let Err(expired) = fence.check() {
                let why = expired.to_string();
                fence.lose(why.clone());
                return why;
            }
            match self.try_acquire_or_renew().await {
                Attempt::Held(term, sent) if term == fence.term() => {
                    fence.renewed(sent + self.options.renew_deadline);
                }
                Attempt::Held(term, _) | Attempt::HeldBy(term) => {
                    let why = format!("the lease {} is held by {term}", self.options.describe());
                    fence.lose(why.clone());
                    return why;
                }
                Attempt::Failed(why) => {
                    tracing::warn!(lease = %self.options.describe(), error = %why, "could not renew the lease; retrying");
                }
            }
        }
    }
}

/// client-go's `wait.Jitter`: `period` plus up to `JITTER_FACTOR` times it (`r` in 0..1).
pub fn jittered(period: Duration, r: f64) -> Duration {
    period + period.mul_f64(JITTER_FACTOR * r.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(lease: u64, renew_ms: u64, retry_ms: u64) -> LeaseOptions {
        LeaseOptions {
            namespace: "flightdeck".into(),
            name: "flightdeck".into(),
            identity: "flightdeck-0".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_millis(renew_ms),
            retry_period: Duration::from_millis(retry_ms),
        }
    }

    #[test]
    fn timings_are_checked_as_client_go_checks_them() {
        // client-go's defaults for controllers: 15 s, 10 s, 2 s.
        assert_eq!(options(15, 10_000, 2_000).check(), Ok(()));
        let err = options(10, 10_000, 2_000).check().unwrap_err();
        assert!(err.contains("--lease-duration (10s) must be greater than --lease-renew-deadline (10s)"), "{err}");
        let err = options(15, 2_400, 2_000).check().unwrap_err();
        assert!(err.contains("must be greater than 1.2 × --lease-retry-period (2s)"), "{err}");
        assert!(options(15, 10_000, 0).check().is_err());
        let mut no_name = options(15, 10_000, 2_000);
        no_name.identity.clear();
        assert!(no_name.check().unwrap_err().starts_with("--lease-identity: empty"));
    }

    #[test]
    fn retries_are_jittered_by_up_to_1_2_times_the_period() {
        let period = Duration::from_secs(2);
        assert_eq!(jittered(period, 0.0), period);
        assert_eq!(jittered(period, 0.5), Duration::from_millis(3_200));
        assert_eq!(jittered(period, 1.0), Duration::from_millis(4_400));
    }
}
