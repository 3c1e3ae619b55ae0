//! Fencing: with `serve --leader-elect` one replica drives and the others
//! stand by, and the Kubernetes Lease decides which. A lease is only as good
//! as its holder's knowledge that it still holds it, so every journal record
//! carries the [`Term`] it was written in (the holder's identity and the
//! Lease's `leaseTransitions` when it took it), and the journal refuses to
//! write, and the engine to act, once the [`Fence`] says the term is over:
//! the holder has not renewed within its renew deadline (a process paused by
//! SIGSTOP, a stalled node, a partition), or it saw another holder.
//!
//! The deadline is measured on this process's monotonic clock from the
//! moment a successful renewal was *sent*, so it ends before any other
//! replica can take the Lease: a standby takes it only after seeing the
//! record unchanged for the whole lease duration, counted from when it read
//! it (after it was written), and the renew deadline is shorter than the
//! lease duration (client-go's `leaderelection.go` makes the same argument).
//!
//! With a fence the Lease, not the journal's advisory lock, keeps one
//! writer: a paused holder keeps its `flock` for as long as it is paused,
//! which would stop the standby from ever taking over, and `flock` on a
//! network volume shared by two pods is not to be relied on. A record a
//! deposed holder still managed to write (between its last check and its
//! write) is refused on resume: a record of an older term after one of a
//! newer term is not replayed (see [`super::read`]).

use crate::backend::{Backend, BackendError};
use flightdeck_core::rollout::{Effect, Observation};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// One holder's tenure of the Lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The Lease's `holderIdentity` (the pod's name).
    pub holder: String,
    /// The Lease's `leaseTransitions` when this holder took it: each new
    /// holder counts one more, so a higher number is a later term.
    pub transitions: u64,
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (lease transition {})", self.holder, self.transitions)
    }
}

/// Whether this process may still write and act, shared by the lease loop
/// (which renews it) and every rollout's journal (which checks it).
#[derive(Debug, Clone)]
pub struct Fence {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    term: Term,
    /// The renew deadline of the last renewal that succeeded.
    valid_until: Instant,
    /// Why the term is over for good (another holder was seen).
    lost: Option<String>,
}

impl Fence {
    /// A term that holds until `valid_until` unless renewed.
    pub fn new(term: Term, valid_until: Instant) -> Fence {
        Fence { state: Arc::new(Mutex::new(State { term, valid_until, lost: None })) }
    }

    /// A renewal succeeded: the term holds until `valid_until` (never moved back).
    pub fn renewed(&self, valid_until: Instant) {
        let mut s = self.state.lock().expect("fence");
        if s.lost.is_none() {
            s.valid_until = s.valid_until.max(valid_until);
        }
    }

    /// The term is over, whatever the clock says.
    pub fn lose(&self, why: String) {
        let mut s = self.state.lock().expect("fence");
        s.lost.get_or_insert(why);
    }

    /// The term, while it holds; else why it does not.
    pub fn check(&self) -> Result<Term, Expired> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<Term, Expired> {
        let s = self.state.lock().expect("fence");
        if let Some(why) = &s.lost {
            return Err(Expired::Lost { term: s.term.clone(), why: why.clone() });
        }
        if now >= s.valid_until {
            let over = now.duration_since(s.valid_until).as_secs_f64();
            return Err(Expired::NotRenewed { term: s.term.clone(), over_s: over });
        }
        Ok(s.term.clone())
    }

    /// The term this fence guards (held or not).
    pub fn term(&self) -> Term {
        self.state.lock().expect("fence").term.clone()
    }
}

/// Why a term no longer holds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Expired {
    /// The elector saw another holder, or gave the lease up.
    #[error("{term} no longer holds the lease: {why}")]
    Lost { term: Term, why: String },
    /// No renewal within the renew deadline: another replica may hold it by now.
    #[error(
        "{term} did not renew the lease within its renew deadline (over by {over_s:.1} s): another replica may hold it"
    )]
    NotRenewed { term: Term, over_s: f64 },
}

/// A second fence in one process: a replica that loses the lease exits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a lease fence is already installed in this process")]
pub struct AlreadyInstalled;

static INSTALLED: OnceLock<Fence> = OnceLock::new();

/// Fences every journal this process opens from now on (`serve
/// --leader-elect`, once it holds the Lease). Once per process: a replica
/// that loses the Lease exits, and starts again as a standby.
pub fn install(fence: Fence) -> Result<(), AlreadyInstalled> {
    INSTALLED.set(fence).map_err(|_| AlreadyInstalled)
}

/// The fence [`install`]ed, if any.
pub fn installed() -> Option<Fence> {
    INSTALLED.get().cloned()
}

// ---------------------------------------------------------------- backend calls

/// A backend whose every effect is checked against the fence at the last
/// moment this process can check it: after the read-back that guards a
/// scale-down (`Backend::apply_guarded`, a network call a pause may fall
/// in), immediately before the backend is asked to act. The engine wraps
/// every backend in one under `serve --leader-elect` (and checks the fence
/// before each attempt of an effect as well, retries included).
///
/// What no check in this process can close: a pause after this check and
/// before the request leaves (or while it is on the wire), and the calls a
/// backend makes one after another for one effect. Those are refused only
/// where the system itself checks a precondition: the Kubernetes route
/// patch `test`s the resourceVersion it read and the Deployment hold's
/// patch carries it (a write by the new leader in between makes them fail),
/// and ECS's `CreateTaskSet` client token makes a repeat a no-op. HAProxy's
/// runtime API, Envoy's admin runtime and NGINX's upstream file have no
/// precondition at all: a deposed leader's late call to them lands, and
/// the new leader's next reading (it reconciles every effect on resume and
/// reads the weight back every window) shows and corrects it.
pub struct FencedBackend {
    inner: Arc<dyn Backend>,
    fence: Fence,
}

impl FencedBackend {
    pub fn new(inner: Arc<dyn Backend>, fence: Fence) -> FencedBackend {
        FencedBackend { inner, fence }
    }
}

#[async_trait::async_trait]
impl Backend for FencedBackend {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        if let Err(why) = self.fence.check() {
            return Err(BackendError::Refused {
                backend: self.inner.name(),
                action: effect.to_string(),
                detail: format!("not sent: {why}"),
            });
        }
        self.inner.apply(effect).await
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        self.inner.observe().await
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn term(holder: &str, transitions: u64) -> Term {
        Term { holder: holder.into(), transitions }
    }

    #[test]
    fn a_term_holds_until_its_renew_deadline_and_a_renewal_moves_it_on() {
        let start = Instant::now();
        let fence = Fence::new(term("a", 1), start + Duration::from_secs(10));
        assert_eq!(fence.check_at(start + Duration::from_secs(9)), Ok(term("a", 1)));
        let late = fence.check_at(start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(late, Expired::NotRenewed { term: term("a", 1), over_s: 0.0 });
        let said = late.to_string();
        assert!(said.starts_with("a (lease transition 1) did not renew the lease within its renew deadline"), "{said}");
        fence.renewed(start + Duration::from_secs(20));
        assert!(fence.check_at(start + Duration::from_secs(15)).is_ok());
        // A late answer to an older renewal never shortens the term.
        fence.renewed(start + Duration::from_secs(12));
        assert!(fence.check_at(start + Duration::from_secs(15)).is_ok());
    }

    #[test]
    fn a_lost_term_stays_lost_even_if_a_renewal_comes_back() {
        let start = Instant::now();
        let fence = Fence::new(term("a", 3), start + Duration::from_secs(10));
        fence.lose("the lease is held by b (lease transition 4)".into());
        fence.renewed(start + Duration::from_secs(60));
        let why = fence.check_at(start).unwrap_err();
        assert!(matches!(&why, Expired::Lost { term: t, .. } if *t == term("a", 3)), "{why}");
        assert_eq!(
            why.to_string(),
            "a (lease transition 3) no longer holds the lease: the lease is held by b (lease transition 4)"
        );
    }

    // ------------------------------------------------------------ journals under a fence

    use crate::engine::journal::{Journal, JournalError, Opened};
    use flightdeck_core::plan::Plan;
    use flightdeck_core::rollout::{step, Event, Rollout};
    use flightdeck_core::time::Timestamp;

    const PLAN: &str = "[rollout]\nname = \"checkout\"\nstable = \"v1\"\ncanary = \"v2\"\n\n\
                        [[strategy.stages]]\nweight = 10\nbake = \"1m\"\n\n[[strategy.stages]]\nweight = 50\n\
                        bake = \"1m\"\n\n[[strategy.stages]]\nweight = 100\nbake = \"0s\"\n";

    fn open(dir: &std::path::Path, fence: &Fence) -> Result<Opened, JournalError> {
        let plan = Plan::parse("p.toml", PLAN).expect("plan parses");
        Journal::open_fenced(dir, "checkout", &plan, "p.toml", PLAN, None, false, Some(fence.clone()))
    }

    fn holding(holder: &str, transitions: u64) -> Fence {
        Fence::new(term(holder, transitions), Instant::now() + Duration::from_secs(600))
    }

    fn promote(stage: usize) -> Event {
        // As the wire and the journal spell it (the fields not named here have defaults).
        let request = serde_json::json!({
            "actor": "alice", "command": {"command": "promote"}, "expected_stage": stage, "expected_revision": "v2",
        });
        Event::Command(serde_json::from_value(request).expect("a promote parses"))
    }

    fn append(j: &mut Journal, r: &Rollout, at: u64, e: Event) -> Rollout {
        let next = step(r, e.clone(), Timestamp(at)).0;
        j.append(Timestamp(at), &e, &next).expect("the term holds");
        next
    }

    #[test]
    fn every_record_carries_the_term_it_was_written_in() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path(), &holding("flightdeck-0", 7)).unwrap();
        let mut j = opened.journal;
        append(&mut j, &opened.rollout, 0, Event::Start);
        let text = std::fs::read_to_string(j.path()).unwrap();
        let record: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(record["lease"], serde_json::json!({"holder": "flightdeck-0", "transitions": 7}));
    }

    #[test]
    fn a_journal_is_neither_opened_nor_written_once_the_term_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let fence = holding("a", 1);
        let opened = open(dir.path(), &fence).unwrap();
        let mut j = opened.journal;
        let started = append(&mut j, &opened.rollout, 0, Event::Start);
        let before = std::fs::read_to_string(j.path()).unwrap();
        fence.lose("the lease is held by b (lease transition 2)".into());
        let next = step(&started, promote(0), Timestamp(1_000)).0;
        let err = j.append(Timestamp(1_000), &promote(0), &next).unwrap_err();
        assert!(matches!(err, JournalError::Fenced { .. }), "{err}");
        assert!(err.to_string().contains("a (lease transition 1) no longer holds the lease"), "{err}");
        assert!(!err.is_refusal(), "a fenced write is not the user's to settle");
        assert_eq!(std::fs::read_to_string(j.path()).unwrap(), before, "nothing was written");
        assert!(j.fence_check().is_err());
        drop(j);
        let expired = Fence::new(term("a", 1), Instant::now());
        assert!(matches!(open(dir.path(), &expired), Err(JournalError::Fenced { .. })));
    }

    #[test]
    fn a_deposed_holders_late_record_is_refused_on_resume_and_the_new_holders_run_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        // a drives stage 1, then pauses (SIGSTOP) with its journal open.
        let a = open(dir.path(), &holding("a", 1)).unwrap();
        let mut a_journal = a.journal;
        let at_a = append(&mut a_journal, &a.rollout, 0, Event::Start);
        // b takes the lease, resumes and promotes to stage 2; no advisory lock stops it.
        let b = open(dir.path(), &holding("b", 2)).unwrap();
        assert_eq!(b.rollout, at_a, "b resumes where a was");
        let mut b_journal = b.journal;
        let at_b = append(&mut b_journal, &b.rollout, 1_000, promote(0));
        // a wakes and, before its fence noticed, writes what it was about to (a promote too).
        append(&mut a_journal, &at_a, 1_500, promote(0));
        let at_b = append(&mut b_journal, &at_b, 2_000, promote(1));
        drop((a_journal, b_journal));
        // The next holder resumes b's run: a's late record is not replayed.
        let c = open(dir.path(), &holding("c", 3)).unwrap();
        assert_eq!(c.rollout, at_b);
        assert_eq!(c.rollout.stage, 2);
        let parsed = super::super::read::read(c.journal.path()).unwrap();
        assert_eq!(parsed.fenced_out.len(), 1, "{:?}", parsed.fenced_out);
        let (line, why) = &parsed.fenced_out[0];
        assert_eq!(*line, 4, "header, a's start, b's promote, then a's late record");
        assert!(
            why.starts_with("written by a (lease transition 1) after b (lease transition 2) took the lease (line 3)")
        );
        // What verify says of the journal: sound, b's records replayed.
        let verified = super::super::verify(c.journal.path()).unwrap();
        assert_eq!(verified.rollout.stage, 2);
    }
}

#[cfg(test)]
mod backend_tests {
    use super::*;
    use crate::backend::{Backend, BackendError};
    use flightdeck_core::plan::Plan;
    use flightdeck_core::rollout::{Effect, Observation, Version};
    use std::sync::Arc;
    use std::time::Duration;

    /// Reads the canary at 0 % and records what it is asked to apply; a
    /// read-back can lose the fence meanwhile (the process paused in it).
    struct Recording {
        applied: Mutex<Vec<String>>,
        lose_during_read: Option<Fence>,
    }

    #[async_trait::async_trait]
    impl Backend for Recording {
        fn name(&self) -> String {
            "recording".into()
        }
        async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
            self.applied.lock().unwrap().push(effect.to_string());
            Ok(())
        }
        async fn observe(&self) -> Result<Observation, BackendError> {
            if let Some(fence) = &self.lose_during_read {
                fence.lose("the lease is held by b (lease transition 2)".into());
            }
            Ok(Observation { canary_weight: Some(0), ..Default::default() })
        }
    }

    fn strategy() -> flightdeck_core::plan::Strategy {
        let text = "[rollout]\nname = \"c\"\nstable = \"v1\"\ncanary = \"v2\"\n\n[[strategy.stages]]\nweight = 100\nbake = \"0s\"\n";
        Plan::parse("p.toml", text).expect("plan parses").strategy
    }

    fn fenced(lose_during_read: bool) -> (Arc<Recording>, FencedBackend, Fence) {
        let fence = Fence::new(Term { holder: "a".into(), transitions: 1 }, Instant::now() + Duration::from_secs(600));
        let inner = Arc::new(Recording {
            applied: Mutex::default(),
            lose_during_read: lose_during_read.then(|| fence.clone()),
        });
        (inner.clone(), FencedBackend::new(inner, fence.clone()), fence)
    }

    const SCALE_CANARY_DOWN: Effect = Effect::Scale { version: Version::Canary, percent: 0 };

    #[tokio::test]
    async fn an_effect_goes_to_the_backend_while_the_term_holds() {
        let (inner, backend, _) = fenced(false);
        backend.apply_guarded(&SCALE_CANARY_DOWN, &strategy()).await.unwrap();
        assert_eq!(inner.applied.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_term_lost_during_the_guarding_read_back_sends_nothing() {
        let (inner, backend, _) = fenced(true);
        let err = backend.apply_guarded(&SCALE_CANARY_DOWN, &strategy()).await.unwrap_err();
        assert!(err.to_string().contains("not sent: a (lease transition 1) no longer holds the lease"), "{err}");
        assert!(inner.applied.lock().unwrap().is_empty(), "the effect went out after the term ended");
    }

    #[tokio::test]
    async fn a_term_past_its_renew_deadline_sends_nothing() {
        let (inner, backend, fence) = fenced(false);
        fence.state.lock().unwrap().valid_until = Instant::now();
        let err = backend.apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err();
        assert!(err.to_string().contains("did not renew the lease within its renew deadline"), "{err}");
        assert!(inner.applied.lock().unwrap().is_empty());
    }
}
