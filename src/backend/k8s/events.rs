//! A controller's Kubernetes Events about the object flightdeck follows,
//! for the event log. Flagger writes every decision and failure reason
//! there (pkg/controller/events.go: `recordEventInfof`, `…Warningf`,
//! `…Errorf` record `Synced` events of type Normal or Warning on the
//! Canary), which is what `kubectl describe canary` shows.
//!
//! Read as `kubectl describe` reads them: core/v1 Events in the object's
//! namespace whose `involvedObject` is it (field selector on kind and name).
//! Each event is told once: a reading reports those it has not seen (by
//! uid and `count`, which the recorder bumps when it folds a repeat in);
//! the first reading of a run reports only the newest few.

use super::{dynamic_api, timed, CallError};
use flightdeck_core::tree::NativeEvent;
use k8s_openapi::api::core::v1::Event;
use kube::api::{ApiResource, ListParams};
use kube::Client;
use serde_json::Value;
use std::collections::HashSet;

/// How many of the events already there a run's first reading tells.
pub const FIRST_READING: usize = 5;

/// Which events have been told, and whether anything has been read yet.
#[derive(Debug, Default)]
pub struct Told {
    seen: Option<HashSet<(String, i64)>>,
}

/// Lists the events about `kind`/`name` in `namespace`.
pub async fn list(client: &Client, namespace: &str, kind: &str, name: &str) -> Result<Vec<Value>, CallError> {
    let api = dynamic_api(client, namespace, &ApiResource::erase::<Event>(&()));
    let fields = format!("involvedObject.kind={kind},involvedObject.name={name}");
    let list = timed(api.list(&ListParams::default().fields(&fields))).await?;
    Ok(list.items.into_iter().filter_map(|e| serde_json::to_value(e).ok()).collect())
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// When it last happened: `lastTimestamp`, else `eventTime`, else `firstTimestamp`
/// (RFC 3339 in UTC, so they sort as text).
fn last_seen(event: &Value) -> &str {
    ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .map(|k| text(event, k))
        .find(|t| !t.is_empty())
        .unwrap_or("")
}

fn key(event: &Value) -> (String, i64) {
    let uid = event["metadata"]["uid"].as_str().or(event["metadata"]["name"].as_str()).unwrap_or("");
    (uid.to_owned(), event["count"].as_i64().unwrap_or(1))
}

/// "flagger: Rolling back podinfo.test failed checks threshold reached 10"
/// (" (×4)" when the recorder folded repeats in).
fn told(event: &Value) -> NativeEvent {
    let source = event["source"]["component"].as_str().or(event["reportingComponent"].as_str()).unwrap_or("");
    let source = if source.is_empty() { text(event, "reason").to_owned() } else { source.to_owned() };
    let count = event["count"].as_i64().unwrap_or(1);
    let times = if count > 1 { format!(" (×{count})") } else { String::new() };
    NativeEvent {
        warning: text(event, "type") == "Warning",
        text: format!("{source}: {}{times}", text(event, "message")),
    }
}

impl Told {
    /// The events of this listing not told yet, oldest first; remembers
    /// the listing (events the API server has expired are forgotten).
    pub fn news(&mut self, mut events: Vec<Value>) -> Vec<NativeEvent> {
        events.sort_by(|a, b| last_seen(a).cmp(last_seen(b)).then_with(|| key(a).cmp(&key(b))));
        let keys: HashSet<(String, i64)> = events.iter().map(key).collect();
        let news: Vec<NativeEvent> = match &self.seen {
            Some(seen) => events.iter().filter(|e| !seen.contains(&key(e))).map(told).collect(),
            None => events.iter().rev().take(FIRST_READING).rev().map(told).collect(),
        };
        self.seen = Some(keys);
        news
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(uid: &str, count: i64, at: &str, kind: &str, message: &str) -> Value {
        json!({"metadata": {"uid": uid}, "count": count, "lastTimestamp": at, "type": kind, "reason": "Synced",
               "message": message, "source": {"component": "flagger"}})
    }

    #[test]
    fn each_event_is_told_once_and_a_folded_repeat_again() {
        let mut told = Told::default();
        let first = vec![
            event("b", 1, "2026-12-01T10:01:00Z", "Normal", "Advance podinfo.test canary weight 5"),
            event("a", 1, "2026-12-01T10:00:00Z", "Normal", "Starting canary analysis for podinfo.test"),
        ];
        let texts = |e: Vec<NativeEvent>| e.into_iter().map(|e| e.text).collect::<Vec<_>>();
        assert_eq!(
            texts(told.news(first.clone())),
            ["flagger: Starting canary analysis for podinfo.test", "flagger: Advance podinfo.test canary weight 5"]
        );
        assert!(told.news(first.clone()).is_empty());
        let mut later = first;
        later[0]["count"] = json!(2);
        assert_eq!(texts(told.news(later)), ["flagger: Advance podinfo.test canary weight 5 (×2)"]);
    }
}
