//! One resource's path items: its collection, its objects, the cluster-wide list of a namespaced
//! resource, and each subresource, with the operations its verbs allow.

use std::borrow::Cow;

use r8s_api::{Resource, Subresource};

use super::definitions::{Definitions, Gvk};
use super::operations::{
    ANY_MEDIA, DELETE_OPTIONS, LIST_MEDIA, OBJECT_MEDIA, Operation, PATCH_BODY, PATCH_MEDIA,
    PathItem, STATUS, body, capitalize, group_word, replies, tag, text_reply, url_prefix,
};
use super::parameters::{
    self, DELETE, DELETE_COLLECTION, LIST, Location, PATCH, Param, ParamType, WRITE,
};

/// The path items of `resource`, or `None` when the data has no schema for its kind (a gap
/// the tests catch).
pub fn build(resource: &'static Resource, definitions: &Definitions) -> Option<Vec<PathItem>> {
    ResourcePaths::new(resource, definitions).map(|paths| paths.items())
}

struct ResourcePaths<'a> {
    resource: &'static Resource,
    /// The definition of the resource's objects.
    object: &'a str,
    /// `CoreV1`, `AppsV1`: the start of every operation id.
    id_prefix: String,
    /// `Namespaced` for namespaced resources, empty otherwise.
    scope: &'static str,
    /// `…/namespaces/{namespace}/pods` or `…/nodes`.
    collection: String,
    tag: String,
    definitions: &'a Definitions,
}

impl<'a> ResourcePaths<'a> {
    fn new(resource: &'static Resource, definitions: &'a Definitions) -> Option<Self> {
        let object = definitions.of_kind(resource.group, resource.version, resource.kind)?;
        let prefix = url_prefix(resource.group, resource.version);
        Some(ResourcePaths {
            resource,
            object,
            id_prefix: format!(
                "{}{}",
                group_word(resource.group),
                capitalize(resource.version)
            ),
            scope: if resource.namespaced {
                "Namespaced"
            } else {
                ""
            },
            collection: match resource.namespaced {
                true => format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural),
                false => format!("{prefix}/{}", resource.plural),
            },
            tag: tag(resource.group, resource.version),
            definitions,
        })
    }

    fn items(&self) -> Vec<PathItem> {
        let mut items = Vec::new();
        items.extend(self.collection_item());
        items.extend(self.object_item());
        items.extend(self.all_namespaces_item());
        for sub in self.resource.subresources {
            items.extend(self.subresource_items(sub));
        }
        items
    }

    fn has(&self, verb: &str) -> bool {
        self.resource.verbs.contains(&verb)
    }

    fn gvk(&self) -> Gvk {
        Gvk {
            group: self.resource.group,
            version: self.resource.version,
            kind: self.resource.kind,
        }
    }

    /// `name` when the path names an object, `namespace` for namespaced resources, `pretty`.
    fn path_params(&self, named: bool) -> Vec<Param> {
        let mut params = Vec::new();
        if named {
            params.push(Param {
                name: "name",
                location: Location::Path,
                ty: ParamType::String,
                description: Cow::Owned(format!("name of the {}", self.resource.kind)),
                required: true,
            });
        }
        if self.resource.namespaced {
            params.push(parameters::NAMESPACE);
        }
        params.push(parameters::PRETTY);
        params
    }

    fn operation(
        &self,
        method: &'static str,
        verb: &str,
        suffix: &str,
        description: String,
        action: &'static str,
    ) -> Operation {
        let id = format!(
            "{verb}{}{}{}{suffix}",
            self.id_prefix, self.scope, self.resource.kind
        );
        Operation {
            method,
            id,
            description,
            tag: self.tag.clone(),
            action: Some(action),
            kind: Some(self.gvk()),
            params: Vec::new(),
            body: None,
            replies: Vec::new(),
        }
    }

    fn list_definition(&self) -> Option<&'a str> {
        let list = format!("{}List", self.resource.kind);
        self.definitions
            .of_kind(self.resource.group, self.resource.version, &list)
    }

    fn list_operation(&self, id_suffix: &str) -> Option<Operation> {
        let list = self.list_definition()?;
        let what = match self.has("watch") {
            true => "list or watch",
            false => "list",
        };
        let description = format!("{what} objects of kind {}", self.resource.kind);
        let mut op = self.operation("get", "list", id_suffix, description, "list");
        // `ForAllNamespaces` goes after the kind, not before it.
        if !id_suffix.is_empty() {
            op.id = format!("list{}{}{id_suffix}", self.id_prefix, self.resource.kind);
        }
        op.params = LIST.to_vec();
        op.replies = replies(&[200], list, LIST_MEDIA);
        Some(op)
    }

    fn collection_item(&self) -> Option<PathItem> {
        let kind = self.resource.kind;
        let mut operations = Vec::new();
        if self.has("list") {
            operations.extend(self.list_operation(""));
        }
        if self.has("create") {
            operations.extend(self.object_operation("create", self.object, "", ""));
        }
        if self.has("deletecollection") {
            let mut op = self.operation(
                "delete",
                "delete",
                "",
                format!("delete collection of {kind}"),
                "deletecollection",
            );
            op.id = format!("delete{}Collection{}{kind}", self.id_prefix, self.scope);
            op.params = DELETE_COLLECTION.to_vec();
            op.body = body(DELETE_OPTIONS, ANY_MEDIA, false);
            op.replies = replies(&[200], STATUS, OBJECT_MEDIA);
            operations.push(op);
        }
        self.item(self.collection.clone(), self.path_params(false), operations)
    }

    fn object_item(&self) -> Option<PathItem> {
        let kind = self.resource.kind;
        let mut operations: Vec<Operation> = ["get", "update", "patch"]
            .into_iter()
            .filter(|verb| self.has(verb))
            .filter_map(|verb| self.object_operation(verb, self.object, "", ""))
            .collect();
        if self.has("delete") {
            let mut op =
                self.operation("delete", "delete", "", format!("delete a {kind}"), "delete");
            op.params = DELETE.to_vec();
            op.body = body(DELETE_OPTIONS, ANY_MEDIA, false);
            op.replies = replies(&[200, 202], STATUS, OBJECT_MEDIA);
            operations.push(op);
        }
        let path = format!("{}/{{name}}", self.collection);
        self.item(path, self.path_params(true), operations)
    }

    /// `/api/v1/pods`: a namespaced resource listed across namespaces.
    fn all_namespaces_item(&self) -> Option<PathItem> {
        if !self.resource.namespaced || !self.has("list") {
            return None;
        }
        let op = self.list_operation("ForAllNamespaces")?;
        let path = format!(
            "{}/{}",
            url_prefix(self.resource.group, self.resource.version),
            self.resource.plural
        );
        self.item(path, vec![parameters::PRETTY], vec![op])
    }

    fn subresource_items(&self, sub: &'static Subresource) -> Vec<PathItem> {
        let path = format!("{}/{{name}}/{}", self.collection, sub.name);
        let params = self.path_params(true);
        // Connect subresources name an options kind (PodExecOptions, PodProxyOptions): their
        // query parameters are its fields, and they stream rather than answer an object.
        if sub.kind.ends_with("Options") {
            let mut items = Vec::from_iter(self.item(
                path.clone(),
                params.clone(),
                self.connect_operations(sub, ""),
            ));
            if sub.kind.ends_with("ProxyOptions") {
                let mut params = params;
                params.insert(0, parameters::PROXY_PATH);
                let operations = self.connect_operations(sub, "WithPath");
                items.extend(self.item(format!("{path}/{{path}}"), params, operations));
            }
            return items;
        }
        let operations = match parameters::text_read(sub.name) {
            Some(query) => self.text_read_operation(sub, query),
            None => self.subresource_operations(sub),
        };
        Vec::from_iter(self.item(path, params, operations))
    }

    fn connect_operations(&self, sub: &Subresource, id_suffix: &str) -> Vec<Operation> {
        let kind = self.resource.kind;
        sub.verbs
            .iter()
            .filter_map(|&verb| {
                let (method, word, upper) = match verb {
                    "get" => ("get", "Get", "GET"),
                    "create" => ("post", "Post", "POST"),
                    "update" => ("put", "Put", "PUT"),
                    "patch" => ("patch", "Patch", "PATCH"),
                    "delete" => ("delete", "Delete", "DELETE"),
                    _ => return None,
                };
                let description = format!("connect {upper} requests to {} of {kind}", sub.name);
                let mut op = self.operation(method, "connect", "", description, "connect");
                op.id = format!(
                    "connect{}{word}{}{kind}{}{id_suffix}",
                    self.id_prefix,
                    self.scope,
                    capitalize(sub.name)
                );
                op.kind = Some(subresource_gvk(sub));
                op.params = parameters::connect_options(sub.kind)
                    .iter()
                    .filter(|p| id_suffix.is_empty() || p.name != "path")
                    .cloned()
                    .collect();
                op.replies = text_reply();
                Some(op)
            })
            .collect()
    }

    /// `pods/log`: a read of the parent's kind that answers text.
    fn text_read_operation(&self, sub: &Subresource, query: &[Param]) -> Vec<Operation> {
        let description = format!("read {} of the specified {}", sub.name, self.resource.kind);
        let mut op = self.operation("get", "read", &capitalize(sub.name), description, "get");
        op.kind = Some(subresource_gvk(sub));
        op.params = query.to_vec();
        op.replies = text_reply();
        vec![op]
    }

    /// status, scale, binding, eviction, token, finalize, approval, ephemeralcontainers, resize:
    /// ordinary reads and writes of the subresource's own kind.
    fn subresource_operations(&self, sub: &Subresource) -> Vec<Operation> {
        let Some(object) = self.definitions.of_kind(sub.group, sub.version, sub.kind) else {
            return Vec::new();
        };
        let (suffix, of) = (capitalize(sub.name), format!("{} of ", sub.name));
        sub.verbs
            .iter()
            .filter_map(|verb| self.object_operation(verb, object, &suffix, &of))
            .map(|mut op| {
                op.kind = Some(subresource_gvk(sub));
                op
            })
            .collect()
    }

    /// A read, replace, patch or create of one `object`; `suffix` and `of` name a subresource
    /// (`Status`, `"status of "`) or are empty.
    fn object_operation(
        &self,
        verb: &str,
        object: &str,
        suffix: &str,
        of: &str,
    ) -> Option<Operation> {
        let kind = self.resource.kind;
        let op = match verb {
            "get" => {
                let description = format!("read {of}the specified {kind}");
                let mut op = self.operation("get", "read", suffix, description, "get");
                op.replies = replies(&[200], object, OBJECT_MEDIA);
                op
            }
            "update" => {
                let description = format!("replace {of}the specified {kind}");
                let mut op = self.operation("put", "replace", suffix, description, "put");
                op.params = WRITE.to_vec();
                op.body = body(object, ANY_MEDIA, true);
                op.replies = replies(&[200, 201], object, OBJECT_MEDIA);
                op
            }
            "patch" => {
                let description = format!("partially update {of}the specified {kind}");
                let mut op = self.operation("patch", "patch", suffix, description, "patch");
                op.params = PATCH.to_vec();
                op.body = body(PATCH_BODY, PATCH_MEDIA, true);
                op.replies = replies(&[200, 201], object, OBJECT_MEDIA);
                op
            }
            "create" => {
                let description = format!("create {of}a {kind}");
                let mut op = self.operation("post", "create", suffix, description, "post");
                op.params = WRITE.to_vec();
                op.body = body(object, ANY_MEDIA, true);
                op.replies = replies(&[200, 201, 202], object, OBJECT_MEDIA);
                op
            }
            _ => return None,
        };
        Some(op)
    }

    fn item(
        &self,
        path: String,
        params: Vec<Param>,
        operations: Vec<Operation>,
    ) -> Option<PathItem> {
        (!operations.is_empty()).then_some(PathItem {
            path,
            params,
            operations,
        })
    }
}

fn subresource_gvk(sub: &Subresource) -> Gvk {
    Gvk {
        group: sub.group,
        version: sub.version,
        kind: sub.kind,
    }
}
