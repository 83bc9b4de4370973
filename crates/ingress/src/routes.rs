//! The routing core: served Ingresses, Services and EndpointSlices → [`Routes`], and a request's
//! host and path → a [`Decision`], matched as the Ingress API specifies. No network here.
//!
//! Hosts: an exact rule host beats a wildcard one (`*.example.com` covers exactly one more
//! label), which beats rules without a host. A tier whose paths all miss falls through to the
//! next one, then to the oldest `spec.defaultBackend`, so a host-less catch-all rule still
//! serves a host that only has a few specific paths.
//! Paths: `Exact` is a case-sensitive string match; `Prefix` (and `ImplementationSpecific`,
//! which r8s treats alike) matches whole `/`-separated elements, trailing slash ignored. The
//! longest path wins, `Exact` before `Prefix` at equal length. Rules of several Ingresses are
//! merged; when two name the same host, path and type, the oldest Ingress wins.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;

pub use crate::backends::Backend;
use crate::backends::{Target, Targets};

/// What to do with a request.
#[derive(Debug)]
pub enum Decision<'a> {
    /// No rule matched and there is no default backend: 404.
    NotFound,
    /// A backend matched but cannot take requests (why, for the 503's body).
    Unavailable(&'a str),
    /// Proxy to one of the backend's endpoints.
    Proxy(&'a Backend),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PathMatch {
    Exact,
    Prefix,
}

#[derive(Debug)]
struct PathRoute {
    kind: PathMatch,
    /// For `Prefix`, without trailing slashes (so `/` is empty).
    path: String,
    target: Arc<Target>,
}

impl PathRoute {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathMatch::Exact => path == self.path,
            PathMatch::Prefix => {
                let mut requested = elements(path);
                elements(&self.path).all(|element| requested.next() == Some(element))
            }
        }
    }
}

/// A path's elements: empty ones (from `//` or a trailing `/`) do not count.
fn elements(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|element| !element.is_empty())
}

/// All served Ingresses' rules, merged.
#[derive(Debug, Default)]
pub struct Routes {
    exact: HashMap<String, Vec<PathRoute>>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Vec<PathRoute>>,
    any_host: Vec<PathRoute>,
    default_backend: Option<Arc<Target>>,
}

impl Routes {
    /// The routes of `ingresses` (those this controller serves), backed by `services` and
    /// `slices`.
    pub fn build(ingresses: &[&Ingress], services: &[Service], slices: &[EndpointSlice]) -> Routes {
        let mut ingresses = ingresses.to_vec();
        ingresses.sort_by(|a, b| age(a).cmp(&age(b)));
        let mut targets = Targets::new(services, slices);
        let mut routes = Routes::default();
        // (host, type, path) already taken, by an older Ingress or earlier in the same one.
        let mut taken: HashSet<(String, PathMatch, String)> = HashSet::new();
        for ingress in ingresses {
            let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
            let Some(spec) = &ingress.spec else { continue };
            if routes.default_backend.is_none()
                && let Some(backend) = &spec.default_backend
            {
                routes.default_backend = Some(targets.resolve(namespace, backend));
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
                for path in rule.http.iter().flat_map(|http| &http.paths) {
                    let (kind, normalized) = match path.path_type.as_str() {
                        "Exact" => (PathMatch::Exact, path.path.clone().unwrap_or_default()),
                        // ImplementationSpecific: r8s's own reading is Prefix.
                        _ => (
                            PathMatch::Prefix,
                            path.path
                                .as_deref()
                                .unwrap_or("")
                                .trim_end_matches('/')
                                .to_owned(),
                        ),
                    };
                    if !taken.insert((host.clone(), kind, normalized.clone())) {
                        continue;
                    }
                    let route = PathRoute {
                        kind,
                        path: normalized,
                        target: targets.resolve(namespace, &path.backend),
                    };
                    let tier = if host.is_empty() {
                        &mut routes.any_host
                    } else if let Some(parent) = host.strip_prefix("*.") {
                        routes.wildcard.entry(parent.to_owned()).or_default()
                    } else {
                        routes.exact.entry(host.clone()).or_default()
                    };
                    tier.push(route);
                }
            }
        }
        let tiers = routes
            .exact
            .values_mut()
            .chain(routes.wildcard.values_mut());
        for tier in tiers.chain([&mut routes.any_host]) {
            // Stable: among equals, the older Ingress's route stays first.
            tier.sort_by_key(|route| {
                (
                    std::cmp::Reverse(route.path.len()),
                    route.kind != PathMatch::Exact,
                )
            });
        }
        routes
    }

    /// Where a request for `host` (a `Host` header or `:authority`: any port is ignored) and
    /// `path` goes.
    pub fn route(&self, host: &str, path: &str) -> Decision<'_> {
        let host = host_name(host);
        let wildcard = host
            .split_once('.')
            .filter(|(label, _)| !label.is_empty())
            .and_then(|(_, parent)| self.wildcard.get(parent));
        let tiers = [self.exact.get(&host), wildcard, Some(&self.any_host)];
        for tier in tiers.into_iter().flatten() {
            if let Some(route) = tier.iter().find(|route| route.matches(path)) {
                return route.target.decision();
            }
        }
        match &self.default_backend {
            Some(target) => target.decision(),
            None => Decision::NotFound,
        }
    }
}

/// An Ingress's place in conflicts: the oldest wins, then by name for a stable order.
pub(crate) fn age(ingress: &Ingress) -> impl Ord + '_ {
    let meta = &ingress.metadata;
    (
        meta.creation_timestamp.clone(),
        meta.namespace.as_deref(),
        meta.name.as_deref(),
    )
}

/// `host[:port]` or `[v6]:port` → the lowercase name, without port or trailing dot.
pub fn host_name(authority: &str) -> String {
    let name = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(name, _)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": spec,
        }))
        .unwrap()
    }

    fn path(path_type: &str, path: &str, service: &str) -> serde_json::Value {
        json!({"path": path, "pathType": path_type,
               "backend": {"service": {"name": service, "port": {"number": 80}}}})
    }

    fn rule(host: Option<&str>, paths: Vec<serde_json::Value>) -> serde_json::Value {
        match host {
            Some(host) => json!({"host": host, "http": {"paths": paths}}),
            None => json!({"http": {"paths": paths}}),
        }
    }

    fn service(name: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": ports},
        }))
        .unwrap()
    }

    /// A Service `name` on port 80 (target 8080) with one ready endpoint at `ip:8080`.
    fn world(names: &[(&str, &str)]) -> (Vec<Service>, Vec<EndpointSlice>) {
        let services = names
            .iter()
            .map(|(name, _)| service(name, json!([{"port": 80, "targetPort": 8080}])))
            .collect();
        let slices = names
            .iter()
            .map(|(name, ip)| slice(name, ip, 8080, json!({"ready": true}), None))
            .collect();
        (services, slices)
    }

    fn slice(
        service: &str,
        ip: &str,
        port: i32,
        conditions: serde_json::Value,
        port_name: Option<&str>,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-{ip}"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": conditions}],
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        }))
        .unwrap()
    }

    fn routes(ingresses: &[Ingress], names: &[(&str, &str)]) -> Routes {
        let (services, slices) = world(names);
        let refs: Vec<&Ingress> = ingresses.iter().collect();
        Routes::build(&refs, &services, &slices)
    }

    /// Where the request went: the endpoint's IP, or what was answered instead.
    fn to(routes: &Routes, host: &str, path: &str) -> String {
        match routes.route(host, path) {
            Decision::Proxy(backend) => backend.pick().ip().to_string(),
            Decision::NotFound => "404".into(),
            Decision::Unavailable(why) => format!("503 {why}"),
        }
    }

    const T0: &str = "2024-01-01T00:00:00Z";
    const T1: &str = "2024-06-01T00:00:00Z";

    #[test]
    fn exact_host_beats_wildcard_which_covers_exactly_one_label() {
        let routes = routes(
            &[ingress(
                "web",
                T0,
                json!({"rules": [
                    rule(Some("*.example.com"), vec![path("Prefix", "/", "wild")]),
                    rule(Some("api.example.com"), vec![path("Prefix", "/", "api")]),
                ]}),
            )],
            &[("wild", "10.0.0.1"), ("api", "10.0.0.2")],
        );
        assert_eq!(to(&routes, "api.example.com", "/"), "10.0.0.2");
        assert_eq!(to(&routes, "API.Example.com:8443", "/x"), "10.0.0.2");
        assert_eq!(to(&routes, "www.example.com", "/"), "10.0.0.1");
        assert_eq!(to(&routes, "a.b.example.com", "/"), "404");
        assert_eq!(to(&routes, "example.com", "/"), "404");
    }

    #[test]
    fn prefix_matches_whole_elements_and_ignores_trailing_slash() {
        let routes = routes(
            &[ingress(
                "web",
                T0,
                json!({"rules": [rule(None, vec![path("Prefix", "/foo/bar/", "a")])]}),
            )],
            &[("a", "10.0.0.1")],
        );
        for hit in ["/foo/bar", "/foo/bar/", "/foo/bar/baz"] {
            assert_eq!(to(&routes, "x", hit), "10.0.0.1", "{hit}");
        }
        for miss in ["/foo/barbaz", "/foo", "/Foo/bar"] {
            assert_eq!(to(&routes, "x", miss), "404", "{miss}");
        }
    }

    #[test]
    fn root_prefix_matches_every_path() {
        let routes = routes(
            &[ingress(
                "web",
                T0,
                json!({"rules": [rule(None, vec![path("Prefix", "/", "a")])]}),
            )],
            &[("a", "10.0.0.1")],
        );
        assert_eq!(to(&routes, "x", "/"), "10.0.0.1");
        assert_eq!(to(&routes, "x", "/any/thing"), "10.0.0.1");
    }

    #[test]
    fn exact_is_case_sensitive_and_slash_sensitive() {
        let routes = routes(
            &[ingress(
                "web",
                T0,
                json!({"rules": [rule(None, vec![path("Exact", "/foo", "a")])]}),
            )],
            &[("a", "10.0.0.1")],
        );
        assert_eq!(to(&routes, "x", "/foo"), "10.0.0.1");
        assert_eq!(to(&routes, "x", "/foo/"), "404");
        assert_eq!(to(&routes, "x", "/FOO"), "404");
    }

    #[test]
    fn longest_path_wins_and_exact_beats_prefix_at_equal_length() {
        let routes = routes(
            &[ingress(
                "web",
                T0,
                json!({"rules": [rule(None, vec![
                    path("Prefix", "/", "root"),
                    path("Prefix", "/aaa", "prefix"),
                    path("Exact", "/aaa", "exact"),
                    path("ImplementationSpecific", "/aaa/bbb", "deep"),
                ])]}),
            )],
            &[
                ("root", "10.0.0.1"),
                ("prefix", "10.0.0.2"),
                ("exact", "10.0.0.3"),
                ("deep", "10.0.0.4"),
            ],
        );
        assert_eq!(to(&routes, "x", "/aaa"), "10.0.0.3");
        assert_eq!(to(&routes, "x", "/aaa/"), "10.0.0.2");
        assert_eq!(to(&routes, "x", "/aaa/ccc"), "10.0.0.2");
        assert_eq!(to(&routes, "x", "/aaa/bbb/c"), "10.0.0.4");
        assert_eq!(to(&routes, "x", "/ccc"), "10.0.0.1");
    }

    #[test]
    fn a_host_whose_paths_miss_falls_through_to_hostless_rules_then_the_default_backend() {
        let routes = routes(
            &[ingress(
                "web",
                T0,
                json!({
                    "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                    "rules": [
                        rule(Some("foo.com"), vec![path("Prefix", "/api", "api")]),
                        rule(None, vec![path("Prefix", "/static", "static")]),
                    ],
                }),
            )],
            &[
                ("api", "10.0.0.1"),
                ("static", "10.0.0.2"),
                ("fallback", "10.0.0.3"),
            ],
        );
        assert_eq!(to(&routes, "foo.com", "/api/v1"), "10.0.0.1");
        assert_eq!(to(&routes, "foo.com", "/static/a.css"), "10.0.0.2");
        assert_eq!(to(&routes, "bar.com", "/api"), "10.0.0.3");
    }

    #[test]
    fn nothing_matching_and_no_default_backend_is_not_found() {
        let routes = routes(&[], &[]);
        assert_eq!(to(&routes, "foo.com", "/"), "404");
    }

    #[test]
    fn merged_ingresses_let_the_oldest_win_conflicts() {
        let old = ingress(
            "old",
            T0,
            json!({
                "defaultBackend": {"service": {"name": "old", "port": {"number": 80}}},
                "rules": [rule(Some("foo.com"), vec![path("Prefix", "/", "old")])],
            }),
        );
        let new = ingress(
            "new",
            T1,
            json!({
                "defaultBackend": {"service": {"name": "new", "port": {"number": 80}}},
                "rules": [rule(Some("foo.com"), vec![
                    path("Prefix", "/", "new"),
                    path("Prefix", "/new", "new"),
                ])],
            }),
        );
        // The order given does not matter: age does.
        let routes = routes(&[new, old], &[("old", "10.0.0.1"), ("new", "10.0.0.2")]);
        assert_eq!(to(&routes, "foo.com", "/"), "10.0.0.1");
        assert_eq!(to(&routes, "foo.com", "/new/x"), "10.0.0.2");
        assert_eq!(to(&routes, "bar.com", "/"), "10.0.0.1");
    }

    #[test]
    fn unavailable_backends_say_why() {
        let routes = routes(
            &[ingress(
                "web",
                T0,
                json!({"rules": [rule(None, vec![
                    path("Prefix", "/missing", "missing"),
                    json!({"path": "/port", "pathType": "Prefix",
                           "backend": {"service": {"name": "a", "port": {"number": 81}}}}),
                    json!({"path": "/resource", "pathType": "Prefix",
                           "backend": {"resource": {"kind": "Bucket", "name": "b"}}}),
                ])]}),
            )],
            &[("a", "10.0.0.1")],
        );
        assert_eq!(
            to(&routes, "x", "/missing"),
            "503 service default/missing not found"
        );
        assert_eq!(
            to(&routes, "x", "/port"),
            "503 service default/a has no port 81"
        );
        assert!(to(&routes, "x", "/resource").contains("resource"));
    }

    #[test]
    fn only_ready_endpoints_serve_and_none_is_unavailable() {
        let ingresses = [ingress(
            "web",
            T0,
            json!({"rules": [rule(None, vec![path("Prefix", "/", "a")])]}),
        )];
        let services = vec![service("a", json!([{"port": 80}]))];
        let slices = vec![
            slice("a", "10.0.0.1", 8080, json!({"ready": false}), None),
            slice("a", "10.0.0.2", 8080, json!({}), None),
        ];
        let refs: Vec<&Ingress> = ingresses.iter().collect();
        let routes = Routes::build(&refs, &services, &slices);
        let Decision::Proxy(backend) = routes.route("x", "/") else {
            panic!("a ready endpoint serves");
        };
        assert_eq!(backend.endpoints(), ["10.0.0.2:8080".parse().unwrap()]);
        let routes = Routes::build(&refs, &services, &slices[..1]);
        assert_eq!(
            to(&routes, "x", "/"),
            "503 service default/a:80 has no ready endpoints"
        );
    }

    #[test]
    fn a_named_service_port_resolves_to_the_slice_port_of_that_name() {
        let ingresses = [ingress(
            "web",
            T0,
            json!({"rules": [rule(None, vec![json!({"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "a", "port": {"name": "http"}}}})])]}),
        )];
        let services = vec![service(
            "a",
            json!([{"name": "metrics", "port": 9090}, {"name": "http", "port": 80}]),
        )];
        let slices = vec![
            slice("a", "10.0.0.1", 9100, json!({}), Some("metrics")),
            slice("a", "10.0.0.1", 8080, json!({}), Some("http")),
        ];
        let refs: Vec<&Ingress> = ingresses.iter().collect();
        let routes = Routes::build(&refs, &services, &slices);
        let Decision::Proxy(backend) = routes.route("x", "/") else {
            panic!("the named port serves");
        };
        assert_eq!(backend.endpoints(), ["10.0.0.1:8080".parse().unwrap()]);
    }

    #[test]
    fn endpoints_take_turns() {
        let ingresses = [ingress(
            "web",
            T0,
            json!({"rules": [rule(None, vec![path("Prefix", "/", "a")])]}),
        )];
        let services = vec![service("a", json!([{"port": 80}]))];
        let slices = vec![
            slice("a", "10.0.0.1", 8080, json!({}), None),
            slice("a", "10.0.0.2", 8080, json!({}), None),
        ];
        let refs: Vec<&Ingress> = ingresses.iter().collect();
        let routes = Routes::build(&refs, &services, &slices);
        let picks: Vec<String> = (0..4).map(|_| to(&routes, "x", "/")).collect();
        assert_eq!(picks, ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn host_names_lose_port_and_trailing_dot() {
        assert_eq!(host_name("Foo.COM:8080"), "foo.com");
        assert_eq!(host_name("foo.com."), "foo.com");
        assert_eq!(host_name("[::1]:443"), "::1");
        assert_eq!(host_name("foo.com"), "foo.com");
    }
}
