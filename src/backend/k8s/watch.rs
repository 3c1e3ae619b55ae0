//! Keeps the latest copy of one object with `kube::runtime::watcher` and a
//! reflector store. Dropped connections, `410 Gone` (expired resource
//! versions) and API errors are retried by the watcher itself with its
//! default backoff (exponential from 0.8 s to 30 s, with jitter): no
//! hand-rolled loop. While the last attempt failed, [`ObjectWatch::trouble`]
//! says why, so the cockpit can show it until the watch is back.

use futures::{FutureExt, StreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// How the watch is doing, for banners and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchHealth {
    /// The error of the last attempt, cleared by the next event that arrives.
    pub trouble: Option<String>,
    /// The API server's status code of that error, when it answered one
    /// (403: RBAC forbids the watch; no retry will fix that).
    pub trouble_code: Option<u16>,
    /// Errors seen so far (each one retried).
    pub errors: u64,
    /// Events applied to the store so far.
    pub events: u64,
}

/// A running watch of one named object; stops when dropped.
pub struct ObjectWatch {
    store: Store<DynamicObject>,
    health: Arc<Mutex<WatchHealth>>,
    task: JoinHandle<()>,
}

impl ObjectWatch {
    /// Starts watching the object `name` of `api` (must run inside a tokio runtime).
    pub fn spawn(api: Api<DynamicObject>, resource: ApiResource, name: &str, label: String) -> ObjectWatch {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        ObjectWatch::spawn_set(api, resource, config, label)
    }

    /// Starts watching every object of `api` that `config` selects (the
    /// ReplicaSets, pods and AnalysisRuns of a Rollout).
    pub fn spawn_set(
        api: Api<DynamicObject>,
        resource: ApiResource,
        config: watcher::Config,
        label: String,
    ) -> ObjectWatch {
        let writer = Writer::new(resource);
        let store = writer.as_reader();
        let health = Arc::new(Mutex::new(WatchHealth::default()));
        let stream = watcher(api, config).default_backoff().reflect(writer);
        let task = tokio::spawn(follow(stream, health.clone(), label));
        ObjectWatch { store, health, task }
    }

    /// The latest copy, once the first list has arrived.
    pub fn latest(&self) -> Option<Arc<DynamicObject>> {
        self.store.state().into_iter().next()
    }

    /// Every object in the store; `None` until the first list has arrived.
    pub fn all(&self) -> Option<Vec<Arc<DynamicObject>>> {
        self.store.wait_until_ready().now_or_never().map(|_| self.store.state())
    }

    /// Why the watch is down right now, if it is.
    pub fn trouble(&self) -> Option<String> {
        self.health().trouble
    }

    pub fn health(&self) -> WatchHealth {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl Drop for ObjectWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Drives the watch stream; the store is updated by the reflector on the way.
async fn follow<S>(stream: S, health: Arc<Mutex<WatchHealth>>, label: String)
where
    S: futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let Ok(mut h) = health.lock() else { return };
        match item {
            Ok(_) => {
                h.trouble_code = None;
                if h.trouble.take().is_some() {
                    tracing::info!("watch of {label} is back");
                }
                h.events += 1;
            }
            Err(e) => {
                let message = describe(&e);
                tracing::warn!("watch of {label} interrupted: {message}; retrying with backoff");
                h.errors += 1;
                h.trouble = Some(message);
                h.trouble_code = code(&e);
            }
        }
    }
}

/// The HTTP status the API server answered, if it did.
fn code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        _ => None,
    }
}

/// The watcher's error in words ("410 Gone: too old resource version").
fn describe(e: &watcher::Error) -> String {
    match e {
        watcher::Error::WatchError(status) => format!("{} {}: {}", status.code, status.reason, status.message),
        other => other.to_string(),
    }
}
