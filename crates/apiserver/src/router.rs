//! Maps a request path to what it names: a discovery document, a health check, or a resource
//! (with its namespace, name and subresource) from the catalogue.

use r8s_api::Resource;

#[derive(Debug)]
pub enum Route {
    Version,
    Health,
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: every other group.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resources of a group version.
    GroupVersion {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3` (None) or `/openapi/v3/<api/v1|apis/group/version>`.
    OpenApiV3(Option<String>),
    NotFound,
}

#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3(None),
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(Some(rest.join("/"))),
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group((*group).to_owned()),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    if rest.is_empty() {
        return match r8s_api::catalogue()
            .iter()
            .any(|r| r.group == group && r.version == version)
            || crate::crd::serves(group, version)
        {
            true => Route::GroupVersion {
                group: group.to_owned(),
                version: version.to_owned(),
            },
            false => Route::NotFound,
        };
    }
    let found = |plural: &str| {
        r8s_api::find(group, version, plural).or_else(|| crate::crd::find(group, version, plural))
    };
    let owned = |s: Option<&&str>| s.map(|s| (*s).to_owned());
    // /namespaces/<ns>/<plural>/… names a namespaced resource; anything else under
    // /namespaces (…/<name>/status, …/<name>/finalize) is the namespace object itself.
    if let ["namespaces", namespace, plural, tail @ ..] = rest
        && let Some(resource) = found(plural).filter(|r| r.namespaced)
    {
        if tail.len() > 2 {
            return Route::NotFound;
        }
        return Route::Resource(ResourcePath {
            resource,
            namespace: Some((*namespace).to_owned()),
            name: owned(tail.first()),
            subresource: owned(tail.get(1)),
        });
    }
    let [plural, tail @ ..] = rest else {
        return Route::NotFound;
    };
    match found(plural) {
        Some(resource) if tail.len() <= 2 => {
            // A namespaced resource by name needs its namespace.
            if resource.namespaced && !tail.is_empty() {
                return Route::NotFound;
            }
            Route::Resource(ResourcePath {
                resource,
                namespace: None,
                name: owned(tail.first()),
                subresource: owned(tail.get(1)),
            })
        }
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths_carry_namespace_name_and_subresource() {
        let r = resource("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.resource.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = resource("/apis/apps/v1/namespaces/kube-system/deployments");
        assert_eq!((r.resource.kind, r.name), ("Deployment", None));
    }

    #[test]
    fn namespace_object_paths_are_cluster_scoped() {
        let r = resource("/api/v1/namespaces/default");
        assert_eq!((r.resource.plural, r.namespace), ("namespaces", None));
        assert_eq!(r.name.as_deref(), Some("default"));
        let r = resource("/api/v1/namespaces/default/finalize");
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
    }

    #[test]
    fn list_across_namespaces_has_no_namespace() {
        let r = resource("/api/v1/pods");
        assert_eq!(
            (r.resource.plural, r.namespace, r.name),
            ("pods", None, None)
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "/api/v1/widgets",
            "/apis/apps/v9/deployments",
            "/api/v1/pods/x",
            "/nope",
        ] {
            assert!(matches!(route(path), Route::NotFound), "{path}");
        }
    }
}
