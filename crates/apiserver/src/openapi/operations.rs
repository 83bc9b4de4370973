//! The catalogue's REST surface as OpenAPI path items: for every resource, subresource and verb,
//! the operation kube-apiserver's installer registers (same paths, operation ids, actions, kinds,
//! parameters, bodies and replies), in a form both the Swagger 2.0 and the OpenAPI 3 writers
//! render from.

use super::definitions::{Definitions, Gvk};
use super::parameters::Param;
use super::resource_paths;

pub const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const PATCH_BODY: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";

/// What an object read or write answers in.
pub const OBJECT_MEDIA: &[&str] = &[
    "application/json",
    "application/vnd.kubernetes.protobuf",
    "application/yaml",
];
/// A list can also be a watch stream.
pub const LIST_MEDIA: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
];
/// Streams and proxied bytes: whatever the far end sends.
pub const ANY_MEDIA: &[&str] = &["*/*"];
/// Every patch kind a built-in resource takes; kubectl apply picks strategic merge when it is
/// listed here.
pub const PATCH_MEDIA: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// All path items one `/api/v1` or `/apis/<group>/<version>` serves.
pub struct GroupVersionPaths {
    pub group: &'static str,
    pub version: &'static str,
    pub items: Vec<PathItem>,
}

impl GroupVersionPaths {
    /// `api/v1` or `apis/<group>/<version>`: the key of the `/openapi/v3` index.
    pub fn key(&self) -> String {
        url_prefix(self.group, self.version)
            .trim_start_matches('/')
            .to_owned()
    }
}

pub struct PathItem {
    pub path: String,
    /// Shared by every operation: path segments and `pretty`.
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

pub struct Operation {
    /// Lowercase HTTP method, as OpenAPI keys operations.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    pub tag: String,
    /// `x-kubernetes-action`; absent on discovery operations.
    pub action: Option<&'static str>,
    /// `x-kubernetes-group-version-kind`: what clients look operations up by.
    pub kind: Option<Gvk>,
    pub params: Vec<Param>,
    pub body: Option<RequestBody>,
    pub replies: Vec<Reply>,
}

pub enum Payload {
    /// An object of this definition.
    Definition(String),
    /// A plain string: logs and connect streams.
    Text,
}

pub struct RequestBody {
    pub payload: Payload,
    pub media: &'static [&'static str],
    pub required: bool,
}

pub struct Reply {
    pub code: u16,
    /// `None` for replies without a body (401).
    pub payload: Option<Payload>,
    pub media: &'static [&'static str],
}

impl Reply {
    pub fn description(&self) -> &'static str {
        match self.code {
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            401 => "Unauthorized",
            _ => "",
        }
    }
}

/// Every served group version in catalogue order, each with its resources' path items.
pub fn group_versions(definitions: &Definitions) -> Vec<GroupVersionPaths> {
    let mut out: Vec<GroupVersionPaths> = Vec::new();
    for resource in r8s_api::catalogue() {
        let index = match out
            .iter()
            .position(|gv| gv.group == resource.group && gv.version == resource.version)
        {
            Some(index) => index,
            None => {
                out.push(GroupVersionPaths {
                    group: resource.group,
                    version: resource.version,
                    items: vec![api_resources(resource.group, resource.version)],
                });
                out.len() - 1
            }
        };
        out[index].items.extend(
            resource_paths::build(resource, definitions)
                .into_iter()
                .flatten(),
        );
    }
    out
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn url_prefix(group: &str, version: &str) -> String {
    match group {
        "" => format!("/api/{version}"),
        _ => format!("/apis/{group}/{version}"),
    }
}

/// The group as operation ids spell it: `Core`, `Apps`, `RbacAuthorization`,
/// `FlowcontrolApiserver`.
pub fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_owned();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed.split('.').map(capitalize).collect()
}

pub fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
pub fn tag(group: &str, version: &str) -> String {
    let word = group_word(group);
    let mut chars = word.chars();
    let first = chars.next().map(|c| c.to_lowercase().to_string());
    format!("{}{}_{version}", first.unwrap_or_default(), chars.as_str())
}

fn api_resources(group: &'static str, version: &'static str) -> PathItem {
    PathItem {
        path: format!("{}/", url_prefix(group, version)),
        params: Vec::new(),
        operations: vec![Operation {
            method: "get",
            id: format!(
                "get{}{}APIResources",
                group_word(group),
                capitalize(version)
            ),
            description: "get available resources".to_owned(),
            tag: tag(group, version),
            action: None,
            kind: None,
            params: Vec::new(),
            body: None,
            replies: replies(&[200], API_RESOURCE_LIST, OBJECT_MEDIA),
        }],
    }
}

pub fn replies(codes: &[u16], definition: &str, media: &'static [&'static str]) -> Vec<Reply> {
    codes
        .iter()
        .map(|&code| Reply {
            code,
            payload: Some(Payload::Definition(definition.to_owned())),
            media,
        })
        .chain(std::iter::once(unauthorized()))
        .collect()
}

pub fn text_reply() -> Vec<Reply> {
    vec![
        Reply {
            code: 200,
            payload: Some(Payload::Text),
            media: ANY_MEDIA,
        },
        unauthorized(),
    ]
}

pub fn unauthorized() -> Reply {
    Reply {
        code: 401,
        payload: None,
        media: &[],
    }
}

pub fn body(
    definition: &str,
    media: &'static [&'static str],
    required: bool,
) -> Option<RequestBody> {
    Some(RequestBody {
        payload: Payload::Definition(definition.to_owned()),
        media,
        required,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_spell_groups_as_upstream_does() {
        assert_eq!(group_word(""), "Core");
        assert_eq!(group_word("apps"), "Apps");
        assert_eq!(group_word("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(
            group_word("flowcontrol.apiserver.k8s.io"),
            "FlowcontrolApiserver"
        );
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
    }
}
