//! What a request asks to do, in authorization terms (upstream's `RequestInfoFactory`): a verb
//! on a resource (group, version, namespace, name, subresource) or an HTTP verb on a
//! non-resource path. Paths the router knows are read from its answer; paths it does not know
//! under `/api` and `/apis` are still resource requests upstream, so they are split the same
//! way and an unauthorized client learns nothing about what exists.

use http::Method;

use crate::router::Route;

/// Upstream's `authorizer.Attributes`, without the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    /// The request path, for non-resource requests.
    pub path: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// The attributes of a request for `path` (already routed to `route`).
pub fn attributes(method: &Method, path: &str, query: Option<&str>, route: &Route) -> Attributes {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut attributes = match route {
        Route::Resource(resource) => {
            let r = resource.resource;
            Attributes {
                api_group: r.group.to_owned(),
                api_version: r.version.to_owned(),
                resource: r.plural.to_owned(),
                // A namespace object is addressed within itself, as upstream reads the path.
                namespace: resource
                    .namespace
                    .clone()
                    .or_else(|| {
                        (r.plural == "namespaces" && r.group.is_empty())
                            .then(|| resource.name.clone())
                            .flatten()
                    })
                    .unwrap_or_default(),
                name: resource.name.clone().unwrap_or_default(),
                subresource: resource.subresource.clone().unwrap_or_default(),
                resource_request: true,
                ..Attributes::default()
            }
        }
        Route::NotFound => unrouted(&parts).unwrap_or_default(),
        _ => Attributes::default(),
    };
    if !attributes.resource_request {
        attributes.verb = method.as_str().to_ascii_lowercase();
        attributes.path = path.to_owned();
        return attributes;
    }
    if attributes.verb.is_empty() {
        attributes.verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .to_owned();
    }
    if attributes.name.is_empty() && attributes.verb == "get" {
        let pairs: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let watch = pairs
            .iter()
            .any(|(k, v)| k == "watch" && matches!(v.as_str(), "true" | "1" | ""));
        attributes.verb = if watch { "watch" } else { "list" }.to_owned();
        // A list or watch of one object by field selector is authorized as that object.
        if let Some(name) = pairs
            .iter()
            .filter(|(k, _)| k == "fieldSelector")
            .find_map(|(_, v)| exact_name(v))
        {
            attributes.name = name;
        }
    }
    if attributes.name.is_empty() && attributes.verb == "delete" {
        attributes.verb = "deletecollection".to_owned();
    }
    attributes
}

/// `metadata.name=x` (or `==`) among a field selector's terms, when x is a valid path segment.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (key, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(key, _)| !key.ends_with('!'))?;
        let valid = !matches!(value, "" | "." | "..") && !value.contains(['/', '%']);
        (key.trim() == "metadata.name" && valid).then(|| value.to_owned())
    })
}

/// Upstream's reading of `/api/<v>/…` and `/apis/<g>/<v>/…` for paths the router has no
/// resource for (unknown resources, `watch/` and `proxy/` forms); None for non-resource paths.
fn unrouted(parts: &[&str]) -> Option<Attributes> {
    let mut attributes = Attributes {
        resource_request: true,
        ..Attributes::default()
    };
    let rest = match parts {
        ["api", version, rest @ ..] if !rest.is_empty() => {
            attributes.api_version = (*version).to_owned();
            rest
        }
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            attributes.api_group = (*group).to_owned();
            attributes.api_version = (*version).to_owned();
            rest
        }
        _ => return None,
    };
    let rest = match rest {
        [verb @ ("watch" | "proxy"), rest @ ..] if !rest.is_empty() => {
            attributes.verb = (*verb).to_owned();
            rest
        }
        _ => rest,
    };
    let rest = match rest {
        ["namespaces", namespace, tail @ ..] => {
            attributes.namespace = (*namespace).to_owned();
            match tail.first() {
                Some(&("status" | "finalize")) | None => rest,
                Some(_) => tail,
            }
        }
        _ => rest,
    };
    attributes.resource = rest[0].to_owned();
    if let Some(name) = rest.get(1) {
        attributes.name = (*name).to_owned();
    }
    if let Some(sub) = rest.get(2).filter(|_| attributes.verb != "proxy") {
        attributes.subresource = (*sub).to_owned();
    }
    Some(attributes)
}

#[cfg(test)]
#[path = "request_info_tests.rs"]
mod tests;
