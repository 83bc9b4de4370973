use http::Method;

use super::*;
use crate::router::route;

fn info(method: Method, target: &str) -> Attributes {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    attributes(&method, path, query, &route(path))
}

#[test]
fn get_of_a_named_object_is_get() {
    let a = info(Method::GET, "/api/v1/namespaces/default/pods/web");
    assert_eq!(
        (
            a.verb.as_str(),
            a.resource.as_str(),
            a.namespace.as_str(),
            a.name.as_str()
        ),
        ("get", "pods", "default", "web")
    );
    assert!(a.resource_request);
}

#[test]
fn get_of_a_collection_is_list() {
    let a = info(Method::GET, "/apis/apps/v1/namespaces/default/deployments");
    assert_eq!((a.verb.as_str(), a.api_group.as_str()), ("list", "apps"));
    assert_eq!(a.api_version, "v1");
}

#[test]
fn get_with_watch_is_watch() {
    let a = info(Method::GET, "/api/v1/pods?watch=true&resourceVersion=5");
    assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", ""));
}

#[test]
fn a_field_selector_on_the_name_names_the_object() {
    let a = info(
        Method::GET,
        "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dapp-config&watch=1",
    );
    assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "app-config"));
}

#[test]
fn writes_map_to_create_update_patch_delete() {
    let base = "/api/v1/namespaces/default/configmaps";
    assert_eq!(info(Method::POST, base).verb, "create");
    assert_eq!(info(Method::PUT, &format!("{base}/x")).verb, "update");
    assert_eq!(info(Method::PATCH, &format!("{base}/x")).verb, "patch");
    assert_eq!(info(Method::DELETE, &format!("{base}/x")).verb, "delete");
}

#[test]
fn delete_of_a_collection_is_deletecollection() {
    let a = info(Method::DELETE, "/api/v1/namespaces/default/configmaps");
    assert_eq!(a.verb, "deletecollection");
}

#[test]
fn subresources_are_kept_apart_from_the_resource() {
    let a = info(
        Method::PUT,
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    );
    assert_eq!(
        (a.resource.as_str(), a.subresource.as_str(), a.name.as_str()),
        ("deployments", "scale", "web")
    );
}

#[test]
fn a_namespace_object_is_addressed_within_itself() {
    let a = info(Method::GET, "/api/v1/namespaces/team-a");
    assert_eq!(
        (a.resource.as_str(), a.namespace.as_str(), a.name.as_str()),
        ("namespaces", "team-a", "team-a")
    );
    let a = info(Method::PUT, "/api/v1/namespaces/team-a/finalize");
    assert_eq!(
        (a.namespace.as_str(), a.subresource.as_str()),
        ("team-a", "finalize")
    );
}

#[test]
fn discovery_and_health_are_non_resource_requests_with_http_verbs() {
    for path in [
        "/api",
        "/apis",
        "/api/v1",
        "/apis/apps/v1",
        "/openapi/v2",
        "/version",
        "/healthz",
    ] {
        let a = info(Method::GET, path);
        assert!(!a.resource_request, "{path}");
        assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", path));
    }
    assert_eq!(info(Method::POST, "/apis").verb, "post");
}

#[test]
fn unknown_resources_are_still_resource_requests() {
    let a = info(
        Method::GET,
        "/apis/example.com/v1/namespaces/default/widgets/w1",
    );
    assert!(a.resource_request);
    assert_eq!(
        (
            a.api_group.as_str(),
            a.resource.as_str(),
            a.namespace.as_str(),
            a.name.as_str()
        ),
        ("example.com", "widgets", "default", "w1")
    );
}

#[test]
fn paths_outside_the_api_prefixes_are_non_resource() {
    let a = info(Method::GET, "/metrics");
    assert!(!a.resource_request);
    assert_eq!(a.path, "/metrics");
}
