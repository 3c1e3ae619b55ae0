//! Traffic routers for the weights flightdeck sets on two Deployments:
//! Gateway API `HTTPRoute` backendRef weights and Istio `VirtualService`
//! route weights.
//!
//! A JSON merge patch replaces lists whole, so setting a weight reads the
//! route, changes the weights of the stable and canary entries in every rule
//! that has both, and sends the whole rule list back with the
//! `resourceVersion` it read: a route changed in between answers 409
//! Conflict instead of being overwritten.

use super::{at, dynamic_api, resource_name, send_patch, timed, CallSite, PatchCall};
use crate::backend::BackendError;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{json, Value};

/// Which API carries the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    /// `gateway.networking.k8s.io/v1` HTTPRoute.
    Gateway,
    /// `networking.istio.io/v1` VirtualService.
    Istio,
}

impl RouterKind {
    pub fn parse(name: &str) -> Result<RouterKind, String> {
        match name {
            "gateway" => Ok(RouterKind::Gateway),
            "istio" => Ok(RouterKind::Istio),
            other => Err(format!("target.router: `{other}` is not a router; use \"gateway\" or \"istio\"")),
        }
    }

    pub fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            RouterKind::Gateway => ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
            RouterKind::Istio => ("networking.istio.io", "v1", "VirtualService", "virtualservices"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// The list of rules and, in each, the list of weighted destinations.
    fn paths(self) -> (&'static str, &'static str) {
        match self {
            RouterKind::Gateway => ("rules", "backendRefs"),
            RouterKind::Istio => ("http", "route"),
        }
    }
}

/// One side of the split: a Service (backendRef name or destination host),
/// optionally narrowed to an Istio subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub service: String,
    pub subset: Option<String>,
}

impl Side {
    fn matches(&self, kind: RouterKind, entry: &Value) -> bool {
        match kind {
            RouterKind::Gateway => entry["name"].as_str() == Some(self.service.as_str()),
            RouterKind::Istio => match &self.subset {
                Some(subset) => entry["destination"]["subset"].as_str() == Some(subset.as_str()),
                None => entry["destination"]["host"].as_str() == Some(self.service.as_str()),
            },
        }
    }
}

/// The merge patch that gives the canary `canary_weight` % (stable the rest)
/// in every rule naming both sides; an error when no rule names both.
pub fn weight_patch(
    kind: RouterKind,
    route: &Value,
    stable: &Side,
    canary: &Side,
    canary_weight: u8,
) -> Result<Value, String> {
    let (rules_key, refs_key) = kind.paths();
    let mut rules = at(route, &["spec", rules_key]).as_array().cloned().unwrap_or_default();
    let weight = u64::from(canary_weight.min(100));
    let mut changed = 0;
    for rule in rules.iter_mut() {
        let Some(refs) = rule.get_mut(refs_key).and_then(Value::as_array_mut) else { continue };
        if !(refs.iter().any(|r| stable.matches(kind, r)) && refs.iter().any(|r| canary.matches(kind, r))) {
            continue;
        }
        for entry in refs.iter_mut() {
            if canary.matches(kind, entry) {
                entry["weight"] = json!(weight);
            } else if stable.matches(kind, entry) {
                entry["weight"] = json!(100 - weight);
            }
        }
        changed += 1;
    }
    if changed == 0 {
        return Err(format!("no rule routes to both {} and {}", stable.service, canary.service));
    }
    let version = at(route, &["metadata", "resourceVersion"]).clone();
    Ok(json!({"metadata": {"resourceVersion": version}, "spec": {rules_key: rules}}))
}

/// The canary's share (percent) in the first rule naming both sides. Gateway
/// API weights default to 1; an Istio route without weights sends everything
/// to its single destination.
pub fn read_weight(kind: RouterKind, route: &Value, stable: &Side, canary: &Side) -> Option<u8> {
    let (rules_key, refs_key) = kind.paths();
    let rules = at(route, &["spec", rules_key]).as_array()?;
    rules.iter().find_map(|rule| {
        let refs = rule[refs_key].as_array()?;
        let weight_of = |side: &Side| {
            let entry = refs.iter().find(|r| side.matches(kind, r))?;
            let default = match kind {
                RouterKind::Gateway => 1,
                RouterKind::Istio => u64::from(refs.len() == 1) * 100,
            };
            Some(entry["weight"].as_u64().unwrap_or(default))
        };
        let (s, c) = (weight_of(stable)?, weight_of(canary)?);
        let total = s + c;
        Some((c * 100 + total / 2).checked_div(total).unwrap_or(0).min(100) as u8)
    })
}

/// A route object flightdeck sets weights on.
pub struct Router {
    pub kind: RouterKind,
    api: Api<DynamicObject>,
    route: String,
    pub stable: Side,
    pub canary: Side,
}

impl Router {
    pub fn new(
        client: &Client,
        namespace: &str,
        kind: RouterKind,
        route: String,
        stable: Side,
        canary: Side,
    ) -> Router {
        Router { kind, api: dynamic_api(client, namespace, &kind.resource()), route, stable, canary }
    }

    /// "httproutes.gateway.networking.k8s.io/checkout".
    pub fn what(&self) -> String {
        resource_name(&self.kind.resource(), &self.route)
    }

    async fn fetch(&self, site: &CallSite<'_>) -> Result<Value, BackendError> {
        let route = timed(self.api.get(&self.route)).await.map_err(|e| site.error("get", &self.what(), e))?;
        Ok(serde_json::to_value(route).unwrap_or(Value::Null))
    }

    /// Sends `canary_weight` % to the canary, the rest to stable.
    pub async fn set_weight(&self, site: &CallSite<'_>, canary_weight: u8) -> Result<(), BackendError> {
        let route = self.fetch(site).await?;
        let body = weight_patch(self.kind, &route, &self.stable, &self.canary, canary_weight).map_err(|detail| {
            BackendError::Refused {
                backend: site.backend.to_owned(),
                action: format!("{} ({})", site.verb, self.what()),
                detail,
            }
        })?;
        send_patch(&self.api, &self.route, &PatchCall::merge(body))
            .await
            .map_err(|e| site.error("patch", &self.what(), e))
    }

    /// The canary weight configured on the route now.
    pub async fn canary_weight(&self, site: &CallSite<'_>) -> Result<Option<u8>, BackendError> {
        let route = self.fetch(site).await?;
        Ok(read_weight(self.kind, &route, &self.stable, &self.canary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(service: &str) -> Side {
        Side { service: service.into(), subset: None }
    }

    #[test]
    fn gateway_weights_are_set_in_rules_with_both_sides_only() {
        let route = json!({"metadata": {"resourceVersion": "7"}, "spec": {"rules": [
            {"backendRefs": [{"name": "web-stable", "port": 80}, {"name": "web-canary", "port": 80, "weight": 0}]},
            {"backendRefs": [{"name": "docs", "port": 80}]},
        ]}});
        let patch = weight_patch(RouterKind::Gateway, &route, &side("web-stable"), &side("web-canary"), 10).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(patch["spec"]["rules"][0]["backendRefs"][0]["weight"], 90);
        assert_eq!(patch["spec"]["rules"][0]["backendRefs"][1]["weight"], 10);
        assert_eq!(patch["spec"]["rules"][1], route["spec"]["rules"][1]);
        let err = weight_patch(RouterKind::Gateway, &route, &side("a"), &side("b"), 10).unwrap_err();
        assert_eq!(err, "no rule routes to both a and b");
    }

    #[test]
    fn weights_read_back_as_the_canary_share() {
        let route =
            json!({"spec": {"rules": [{"backendRefs": [{"name": "s", "weight": 3}, {"name": "c", "weight": 1}]}]}});
        assert_eq!(read_weight(RouterKind::Gateway, &route, &side("s"), &side("c")), Some(25));
        let unset = json!({"spec": {"rules": [{"backendRefs": [{"name": "s"}, {"name": "c"}]}]}});
        assert_eq!(read_weight(RouterKind::Gateway, &unset, &side("s"), &side("c")), Some(50));
        let subsets = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 80},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 20},
        ]}]}});
        let stable = Side { service: "web".into(), subset: Some("stable".into()) };
        let canary = Side { service: "web".into(), subset: Some("canary".into()) };
        assert_eq!(read_weight(RouterKind::Istio, &subsets, &stable, &canary), Some(20));
    }
}
