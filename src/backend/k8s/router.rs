//! Traffic routers for the weights flightdeck sets on two Deployments:
//! Gateway API `HTTPRoute` backendRef weights and Istio `VirtualService`
//! route weights.
//!
//! Setting a weight reads the route and sends a JSON patch (RFC 6902) that
//! `test`s the `resourceVersion` it read and `add`s the `weight` of the two
//! entries flightdeck owns, nothing else: other rules, matches, filters and
//! destinations stay as they are, and a route changed in between fails the
//! test (422) and is read again (up to [`ROUTE_ATTEMPTS`] times) instead of
//! being overwritten.
//!
//! The rule flightdeck owns: those named by `route_rules` (HTTPRoute
//! `rules[].name`, VirtualService `http[].name`, as Argo Rollouts'
//! `virtualService.routes`), or else the one rule that routes to both
//! sides. Refused with the reason ([`owned_rules`]): a named rule missing
//! or without both sides, more than one rule with both sides and no
//! names (a header-matched or tester-pinned rule is someone else's), a
//! side matching two entries of one rule (set its port), and a third
//! destination in an owned rule (flightdeck splits between two).
//!
//! Gateway API backendRefs match a side as the spec defaults them
//! (BackendObjectReference): `group` "" (core), `kind` Service,
//! `namespace` the route's, the Service's `name`, and `port` when the
//! side names one.
//!
//! Istio serves VirtualServices as `v1` only since 1.22 (`v1beta1` since
//! 1.8, `v1alpha3` always): the version is discovered from the API group
//! (`GET /apis/networking.istio.io`) the first time the route is read,
//! preferring v1, then v1beta1, then v1alpha3. Destination hosts compare
//! the way Istio resolves them (pkg/config/model.go
//! `ResolveShortnameToFQDN`): a name without a dot (`checkout`) is the
//! Service `checkout.<ns>.svc.<domain>` (`ns` the VirtualService's,
//! `domain` the target's `cluster_domain`, default `cluster.local`); a name
//! with a dot is taken as written (`checkout.prod` is not
//! `checkout.prod.svc.cluster.local` to Istio). A side with a subset
//! matches that subset of its host only; one without matches only
//! destinations without a subset; a side with a port matches
//! `destination.port.number`.

use super::{at, dynamic_api, resource_name, send_patch, timed, CallError, CallSite, PatchCall};
use crate::backend::BackendError;
use flightdeck_core::plan::params::ParamError;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch};
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
    pub fn parse(name: &str) -> Result<RouterKind, ParamError> {
        match name {
            "gateway" => Ok(RouterKind::Gateway),
            "istio" => Ok(RouterKind::Istio),
            other => Err(ParamError::new("router", format!("`{other}` is not a router; use \"gateway\" or \"istio\""))),
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
/// optionally narrowed to an Istio subset and to a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub service: String,
    pub subset: Option<String>,
    /// The backendRef's `port` / the destination's `port.number`, when two
    /// entries of a rule name the same Service.
    pub port: Option<u64>,
}

/// Where a route lives, which qualifies the names in it.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The route's namespace: a backendRef's default, Istio's short names'.
    pub namespace: &'a str,
    /// The cluster's DNS domain (`cluster.local` unless the cluster says otherwise).
    pub domain: &'a str,
}

impl Side {
    pub fn new(service: &str) -> Side {
        Side { service: service.to_owned(), subset: None, port: None }
    }

    fn matches(&self, kind: RouterKind, entry: &Value, scope: Scope) -> bool {
        match kind {
            // gateway.networking.k8s.io BackendObjectReference: group "" and kind Service by default,
            // namespace the route's.
            RouterKind::Gateway => {
                entry["group"].as_str().unwrap_or("").is_empty()
                    && entry["kind"].as_str().unwrap_or("Service") == "Service"
                    && entry["namespace"].as_str().unwrap_or(scope.namespace) == scope.namespace
                    && entry["name"].as_str() == Some(self.service.as_str())
                    && self.port.is_none_or(|p| entry["port"].as_u64() == Some(p))
            }
            RouterKind::Istio => {
                let destination = &entry["destination"];
                let host = destination["host"].as_str().unwrap_or_default();
                let same_host = fqdn(host, scope) == fqdn(&self.service, scope);
                // A subset names one side only together with its host (two
                // Services may both have a "canary" subset).
                let same_subset = destination["subset"].as_str() == self.subset.as_deref();
                let same_port = self.port.is_none_or(|p| destination["port"]["number"].as_u64() == Some(p));
                same_host && same_subset && same_port
            }
        }
    }

    /// "checkout-canary", "checkout (subset canary)", "checkout-canary port 8080".
    fn shown(&self) -> String {
        let mut out = self.service.clone();
        if let Some(subset) = &self.subset {
            out.push_str(&format!(" (subset {subset})"));
        }
        if let Some(port) = self.port {
            out.push_str(&format!(" port {port}"));
        }
        out
    }
}

/// A Service host as Istio resolves it (pkg/config/model.go
/// `ResolveShortnameToFQDN`): a name without a dot is the Service of that
/// name in the route's namespace (`name.<ns>.svc.<domain>`); a name with a
/// dot is already full.
pub fn fqdn(host: &str, scope: Scope) -> String {
    if host.is_empty() || host == "*" || host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_owned();
    }
    format!("{host}.{}.svc.{}", scope.namespace, scope.domain)
}

/// The VirtualService version to use among those the API group serves.
pub fn istio_version(served: &[&str]) -> Option<&'static str> {
    ["v1", "v1beta1", "v1alpha3"].into_iter().find(|v| served.contains(v))
}

fn route_namespace(route: &Value) -> &str {
    at(route, &["metadata", "namespace"]).as_str().unwrap_or("default")
}

/// What flightdeck sets weights on: the two sides and the rules it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub stable: Side,
    pub canary: Side,
    /// The rules to edit, by name (`route_rules`); empty: the one rule that
    /// routes to both sides.
    pub rules: Vec<String>,
    /// The cluster's DNS domain, for Istio's short host names.
    pub domain: String,
}

/// One rule flightdeck owns: its index and, in it, the stable and canary entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub rule: usize,
    pub stable: usize,
    pub canary: usize,
}

/// "rule 2 \"header-test\"" (1-based, with its name when it has one).
fn rule_label(index: usize, rule: &Value) -> String {
    match rule["name"].as_str() {
        Some(name) => format!("rule {} \"{name}\"", index + 1),
        None => format!("rule {}", index + 1),
    }
}

/// The entries of one rule that match the stable side and the canary side, and all its entries.
fn entries_of<'r>(
    kind: RouterKind,
    rule: &'r Value,
    refs_key: &str,
    split: &Split,
    scope: Scope,
) -> (Vec<usize>, Vec<usize>, &'r [Value]) {
    let refs = rule[refs_key].as_array().map_or(&[][..], Vec::as_slice);
    let of = |side: &Side| -> Vec<usize> {
        refs.iter().enumerate().filter(|(_, r)| side.matches(kind, r, scope)).map(|(i, _)| i).collect()
    };
    (of(&split.stable), of(&split.canary), refs)
}

/// The rules flightdeck owns in `route` and its two entries in each, or why
/// the route is ambiguous (see the module doc).
pub fn owned_rules<'r>(kind: RouterKind, route: &'r Value, split: &Split) -> Result<Vec<Owned>, String> {
    let (rules_key, refs_key) = kind.paths();
    let scope = Scope { namespace: route_namespace(route), domain: &split.domain };
    let rules = at(route, &["spec", rules_key]).as_array().map_or(&[][..], Vec::as_slice);
    let sides = |rule: &'r Value| entries_of(kind, rule, refs_key, split, scope);
    let both = |rule: &'r Value| {
        let (s, c, _) = sides(rule);
        !s.is_empty() && !c.is_empty()
    };
    let (stable, canary) = (split.stable.shown(), split.canary.shown());
    let chosen: Vec<usize> = if split.rules.is_empty() {
        let with_both: Vec<usize> = (0..rules.len()).filter(|i| both(&rules[*i])).collect();
        match with_both.as_slice() {
            [] => return Err(format!("no rule routes to both {stable} and {canary}{}", subset_hint(split))),
            [one] => vec![*one],
            many => {
                let shown: Vec<String> = many.iter().map(|i| rule_label(*i, &rules[*i])).collect();
                return Err(format!(
                    "{} all route to both {stable} and {canary}: name the rule flightdeck sets weights on with \
                     target.route_rules (the others, header-matched or pinned, are left alone)",
                    shown.join(", ")
                ));
            }
        }
    } else {
        let mut chosen = Vec::new();
        for name in &split.rules {
            match rules.iter().position(|r| r["name"].as_str() == Some(name.as_str())) {
                Some(i) => chosen.push(i),
                None => return Err(format!("target.route_rules: no rule named \"{name}\" in the route")),
            }
        }
        chosen
    };
    chosen
        .into_iter()
        .map(|i| {
            let label = rule_label(i, &rules[i]);
            let (s, c, refs) = sides(&rules[i]);
            let one = |found: &[usize], side: &str, which: &str| match found {
                [one] => Ok(*one),
                [] => Err(format!("{label} does not route to {side}{}", subset_hint(split))),
                _ => Err(format!(
                    "{label} routes to {side} {} times: set target.{which}_port (or a subset) to say which",
                    found.len()
                )),
            };
            let owned = Owned { rule: i, stable: one(&s, &stable, "stable")?, canary: one(&c, &canary, "canary")? };
            if owned.stable == owned.canary {
                return Err(format!("{label}: stable and canary are the same entry ({stable})"));
            }
            if let Some((_, other)) = refs.iter().enumerate().find(|(j, _)| *j != owned.stable && *j != owned.canary) {
                let what = match kind {
                    RouterKind::Gateway => other["name"].as_str().unwrap_or("?").to_owned(),
                    RouterKind::Istio => other["destination"]["host"].as_str().unwrap_or("?").to_owned(),
                };
                return Err(format!(
                    "{label} also routes to {what}: flightdeck splits a rule between two entries; move {what} to \
                     a rule of its own"
                ));
            }
            Ok(owned)
        })
        .collect()
}

/// The JSON patch that gives the canary `canary_weight` % (stable the rest)
/// in the rules flightdeck owns, after a `test` of the `resourceVersion`
/// read; or why the route is refused.
pub fn weight_ops(kind: RouterKind, route: &Value, split: &Split, canary_weight: u8) -> Result<Value, String> {
    let (rules_key, refs_key) = kind.paths();
    let weight = u64::from(canary_weight.min(100));
    let version = at(route, &["metadata", "resourceVersion"]).clone();
    let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": version})];
    for owned in owned_rules(kind, route, split)? {
        let at = |entry: usize| format!("/spec/{rules_key}/{}/{refs_key}/{entry}/weight", owned.rule);
        ops.push(json!({"op": "add", "path": at(owned.stable), "value": 100 - weight}));
        ops.push(json!({"op": "add", "path": at(owned.canary), "value": weight}));
    }
    Ok(Value::Array(ops))
}

/// The canary's share (percent) in the first rule flightdeck owns. Gateway
/// API weights default to 1; Istio's to 100 for a single destination.
pub fn read_weight(kind: RouterKind, route: &Value, split: &Split) -> Result<u8, String> {
    let (rules_key, refs_key) = kind.paths();
    let owned = owned_rules(kind, route, split)?[0];
    let refs = &at(route, &["spec", rules_key])[owned.rule][refs_key];
    let weight_of = |entry: usize| {
        let default = match kind {
            RouterKind::Gateway => 1,
            RouterKind::Istio => 0,
        };
        refs[entry]["weight"].as_u64().unwrap_or(default)
    };
    let (s, c) = (weight_of(owned.stable), weight_of(owned.canary));
    let total = s + c;
    Ok((c * 100 + total / 2).checked_div(total).unwrap_or(0).min(100) as u8)
}

/// How often a weight change reads the route again after it changed under it.
pub const ROUTE_ATTEMPTS: u32 = 3;

/// A route object flightdeck sets weights on.
pub struct Router {
    pub kind: RouterKind,
    client: Client,
    namespace: String,
    /// The route's API, at the version the cluster serves (found once).
    api: tokio::sync::OnceCell<(ApiResource, Api<DynamicObject>)>,
    route: String,
    pub split: Split,
}

impl Router {
    pub fn new(client: &Client, namespace: &str, kind: RouterKind, route: String, split: Split) -> Router {
        let api = tokio::sync::OnceCell::new();
        Router { kind, client: client.clone(), namespace: namespace.to_owned(), api, route, split }
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

    fn refused(&self, site: &CallSite<'_>, detail: String) -> BackendError {
        BackendError::Refused {
            backend: site.backend.to_owned(),
            action: format!("{} ({} in {})", site.verb, self.what(), self.namespace),
            detail,
        }
    }

    /// Sends `canary_weight` % to the canary, the rest to stable: only the
    /// two weights flightdeck owns change (see the module doc). A route
    /// changed since it was read fails the patch's test and is read again.
    pub async fn set_weight(&self, site: &CallSite<'_>, canary_weight: u8) -> Result<(), BackendError> {
        let mut route = self.fetch(site).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ops = weight_ops(self.kind, &route, &self.split, canary_weight).map_err(|d| self.refused(site, d))?;
            let patch = serde_json::from_value(ops).map_err(|e| self.refused(site, e.to_string()))?;
            let call = PatchCall { subresource: None, patch: Patch::Json(patch) };
            match send_patch(self.api(site).await?, &self.route, &call).await {
                Ok(()) => return Ok(()),
                // 422: the test of the resourceVersion failed (apiserver patch.go); 409: a conflict.
                Err(e @ CallError::Api { code: 409 | 422, .. }) => {
                    let now = self.fetch(site).await?;
                    let moved =
                        at(&now, &["metadata", "resourceVersion"]) != at(&route, &["metadata", "resourceVersion"]);
                    if !moved || attempt >= ROUTE_ATTEMPTS {
                        return Err(site.error("patch", &self.what(), e));
                    }
                    route = now;
                }
                Err(e) => return Err(site.error("patch", &self.what(), e)),
            }
        }
    }

    /// The canary weight configured on the route now, or why the route is refused.
    pub async fn canary_weight(&self, site: &CallSite<'_>) -> Result<Option<u8>, BackendError> {
        let route = self.fetch(site).await?;
        read_weight(self.kind, &route, &self.split).map(Some).map_err(|d| self.refused(site, d))
    }
}

/// With Istio subsets both sides usually share one host, while each
/// side's host defaults to its Deployment's name: say which settings name it.
fn subset_hint(split: &Split) -> &'static str {
    let subsets = split.stable.subset.is_some() || split.canary.subset.is_some();
    if subsets && split.stable.service != split.canary.service {
        " (with subsets, set target.stable_service and target.canary_service to the host the subsets are of)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(service: &str) -> Side {
        Side::new(service)
    }

    fn split(stable: Side, canary: Side) -> Split {
        Split { stable, canary, rules: Vec::new(), domain: "cluster.local".into() }
    }

    fn scope(namespace: &str) -> Scope<'_> {
        Scope { namespace, domain: "cluster.local" }
    }

    #[test]
    fn gateway_weights_are_a_json_patch_of_the_two_owned_weights_after_a_test_of_the_version() {
        let route = json!({"metadata": {"resourceVersion": "7"}, "spec": {"rules": [
            {"backendRefs": [{"name": "web-stable", "port": 80}, {"name": "web-canary", "port": 80, "weight": 0}]},
            {"backendRefs": [{"name": "docs", "port": 80}]},
        ]}});
        let ops = weight_ops(RouterKind::Gateway, &route, &split(side("web-stable"), side("web-canary")), 10).unwrap();
        assert_eq!(
            ops,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": 90},
                {"op": "add", "path": "/spec/rules/0/backendRefs/1/weight", "value": 10},
            ])
        );
        let err = weight_ops(RouterKind::Gateway, &route, &split(side("a"), side("b")), 10).unwrap_err();
        assert_eq!(err, "no rule routes to both a and b");
    }

    /// Gateway API's BackendObjectReference defaults (apis/v1/object_reference_types.go): group "" (core), kind
    /// Service, namespace the route's.
    #[test]
    fn gateway_backend_refs_match_by_group_kind_namespace_name_and_port() {
        let s = Side::new("web");
        let on = |entry: Value| s.matches(RouterKind::Gateway, &entry, scope("prod"));
        assert!(on(json!({"name": "web"})));
        assert!(on(json!({"name": "web", "group": "", "kind": "Service", "namespace": "prod", "port": 80})));
        assert!(!on(json!({"name": "web", "namespace": "staging"})));
        assert!(!on(json!({"name": "web", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"})));
        assert!(!on(json!({"name": "web", "group": "example.com"})));
        let with_port = Side { port: Some(8080), ..Side::new("web") };
        assert!(with_port.matches(RouterKind::Gateway, &json!({"name": "web", "port": 8080}), scope("prod")));
        assert!(!with_port.matches(RouterKind::Gateway, &json!({"name": "web", "port": 9090}), scope("prod")));
    }

    #[test]
    fn istio_hosts_resolve_as_istio_resolves_them() {
        // pkg/config/model.go ResolveShortnameToFQDN: only a name without a dot is expanded.
        let route = json!({"metadata": {"namespace": "prod", "resourceVersion": "1"}, "spec": {"http": [{"route": [
            {"destination": {"host": "checkout-stable.prod.svc.cluster.local"}, "weight": 100},
            {"destination": {"host": "checkout-canary"}, "weight": 0},
        ]}]}});
        let both = split(side("checkout-stable"), side("checkout-canary"));
        let ops = weight_ops(RouterKind::Istio, &route, &both, 10).unwrap();
        assert_eq!(ops[1], json!({"op": "add", "path": "/spec/http/0/route/0/weight", "value": 90}));
        assert_eq!(ops[2], json!({"op": "add", "path": "/spec/http/0/route/1/weight", "value": 10}));
        // `name.ns` is a literal host to Istio, not the Service; nor is another namespace's or domain's name.
        for stable in ["checkout-stable.prod", "checkout-stable.staging.svc.cluster.local", "checkout-stable.prod.svc"]
        {
            let route = json!({"metadata": {"namespace": "prod"}, "spec": {"http": [{"route": [
                {"destination": {"host": stable}}, {"destination": {"host": "checkout-canary"}},
            ]}]}});
            assert!(weight_ops(RouterKind::Istio, &route, &both, 10).is_err(), "{stable}");
        }
        // A cluster whose domain is not cluster.local.
        let corp = json!({"metadata": {"namespace": "prod"}, "spec": {"http": [{"route": [
            {"destination": {"host": "checkout-stable.prod.svc.corp.example"}}, {"destination": {"host": "checkout-canary"}},
        ]}]}});
        assert!(weight_ops(RouterKind::Istio, &corp, &both, 10).is_err());
        let in_corp = Split { domain: "corp.example".into(), ..both.clone() };
        assert!(weight_ops(RouterKind::Istio, &corp, &in_corp, 10).is_ok());
        assert_eq!(fqdn("web", scope("prod")), "web.prod.svc.cluster.local");
        assert_eq!(fqdn("web.shop", scope("prod")), "web.shop");
        assert_eq!(fqdn("10.0.0.1", scope("prod")), "10.0.0.1");
        assert_eq!(fqdn("*", scope("prod")), "*");
    }

    #[test]
    fn istio_subsets_and_ports_narrow_a_side() {
        let route = json!({"metadata": {"namespace": "prod"}, "spec": {"http": [{"route": [
            {"destination": {"host": "web", "subset": "stable", "port": {"number": 80}}, "weight": 90},
            {"destination": {"host": "web", "subset": "canary", "port": {"number": 80}}, "weight": 10},
        ]}]}});
        let by_subset = |s: &str| Side { subset: Some(s.into()), ..Side::new("web") };
        assert_eq!(read_weight(RouterKind::Istio, &route, &split(by_subset("stable"), by_subset("canary"))), Ok(10));
        // Another Service's "canary" subset is not this one's.
        let other = Side { subset: Some("canary".into()), ..Side::new("api") };
        assert!(read_weight(RouterKind::Istio, &route, &split(by_subset("stable"), other)).is_err());
        let port = |p| Side { port: Some(p), ..by_subset("canary") };
        assert!(read_weight(RouterKind::Istio, &route, &split(by_subset("stable"), port(80))).is_ok());
        assert!(read_weight(RouterKind::Istio, &route, &split(by_subset("stable"), port(81))).is_err());
    }

    #[test]
    fn ambiguous_routes_are_refused_with_the_reason_and_named_rules_are_taken() {
        let both = |name: Option<&str>, extra: Option<&str>| {
            let mut refs = vec![json!({"name": "s"}), json!({"name": "c"})];
            refs.extend(extra.map(|e| json!({"name": e})));
            let mut rule = json!({"backendRefs": refs});
            if let Some(name) = name {
                rule["name"] = json!(name);
            }
            rule
        };
        let route = |rules: Vec<Value>| json!({"metadata": {"resourceVersion": "1"}, "spec": {"rules": rules}});
        let sc = split(side("s"), side("c"));
        // Two rules with both sides (a header-matched one and the default): which one is flightdeck's?
        let two = route(vec![both(Some("testers"), None), both(None, None)]);
        let err = weight_ops(RouterKind::Gateway, &two, &sc, 10).unwrap_err();
        assert!(
            err.contains("rule 1 \"testers\", rule 2 all route to both s and c") && err.contains("route_rules"),
            "{err}"
        );
        // Named: only that rule.
        let named = Split { rules: vec!["testers".into()], ..sc.clone() };
        let ops = weight_ops(RouterKind::Gateway, &two, &named, 10).unwrap();
        assert_eq!(ops.as_array().unwrap().len(), 3);
        assert!(ops[1]["path"].as_str().unwrap().starts_with("/spec/rules/0/"));
        let missing = Split { rules: vec!["primary".into()], ..sc.clone() };
        let err = weight_ops(RouterKind::Gateway, &two, &missing, 10).unwrap_err();
        assert_eq!(err, "target.route_rules: no rule named \"primary\" in the route");
        // A third destination in the owned rule.
        let third = route(vec![both(None, Some("mirror"))]);
        let err = weight_ops(RouterKind::Gateway, &third, &sc, 10).unwrap_err();
        assert!(err.contains("rule 1 also routes to mirror"), "{err}");
        // The canary twice (two ports) without a port to tell them apart.
        let twice =
            route(vec![json!({"backendRefs": [{"name": "s"}, {"name": "c", "port": 80}, {"name": "c", "port": 81}]})]);
        let err = weight_ops(RouterKind::Gateway, &twice, &sc, 10).unwrap_err();
        assert!(err.contains("routes to c 2 times: set target.canary_port"), "{err}");
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
        assert_eq!(read_weight(RouterKind::Gateway, &route, &split(side("s"), side("c"))), Ok(25));
        let unset = json!({"spec": {"rules": [{"backendRefs": [{"name": "s"}, {"name": "c"}]}]}});
        assert_eq!(read_weight(RouterKind::Gateway, &unset, &split(side("s"), side("c"))), Ok(50));
    }
}
