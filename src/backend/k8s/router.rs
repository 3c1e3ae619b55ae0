//! Traffic routers for the weights flightdeck sets on two Deployments:
//! Gateway API `HTTPRoute` backendRef weights and Istio `VirtualService`
//! route weights.
//!
//! A JSON merge patch replaces lists whole, so setting a weight reads the
//! route, changes the weights of the stable and canary entries in every rule
//! that has both, and sends the whole rule list back with the
//! `resourceVersion` it read: a route changed in between answers 409
//! Conflict instead of being overwritten.
//!
//! Istio serves VirtualServices as `v1` only since 1.22 (`v1beta1` since
//! 1.8, `v1alpha3` always): the version is discovered from the API group
//! (`GET /apis/networking.istio.io`) the first time the route is read,
//! preferring v1, then v1beta1, then v1alpha3. Destination hosts compare
//! the way Istio resolves them: a short name (`checkout`) or `name.ns` is
//! the Service `name.<ns>.svc.cluster.local`, `ns` being the
//! VirtualService's namespace for a short name.

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
    /// `networking.istio.io` VirtualService (version discovered).
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

    /// The route kind at its default version (Istio: v1; see [`istio_version`]).
    pub fn resource(self) -> ApiResource {
        match self {
            RouterKind::Gateway => self.at_version("v1"),
            RouterKind::Istio => self.at_version("v1"),
        }
    }

    fn at_version(self, version: &str) -> ApiResource {
        let (group, kind, plural) = match self {
            RouterKind::Gateway => ("gateway.networking.k8s.io", "HTTPRoute", "httproutes"),
            RouterKind::Istio => ("networking.istio.io", "VirtualService", "virtualservices"),
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
    /// `namespace`: the route's own, which qualifies Istio's short host names.
    fn matches(&self, kind: RouterKind, entry: &Value, namespace: &str) -> bool {
        match kind {
            RouterKind::Gateway => entry["name"].as_str() == Some(self.service.as_str()),
            RouterKind::Istio => {
                let host = entry["destination"]["host"].as_str().unwrap_or_default();
                let same_host = fqdn(host, namespace) == fqdn(&self.service, namespace);
                match &self.subset {
                    // A subset names one side only together with its host (two
                    // Services may both have a "canary" subset).
                    Some(subset) => {
                        entry["destination"]["subset"].as_str() == Some(subset.as_str())
                            && (same_host || self.service.is_empty())
                    }
                    None => same_host && entry["destination"]["subset"].is_null(),
                }
            }
        }
    }
}

/// A Service host as Istio resolves it: `name` and `name.ns` are
/// Kubernetes Services (`name.ns.svc.cluster.local`), `….svc` gets the
/// cluster domain; anything else is already a full name.
pub fn fqdn(host: &str, namespace: &str) -> String {
    let host = host.trim_end_matches('.');
    match host.split('.').count() {
        1 => format!("{host}.{namespace}.svc.cluster.local"),
        2 => format!("{host}.svc.cluster.local"),
        _ if host.ends_with(".svc") => format!("{host}.cluster.local"),
        _ => host.to_owned(),
    }
}

/// The VirtualService version to use among those the API group serves.
pub fn istio_version(served: &[&str]) -> Option<&'static str> {
    ["v1", "v1beta1", "v1alpha3"].into_iter().find(|v| served.contains(v))
}

fn route_namespace(route: &Value) -> &str {
    at(route, &["metadata", "namespace"]).as_str().unwrap_or("default")
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
    let ns = route_namespace(route);
    let mut rules = at(route, &["spec", rules_key]).as_array().cloned().unwrap_or_default();
    let weight = u64::from(canary_weight.min(100));
    let mut changed = 0;
    for rule in rules.iter_mut() {
        let Some(refs) = rule.get_mut(refs_key).and_then(Value::as_array_mut) else { continue };
        if !(refs.iter().any(|r| stable.matches(kind, r, ns)) && refs.iter().any(|r| canary.matches(kind, r, ns))) {
            continue;
        }
        for entry in refs.iter_mut() {
            if canary.matches(kind, entry, ns) {
                entry["weight"] = json!(weight);
            } else if stable.matches(kind, entry, ns) {
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
    let ns = route_namespace(route);
    let rules = at(route, &["spec", rules_key]).as_array()?;
    rules.iter().find_map(|rule| {
        let refs = rule[refs_key].as_array()?;
        let weight_of = |side: &Side| {
            let entry = refs.iter().find(|r| side.matches(kind, r, ns))?;
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
    client: Client,
    namespace: String,
    /// The route's API, at the version the cluster serves (found once).
    api: tokio::sync::OnceCell<(ApiResource, Api<DynamicObject>)>,
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
        let api = tokio::sync::OnceCell::new();
        Router { kind, client: client.clone(), namespace: namespace.to_owned(), api, route, stable, canary }
    }

    /// "httproutes.gateway.networking.k8s.io/checkout".
    pub fn what(&self) -> String {
        resource_name(&self.kind.resource(), &self.route)
    }

    /// The route's API; for Istio the VirtualService version the API group serves.
    async fn api(&self, site: &CallSite<'_>) -> Result<&Api<DynamicObject>, BackendError> {
        let found = self
            .api
            .get_or_try_init(|| async {
                let resource = match self.kind {
                    RouterKind::Gateway => self.kind.resource(),
                    RouterKind::Istio => self.kind.at_version(self.istio_served(site).await?),
                };
                let api = dynamic_api(&self.client, &self.namespace, &resource);
                Ok::<_, BackendError>((resource, api))
            })
            .await?;
        Ok(&found.1)
    }

    async fn istio_served(&self, site: &CallSite<'_>) -> Result<&'static str, BackendError> {
        let request = http::Request::get("/apis/networking.istio.io")
            .body(Vec::new())
            .map_err(|e| site.error("get", "/apis/networking.istio.io", super::CallError::Transport(e.to_string())))?;
        let group: Value = timed(self.client.request(request))
            .await
            .map_err(|e| site.error("get", "/apis/networking.istio.io (is Istio installed?)", e))?;
        let served: Vec<&str> =
            group["versions"].as_array().into_iter().flatten().filter_map(|v| v["version"].as_str()).collect();
        istio_version(&served).ok_or_else(|| BackendError::Refused {
            backend: site.backend.to_owned(),
            action: format!("{} ({})", site.verb, self.what()),
            detail: format!("networking.istio.io serves {served:?}, none of v1, v1beta1, v1alpha3"),
        })
    }

    async fn fetch(&self, site: &CallSite<'_>) -> Result<Value, BackendError> {
        let api = self.api(site).await?;
        let route = timed(api.get(&self.route)).await.map_err(|e| site.error("get", &self.what(), e))?;
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
        send_patch(self.api(site).await?, &self.route, &PatchCall::merge(body))
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
    fn istio_hosts_match_short_names_and_fqdns_in_the_routes_namespace() {
        // Regression: "checkout.prod.svc.cluster.local" against "checkout" gave "no rule routes to both".
        let route = json!({"metadata": {"namespace": "prod", "resourceVersion": "1"}, "spec": {"http": [{"route": [
            {"destination": {"host": "checkout-stable.prod.svc.cluster.local"}, "weight": 100},
            {"destination": {"host": "checkout-canary.prod"}, "weight": 0},
        ]}]}});
        let patch = weight_patch(RouterKind::Istio, &route, &side("checkout-stable"), &side("checkout-canary"), 10);
        let http = &patch.unwrap()["spec"]["http"][0]["route"];
        assert_eq!((http[0]["weight"].as_u64(), http[1]["weight"].as_u64()), (Some(90), Some(10)));
        // The same short name in another namespace is another Service.
        let elsewhere = json!({"metadata": {"namespace": "prod"}, "spec": {"http": [{"route": [
            {"destination": {"host": "checkout-stable.staging.svc.cluster.local"}},
            {"destination": {"host": "checkout-canary"}},
        ]}]}});
        assert!(weight_patch(RouterKind::Istio, &elsewhere, &side("checkout-stable"), &side("checkout-canary"), 10)
            .is_err());
        assert_eq!(fqdn("web", "prod"), "web.prod.svc.cluster.local");
        assert_eq!(fqdn("web.shop", "prod"), "web.shop.svc.cluster.local");
        assert_eq!(fqdn("web.shop.svc", "prod"), "web.shop.svc.cluster.local");
        assert_eq!(fqdn("api.example.com", "prod"), "api.example.com");
    }

    #[test]
    fn the_newest_served_istio_version_is_used() {
        assert_eq!(istio_version(&["v1alpha3", "v1beta1", "v1"]), Some("v1"));
        assert_eq!(istio_version(&["v1alpha3", "v1beta1"]), Some("v1beta1"));
        assert_eq!(istio_version(&["v1alpha3"]), Some("v1alpha3"));
        assert_eq!(istio_version(&["v2"]), None);
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
