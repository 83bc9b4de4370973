//! The generic REST registry: get, list, create, update, patch, delete and deletecollection for
//! any resource in the catalogue, over the store. What differs between kinds belongs in
//! `r8s_api` (per-kind behaviour), never in `if kind == …` here.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::StatusCode;
use r8s_api::Resource;
use r8s_api::kinds::{self, Deletion};
use r8s_store::{RangeOptions, Revision, Store, StoreError};
use serde_json::{Value, json};

use crate::admission::{self, Attributes, Operation};
use crate::allocator::{self, Allocator, Claim, Owner};
use crate::cache::{CachedObject, Hint, WatchCache};
use crate::fields::{self, Validation};
use crate::managed;
use crate::objects::{self, Query};
use crate::router::ResourcePath;
use crate::selectors::{self, FieldSelector, LabelSelector};
use crate::status::{ApiError, Subject};
use crate::strategic;

/// How many times a read-modify-write retries after losing a race.
const MAX_RETRIES: usize = 16;

/// Cheap to clone: a spawned task (a watch converting through a webhook) takes its own.
#[derive(Clone)]
pub struct Registry {
    pub store: Arc<dyn Store>,
    pub allocator: Allocator,
    pub cache: Arc<WatchCache>,
    /// The server's authorizer, for admission's CEL `authorizer` (set once it is built, after
    /// the caches it reads).
    pub authorizer: Arc<std::sync::OnceLock<Arc<crate::authz::Authorizer>>>,
}

/// A list's answer: built as a tree, or the watch cache's serialized objects, written out
/// without serializing them again.
pub enum Listing {
    Value(Value),
    Cached {
        resource: &'static Resource,
        revision: Revision,
        objects: Vec<Arc<CachedObject>>,
    },
}

impl Listing {
    pub fn into_value(self) -> Value {
        match self {
            Self::Value(value) => value,
            Self::Cached {
                resource,
                revision,
                objects,
            } => json!({
                "kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version(),
                "metadata": { "resourceVersion": revision.to_string() },
                "items": objects.iter().map(|o| o.value_as(resource)).collect::<Vec<_>>(),
            }),
        }
    }

    pub fn into_bytes(self) -> Bytes {
        match self {
            Self::Value(value) => Bytes::from(value.to_string()),
            Self::Cached {
                resource,
                revision,
                objects,
            } => {
                let items: Vec<Arc<str>> = objects.iter().map(|o| o.json_as(resource)).collect();
                let size: usize = items.iter().map(|json| json.len() + 1).sum();
                let mut body = String::with_capacity(size + 200);
                body.push_str(&format!(
                    r#"{{"kind":"{}List","apiVersion":"{}","metadata":{{"resourceVersion":"{revision}"}},"items":["#,
                    resource.kind,
                    resource.api_version()
                ));
                for (i, json) in items.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(json);
                }
                body.push_str("]}");
                Bytes::from(body)
            }
        }
    }
}

/// A decoded request body and how it was sent.
pub struct Body {
    pub object: Value,
}

/// How a write records field ownership in managedFields.
#[derive(Clone, Copy)]
pub(crate) enum Tracking<'a> {
    /// An Update by the request's manager, on the main resource or this subresource.
    Update(Option<&'a str>),
    /// The change already carries its managedFields (server-side apply), or upstream does not
    /// track this write (pods/binding).
    Untracked,
}

impl Registry {
    fn subject<'a>(path: &'a ResourcePath, name: &'a str) -> Subject<'a> {
        Subject {
            group: path.resource.group,
            plural: path.resource.plural,
            name,
        }
    }

    /// Namespaced objects live in an existing, non-terminating namespace (NamespaceLifecycle).
    async fn check_namespace(&self, namespace: &str, creating: bool) -> Result<(), ApiError> {
        let ns = r8s_api::find("", "v1", "namespaces").expect("catalogue has namespaces");
        let key = objects::key(ns, None, namespace);
        // The watch cache's copy when it has one, as upstream's NamespaceLifecycle reads its
        // informer; a namespace it has not seen yet is looked up in the store. Its content is
        // read only for a create: other writes need it to exist.
        let terminating = |object: &Value| {
            object["status"]["phase"] == "Terminating"
                || !object["metadata"]["deletionTimestamp"].is_null()
        };
        // None: no such namespace; else whether a create must be refused.
        let refused = match self.cache.object(ns, &key) {
            Some(cached) => Some(creating && terminating(&cached.value())),
            None => {
                let kv = self
                    .store
                    .get(&key)
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                match kv {
                    Some(kv) if creating => {
                        Some(terminating(&objects::decode(&kv.value, kv.mod_revision)?))
                    }
                    Some(_) => Some(false),
                    None => None,
                }
            }
        };
        let Some(refuse) = refused else {
            return Err(ApiError::not_found(Subject {
                group: "",
                plural: "namespaces",
                name: namespace,
            }));
        };
        if refuse {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    pub async fn get(&self, path: &ResourcePath, name: &str) -> Result<Value, ApiError> {
        let key = objects::key(path.resource, path.namespace.as_deref(), name);
        match self.store.get(&key).await {
            Ok(Some(kv)) => {
                let object = objects::decode_as(path.resource, &kv.value, kv.mod_revision)?;
                self.served(path.resource, object).await
            }
            Ok(None) => Err(ApiError::not_found(Self::subject(path, name))),
            Err(e) => Err(ApiError::from_store(e, Self::subject(path, name))),
        }
    }

    pub async fn list(&self, path: &ResourcePath, query: &Query) -> Result<Listing, ApiError> {
        let listing = self.list_stored(path, query).await?;
        let resource = path.resource;
        if !crate::crd::conversion::by_webhook(resource) {
            return Ok(listing);
        }
        // Objects a webhook converts: the whole page in one review.
        let mut list = listing.into_value();
        let items = list["items"].take();
        let items = items.as_array().cloned().unwrap_or_default();
        let converted =
            crate::crd::conversion::convert(self, resource, items, &resource.api_version()).await?;
        list["items"] = Value::Array(converted);
        Ok(Listing::Value(list))
    }

    /// An object of `resource` (as the synchronous paths left it) in the version `resource`
    /// serves, when a conversion webhook has to make it so.
    pub(crate) async fn served(
        &self,
        resource: &Resource,
        object: Value,
    ) -> Result<Value, ApiError> {
        if !crate::crd::conversion::by_webhook(resource) {
            return Ok(object);
        }
        let converted =
            crate::crd::conversion::convert(self, resource, vec![object], &resource.api_version())
                .await?;
        converted
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("conversion lost the object"))
    }

    /// What a write of `object` through `resource` stores, and the object as its writer then
    /// sees it: [`objects::to_store`], through the CRD's conversion webhook when it has one.
    pub(crate) async fn to_store(
        &self,
        resource: &Resource,
        object: Value,
    ) -> Result<(Bytes, Value), ApiError> {
        let Some(versions) = crate::crd::conversion::of(resource).filter(|v| v.webhook.is_some())
        else {
            return objects::to_store(resource, object);
        };
        let stored =
            crate::crd::conversion::convert(self, resource, vec![object], &versions.storage)
                .await?;
        let stored = stored
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("conversion lost the object"))?;
        let bytes = objects::encode(&stored)?;
        Ok((bytes, self.served(resource, stored).await?))
    }

    async fn list_stored(&self, path: &ResourcePath, query: &Query) -> Result<Listing, ApiError> {
        let resource = path.resource;
        let labels = LabelSelector::parse(query.label_selector.as_deref().unwrap_or(""))?;
        let fields = FieldSelector::for_kind(
            query.field_selector.as_deref().unwrap_or(""),
            kinds::behaviour(resource),
        )?;
        let prefix = objects::collection(resource, path.namespace.as_deref());
        // Unpaged lists come from the watch cache: "any" state (resourceVersion=0) at once;
        // the latest state, or one not older than a given revision, once the cache has it.
        let unpaged = query.continue_token.is_none() && query.limit == 0;
        let not_older_than = matches!(
            query.resource_version_match.as_deref(),
            None | Some("NotOlderThan")
        );
        let from_cache = match query.resource_version.as_deref() {
            _ if !unpaged => None,
            Some("0") if not_older_than => {
                let cache = self.cache.resource(resource).await?;
                Some(cache.snapshot(&format!("{prefix}/")))
            }
            None if query.resource_version_match.is_none() => {
                let cache = self.cache.resource(resource).await?;
                let current = self
                    .store
                    .current_revision()
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                cache
                    .consistent_snapshot(current, &format!("{prefix}/"))
                    .await
            }
            Some(rv) if query.resource_version_match.as_deref() == Some("NotOlderThan") => {
                match rv.parse::<Revision>() {
                    Ok(wanted) => {
                        let cache = self.cache.resource(resource).await?;
                        cache
                            .consistent_snapshot(wanted, &format!("{prefix}/"))
                            .await
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        if let Some((objects, revision)) = from_cache {
            let objects = objects
                .into_iter()
                .filter(|o| labels.matches(&o.selectable) && fields.matches(&o.selectable))
                .collect();
            return Ok(Listing::Cached {
                resource,
                revision,
                objects,
            });
        }
        let (mut start, mut revision) = match &query.continue_token {
            Some(token) => {
                let (rv, start) = decode_continue(token, &prefix)?;
                (Some(start), Some(rv))
            }
            None => (None, exact_revision(query)?),
        };
        // Selectors read the stored form, as the watch cache keeps it.
        let stored_kind = kinds::behaviour(resource.storage());
        let mut items = Vec::new();
        let mut next = None;
        loop {
            let want = if query.limit == 0 {
                0
            } else {
                query.limit - items.len()
            };
            let page = self
                .store
                .range(
                    &prefix,
                    RangeOptions {
                        limit: want,
                        start: start.clone(),
                        revision,
                    },
                )
                .await
                .map_err(|e| list_error(e, query.continue_token.is_some()))?;
            revision = Some(page.revision);
            let last = page.kvs.last().map(|kv| kv.key.clone());
            for kv in page.kvs {
                let object = objects::decode(&kv.value, kv.mod_revision)?;
                let selectable = selectors::selectable(&object, stored_kind);
                if labels.matches(&selectable) && fields.matches(&selectable) {
                    items.push(objects::served(resource, object));
                }
            }
            match (page.more, last) {
                (true, Some(last)) => {
                    start = Some(format!("{last}\0"));
                    if query.limit != 0 && items.len() >= query.limit {
                        next = Some(encode_continue(page.revision, &last, &prefix));
                        break;
                    }
                }
                _ => break,
            }
        }
        let mut metadata = json!({ "resourceVersion": revision.unwrap_or_default().to_string() });
        if let Some(token) = next {
            metadata["continue"] = json!(token);
        }
        Ok(Listing::Value(json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": items,
        })))
    }

    pub async fn create(
        &self,
        path: &ResourcePath,
        body: Body,
        query: &Query,
    ) -> Result<(Value, Vec<String>), ApiError> {
        managed::validate_options(
            "CreateOptions",
            query.field_manager.as_deref(),
            false,
            false,
        )?;
        let create = self.create_tracked(path, body, query, Tracking::Update(None));
        let (created, from_webhooks) = admission::collect_warnings(create).await;
        let (object, mut warnings) = created?;
        warnings.extend(from_webhooks);
        Ok((object, warnings))
    }

    async fn create_tracked(
        &self,
        path: &ResourcePath,
        body: Body,
        query: &Query,
        tracking: Tracking<'_>,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let resource = path.resource;
        let mut object = body.object;
        check_type(resource, &mut object)?;
        let warnings = prune(resource, &mut object, query)?;
        let meta = object["metadata"].take();
        let mut meta = match meta {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            _ => return Err(ApiError::bad_request("metadata must be an object")),
        };
        if let Some(namespace) = &path.namespace {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(namespace));
                }
            }
        } else if resource.namespaced {
            return Err(ApiError::method_not_allowed(
                "a namespaced object is created in a namespace: POST to …/namespaces/<namespace>/<resource>",
            ));
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
            && !prefix.is_empty()
        {
            name = format!("{prefix}{}", objects::generated_suffix());
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                resource.kind,
                resource.group,
                "",
                vec![(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
        if let Some(problem) = objects::name_problems(resource, &name) {
            return Err(ApiError::invalid(
                resource.kind,
                resource.group,
                &name,
                vec![("metadata.name".into(), problem)],
            ));
        }
        if let Some(namespace) = &path.namespace {
            self.check_namespace(namespace, true).await?;
        }
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(objects::new_uid()));
        meta.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        for server_owned in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(server_owned);
        }
        object["metadata"] = Value::Object(meta);
        let admission = Attributes {
            resource,
            subresource: None,
            operation: Operation::Create,
            namespace: path.namespace.as_deref(),
            name: &name,
            old: None,
            user: query.user.as_ref(),
            dry_run: query.dry_run,
        };
        admission::admit(self, &admission, &mut object).await?;
        let kind = kinds::behaviour(resource);
        kind.prepare_for_create(&mut object);
        if kind.records_requester()
            && let Some(user) = &query.user
            && let Some(spec) = object["spec"].as_object_mut()
        {
            spec.insert("username".into(), user.name.clone().into());
            if !user.uid.is_empty() {
                spec.insert("uid".into(), user.uid.clone().into());
            }
            spec.insert("groups".into(), serde_json::json!(user.groups));
            if !user.extra.is_empty() {
                spec.insert("extra".into(), serde_json::json!(user.extra));
            }
        }
        if let Tracking::Update(subresource) = tracking {
            managed::record_update(resource, subresource, None, &mut object, &query.manager());
        }
        let problems = kind.validate(&object);
        if !problems.is_empty() {
            return Err(ApiError::invalid(
                resource.kind,
                resource.group,
                &name,
                problems,
            ));
        }
        crate::crd::admit(resource, &mut object, None)?;
        admission::prepare_policy(resource, path.subresource.as_deref(), &mut object)?;
        admission::validate(self, &admission, &object).await?;
        let key = objects::key(resource, path.namespace.as_deref(), &name);
        if query.dry_run {
            if self.store.get(&key).await.ok().flatten().is_some() {
                return Err(ApiError::already_exists(Self::subject(path, &name)));
            }
            let (_, object) = self.to_store(resource, object).await?;
            return Ok((object, warnings));
        }
        let owner = Owner {
            resource,
            namespace: path.namespace.as_deref(),
            name: &name,
        };
        let wanted = kind.allocations(&object);
        // An existing object is AlreadyExists, not a clash over the addresses it holds.
        if !wanted.is_empty() && self.store.get(&key).await.ok().flatten().is_some() {
            return Err(ApiError::already_exists(Self::subject(path, &name)));
        }
        let claims = self
            .allocator
            .claim(&mut object, &wanted, &[], &owner, resource.kind)
            .await?;
        kind.after_allocation(&mut object);
        let (stored, mut object) = self.to_store(resource, object).await?;
        let hint = self.promise(resource, &key, &stored);
        let created = self.store.create(&key, stored, None).await;
        let revision = match created {
            Ok(revision) => revision,
            Err(e) => {
                drop(hint);
                self.allocator.release(&claims).await;
                return Err(ApiError::from_store(e, Self::subject(path, &name)));
            }
        };
        objects::set_resource_version(&mut object, revision);
        if let Some(hint) = hint {
            hint.send(revision, &object);
        }
        Ok((object, warnings))
    }

    /// Promises the object about to be stored at `key` as `bytes` to its watch cache, which
    /// then need not decode its event; only for objects stored as they are served.
    fn promise(&self, resource: &'static Resource, key: &str, bytes: &Bytes) -> Option<Hint> {
        if resource.stored_as.is_some() || crate::crd::conversion::of(resource).is_some() {
            return None;
        }
        Some(self.cache.existing(resource)?.promise(key, bytes))
    }

    /// PUT: replaces the object (or, for the status subresource, its status only).
    pub async fn update(
        &self,
        path: &ResourcePath,
        name: &str,
        body: Body,
        query: &Query,
    ) -> Result<(Value, Vec<String>), ApiError> {
        managed::validate_options(
            "UpdateOptions",
            query.field_manager.as_deref(),
            false,
            false,
        )?;
        let resource = path.resource;
        let mut object = body.object;
        check_type(resource, &mut object)?;
        let warnings = prune(resource, &mut object, query)?;
        let body_name = objects::name_of(&object);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let expected: Option<Revision> =
            match object["metadata"]["resourceVersion"].as_str() {
                Some(rv) if !rv.is_empty() => Some(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
                _ => None,
            };
        let subresource = path.subresource.clone();
        let update = self.modify(path, name, query, expected, move |current| {
            Ok(merge_update(
                resource,
                subresource.as_deref(),
                current,
                object.clone(),
            ))
        });
        let (updated, from_webhooks) = admission::collect_warnings(update).await;
        let mut warnings = warnings;
        warnings.extend(from_webhooks);
        Ok((updated?, warnings))
    }

    /// PATCH with a JSON patch, a JSON merge patch, a strategic merge patch or a server-side
    /// apply configuration; answers 201 when an apply created the object.
    pub async fn patch(
        &self,
        path: &ResourcePath,
        name: &str,
        content_type: &str,
        patch: Bytes,
        query: &Query,
    ) -> Result<(StatusCode, Value, Vec<String>), ApiError> {
        let resource = path.resource;
        let kind = PatchKind::from_content_type(content_type)?;
        managed::validate_options(
            "PatchOptions",
            query.field_manager.as_deref(),
            matches!(kind, PatchKind::Apply),
            query.force.is_some(),
        )?;
        if let PatchKind::Apply = kind {
            let apply = self.apply(path, name, &patch, query);
            let (applied, from_webhooks) = admission::collect_warnings(apply).await;
            let (code, object, mut warnings) = applied?;
            warnings.extend(from_webhooks);
            return Ok((code, object, warnings));
        }
        let patch: Value = serde_json::from_slice(&patch)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let json_patch = match kind {
            PatchKind::Json => Some(
                serde_json::from_value::<json_patch::Patch>(patch.clone())
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?,
            ),
            _ => None,
        };
        let definition = match kind {
            PatchKind::Strategic => Some(
                crate::openapi::definitions()
                    .of_kind(resource.group, resource.version, resource.kind)
                    .ok_or_else(|| {
                        ApiError::unsupported_media_type("application/strategic-merge-patch+json")
                    })?,
            ),
            _ => None,
        };
        let subresource = path.subresource.clone();
        let warnings = std::sync::Mutex::new(Vec::new());
        let patching = self.modify(path, name, query, None, |current| {
            let mut patched = current.clone();
            match (&json_patch, definition) {
                (Some(ops), _) => json_patch::patch(&mut patched, ops).map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!("the JSON patch could not be applied: {e}"),
                    )
                })?,
                (None, Some(definition)) => {
                    patched = strategic::apply(current, &patch, definition)?
                }
                (None, None) => json_patch::merge(&mut patched, &patch),
            }
            check_precondition(resource, current, &patched)?;
            let unknown = prune(resource, &mut patched, query)?;
            *warnings.lock().expect("poisoned") = unknown;
            Ok(merge_update(
                resource,
                subresource.as_deref(),
                current,
                patched,
            ))
        });
        let (updated, from_webhooks) = admission::collect_warnings(patching).await;
        let updated = updated?;
        let mut warnings = warnings.into_inner().expect("poisoned");
        warnings.extend(from_webhooks);
        Ok((StatusCode::OK, updated, warnings))
    }

    /// Server-side apply: merges the configuration into the object, or creates it.
    async fn apply(
        &self,
        path: &ResourcePath,
        name: &str,
        body: &[u8],
        query: &Query,
    ) -> Result<(StatusCode, Value, Vec<String>), ApiError> {
        let resource = path.resource;
        let mut config = apply_configuration(resource, path, name, body)?;
        let warnings = prune(resource, &mut config, query)?;
        let force = query.force.unwrap_or(false);
        let manager = query.manager();
        let subresource = path.subresource.as_deref();
        for _ in 0..MAX_RETRIES {
            match self.get(path, name).await {
                Ok(_) => {
                    let updated = self
                        .modify_tracked(path, name, query, None, Tracking::Untracked, |current| {
                            let merged = managed::apply(
                                resource,
                                subresource,
                                Some(current),
                                &config,
                                &manager,
                                force,
                            )?;
                            check_precondition(resource, current, &merged)?;
                            let mut next =
                                merge_update(resource, subresource, current, merged.clone());
                            // Subresource writes keep the stored metadata, but not its entries.
                            next["metadata"]["managedFields"] =
                                merged["metadata"]["managedFields"].clone();
                            if next["metadata"]["managedFields"].is_null()
                                && let Some(meta) = next["metadata"].as_object_mut()
                            {
                                meta.remove("managedFields");
                            }
                            Ok(next)
                        })
                        .await?;
                    return Ok((StatusCode::OK, updated, warnings));
                }
                Err(e) if e.code == StatusCode::NOT_FOUND && subresource.is_none() => {
                    let object = managed::apply(resource, None, None, &config, &manager, force)?;
                    match self
                        .create_tracked(path, Body { object }, query, Tracking::Untracked)
                        .await
                    {
                        Ok((created, more)) => {
                            let mut all = warnings;
                            all.extend(more);
                            return Ok((StatusCode::CREATED, created, all));
                        }
                        // Someone created it meanwhile: apply over theirs.
                        Err(e) if e.reason == "AlreadyExists" => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict(
            Self::subject(path, name),
            "too many concurrent writers; try again",
        ))
    }

    /// Read, change, compare-and-swap; retried when another writer got in between, unless the
    /// client pinned a resourceVersion.
    pub(crate) async fn modify<F>(
        &self,
        path: &ResourcePath,
        name: &str,
        query: &Query,
        expected: Option<Revision>,
        change: F,
    ) -> Result<Value, ApiError>
    where
        F: Fn(&Value) -> Result<Value, ApiError>,
    {
        let tracking = Tracking::Update(path.subresource.as_deref());
        self.modify_tracked(path, name, query, expected, tracking, change)
            .await
    }

    /// `modify`, recording field ownership as `tracking` says. The first attempt starts from
    /// the watch cache's copy when there is one, as upstream's GuaranteedUpdate starts from
    /// its cached object: most writes then need no store read. A copy may be stale, so a
    /// cached start that races, fails or changes nothing is decided again on the store's.
    pub(crate) async fn modify_tracked<F>(
        &self,
        path: &ResourcePath,
        name: &str,
        query: &Query,
        expected: Option<Revision>,
        tracking: Tracking<'_>,
        change: F,
    ) -> Result<Value, ApiError>
    where
        F: Fn(&Value) -> Result<Value, ApiError>,
    {
        let mut from_cache = !query.dry_run;
        for _ in 0..MAX_RETRIES {
            let cached = if from_cache {
                self.cached(path, name)
            } else {
                None
            };
            from_cache = cached.is_some();
            let current = match cached {
                Some(current) => current,
                None => self.get(path, name).await?,
            };
            let target = Target {
                path,
                name,
                query,
                expected,
                tracking,
            };
            let attempt = self.attempt(&target, &change, current).await;
            match attempt {
                Ok(Attempt::Done(written)) => return Ok(written),
                Ok(Attempt::Unchanged(current)) if !from_cache => return Ok(current),
                Err(e) if !from_cache => return Err(e),
                _ => from_cache = false,
            }
        }
        Err(ApiError::conflict(
            Self::subject(path, name),
            "too many concurrent writers; try again",
        ))
    }

    /// The watch cache's copy of an object, as `path`'s resource serves it; none when no
    /// cache runs for it, the cache lacks it, or serving it takes a conversion webhook.
    fn cached(&self, path: &ResourcePath, name: &str) -> Option<Value> {
        if crate::crd::conversion::by_webhook(path.resource) {
            return None;
        }
        let key = objects::key(path.resource, path.namespace.as_deref(), name);
        Some(
            self.cache
                .object(path.resource, &key)?
                .value_as(path.resource),
        )
    }

    /// One read-change-write from `current`.
    async fn attempt<F>(
        &self,
        target: &Target<'_>,
        change: &F,
        current: Value,
    ) -> Result<Attempt, ApiError>
    where
        F: Fn(&Value) -> Result<Value, ApiError>,
    {
        let Target {
            path,
            name,
            query,
            expected,
            tracking,
        } = *target;
        let manager = query.manager();
        let key = objects::key(path.resource, path.namespace.as_deref(), name);
        let subject = Self::subject(path, name);
        let current_rev: Revision = current["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|rv| rv.parse().ok())
            .unwrap_or_default();
        if expected.is_some_and(|e| e != current_rev) {
            return Err(ApiError::from_store(
                StoreError::Conflict {
                    key: key.clone(),
                    expected: expected.unwrap_or_default(),
                    current: Box::new(r8s_store::KeyValue {
                        key: key.clone(),
                        value: Bytes::new(),
                        create_revision: 0,
                        mod_revision: current_rev,
                    }),
                },
                subject,
            ));
        }
        let mut updated = change(&current)?;
        let admission = Attributes {
            resource: path.resource,
            subresource: path.subresource.as_deref(),
            operation: Operation::Update,
            namespace: path.namespace.as_deref(),
            name,
            old: Some(&current),
            user: query.user.as_ref(),
            dry_run: query.dry_run,
        };
        admission::admit(self, &admission, &mut updated).await?;
        if let Tracking::Update(subresource) = tracking {
            managed::record_update(
                path.resource,
                subresource,
                Some(&current),
                &mut updated,
                &manager,
            );
        }
        if updated == current {
            return Ok(Attempt::Unchanged(current));
        }
        let kind = kinds::behaviour(path.resource);
        let mut problems = kind.validate(&updated);
        problems.extend(kind.immutable_fields(&current, &updated));
        if !problems.is_empty() {
            let (kind, group) = (path.resource.kind, path.resource.group);
            return Err(ApiError::invalid(kind, group, name, problems));
        }
        crate::crd::admit(path.resource, &mut updated, Some(&current))?;
        admission::prepare_policy(path.resource, path.subresource.as_deref(), &mut updated)?;
        admission::validate(self, &admission, &updated).await?;
        if query.dry_run {
            return Ok(Attempt::Done(
                self.to_store(path.resource, updated).await?.1,
            ));
        }
        let old_claims = allocator::held(&kind.allocations(&current), &current);
        if finalized(path.resource, &updated) {
            // The last finalizer is gone from an object being deleted: it goes now.
            return match self.store.delete(&key, Some(current_rev)).await {
                Ok(_) => {
                    self.allocator.release(&old_claims).await;
                    Ok(Attempt::Done(updated))
                }
                Err(StoreError::Conflict { .. }) if expected.is_none() => Ok(Attempt::Raced),
                Err(e) => Err(ApiError::from_store(e, subject)),
            };
        }
        let owner = Owner {
            resource: path.resource,
            namespace: path.namespace.as_deref(),
            name,
        };
        let wanted = kind.allocations(&updated);
        let claims = self
            .allocator
            .claim(
                &mut updated,
                &wanted,
                &old_claims,
                &owner,
                path.resource.kind,
            )
            .await?;
        kind.after_allocation(&mut updated);
        let (stored, mut updated) = self.to_store(path.resource, updated).await?;
        let hint = self.promise(path.resource, &key, &stored);
        let written = self.store.update(&key, stored, current_rev, None).await;
        match written {
            Ok(revision) => {
                // Its store event waits for this: hand it over before anything else.
                objects::set_resource_version(&mut updated, revision);
                if let Some(hint) = hint {
                    hint.send(revision, &updated);
                }
                let kept = allocator::held(&kind.allocations(&updated), &updated);
                let freed: Vec<Claim> = old_claims
                    .into_iter()
                    .filter(|c| !kept.contains(c))
                    .collect();
                self.allocator.release(&freed).await;
                Ok(Attempt::Done(updated))
            }
            Err(StoreError::Conflict { .. }) if expected.is_none() => {
                self.allocator.release(&claims).await;
                Ok(Attempt::Raced)
            }
            Err(e) => {
                self.allocator.release(&claims).await;
                Err(ApiError::from_store(e, subject))
            }
        }
    }
}

/// What a read-change-write writes, and how.
#[derive(Clone, Copy)]
struct Target<'a> {
    path: &'a ResourcePath,
    name: &'a str,
    query: &'a Query,
    expected: Option<Revision>,
    tracking: Tracking<'a>,
}

/// How one read-change-write ended.
enum Attempt {
    /// Written (or, for a dry run, what would be): the object now.
    Done(Value),
    /// The change changed nothing: the object as it was read.
    Unchanged(Value),
    /// Another writer got in between.
    Raced,
}

#[derive(Clone, Copy)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            "application/apply-patch+cbor" => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "CBOR apply configurations are not built in r8s; send application/apply-patch+yaml",
            )),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Applies a client's new version of an object over the stored one, keeping what the server
/// owns: identity and timestamps always; `status` on the main resource and everything but
/// `status` on the status subresource, for kinds that split them.
fn merge_update(
    resource: &Resource,
    subresource: Option<&str>,
    current: &Value,
    mut new: Value,
) -> Value {
    for owned in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
    ] {
        match current["metadata"].get(owned) {
            Some(value) => new["metadata"][owned] = value.clone(),
            None => {
                if let Some(meta) = new["metadata"].as_object_mut() {
                    meta.remove(owned);
                }
            }
        }
    }
    new["apiVersion"] = current["apiVersion"].clone();
    new["kind"] = current["kind"].clone();
    let kind = kinds::behaviour(resource);
    match subresource {
        // A subresource writes its own fields and keeps the rest.
        Some(sub) => {
            let fields = kind.subresource_fields(sub).unwrap_or(&[]);
            let mut kept = current.clone();
            for field in fields {
                match new.get_mut(*field) {
                    Some(value) if !value.is_null() => kept[*field] = value.take(),
                    _ => {
                        if let Some(map) = kept.as_object_mut() {
                            map.remove(*field);
                        }
                    }
                }
            }
            kind.prepare_for_subresource_update(sub, &mut kept, current);
            new = kept;
        }
        // The main resource keeps what its subresources own.
        None => {
            for sub in resource.subresources {
                for field in kind.subresource_fields(sub.name).unwrap_or(&[]) {
                    if *field == "spec" {
                        continue;
                    }
                    match current.get(*field) {
                        Some(value) => new[*field] = value.clone(),
                        None => {
                            if let Some(map) = new.as_object_mut() {
                                map.remove(*field);
                            }
                        }
                    }
                }
            }
            kind.prepare_for_update(&mut new, current);
        }
    }
    // The generation counts changes to the desired state: everything but metadata and status.
    let desired = |o: &Value| {
        let mut o = o.clone();
        if let Some(map) = o.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        o
    };
    // Only kinds that keep a generation (set at create) count changes.
    if let Some(generation) = current["metadata"]["generation"].as_i64()
        && desired(&new) != desired(current)
    {
        new["metadata"]["generation"] = json!(generation + 1);
    }
    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    new
}

/// A patch or apply configuration that names a resourceVersion is a precondition on it.
fn check_precondition(
    resource: &Resource,
    current: &Value,
    patched: &Value,
) -> Result<(), ApiError> {
    let wanted = patched["metadata"]["resourceVersion"].as_str();
    if let Some(wanted) = wanted
        && Some(wanted) != current["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::conflict(
            Subject {
                group: resource.group,
                plural: resource.plural,
                name: objects::name_of(current),
            },
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    Ok(())
}

/// Decodes a server-side apply body (YAML or JSON) and checks it names this object.
fn apply_configuration(
    resource: &Resource,
    path: &ResourcePath,
    name: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut config: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "an apply configuration must be an object",
        ));
    }
    for field in ["apiVersion", "kind"] {
        if config[field].as_str().is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(format!(
                "Object '{}' is missing in '{config}'",
                if field == "kind" {
                    "Kind"
                } else {
                    "apiVersion"
                }
            )));
        }
    }
    let api_version = resource.api_version();
    if config["apiVersion"] != api_version.as_str() {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {}, expected: {api_version}",
            config["apiVersion"].as_str().unwrap_or_default()
        )));
    }
    check_type(resource, &mut config)?;
    match config["metadata"]["name"].as_str() {
        Some(given) if !given.is_empty() && given != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        _ => config["metadata"]["name"] = json!(name),
    }
    if let (Some(given), Some(namespace)) = (
        config["metadata"]["namespace"].as_str(),
        path.namespace.as_deref(),
    ) && !given.is_empty()
        && given != namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(config)
}

/// Fills in apiVersion and kind, and refuses a body of another type.
fn check_type(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let api_version = resource.api_version();
    match object["apiVersion"].as_str() {
        None | Some("") => object["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match object["kind"].as_str() {
        None | Some("") => object["kind"] = json!(resource.kind),
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    Ok(())
}

/// A list pinned to a revision: `resourceVersion=N&resourceVersionMatch=Exact`.
fn exact_revision(query: &Query) -> Result<Option<Revision>, ApiError> {
    match query.resource_version_match.as_deref() {
        None | Some("NotOlderThan") => Ok(None),
        Some("Exact") => match query.resource_version()? {
            Some(0) | None => Err(ApiError::bad_request(
                "resourceVersionMatch=Exact needs a resourceVersion other than 0",
            )),
            rev => Ok(rev),
        },
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported resourceVersionMatch {other:?}: Exact or NotOlderThan"
        ))),
    }
}

fn list_error(e: StoreError, continuing: bool) -> ApiError {
    match e {
        StoreError::Compacted { .. } if continuing => ApiError::gone(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        ),
        StoreError::Compacted { requested, .. } => {
            ApiError::gone(format!("too old resource version: {requested}"))
        }
        other => ApiError::from_store(
            other,
            Subject {
                group: "",
                plural: "",
                name: "",
            },
        ),
    }
}

fn encode_continue(revision: Revision, last_key: &str, prefix: &str) -> String {
    let start = last_key.strip_prefix(prefix).unwrap_or(last_key);
    B64.encode(
        json!({ "v": "meta.k8s.io/v1", "rv": revision, "start": format!("{start}\u{0}") })
            .to_string(),
    )
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = B64.decode(token).map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = value["rv"].as_i64().filter(|rv| *rv > 0).ok_or_else(bad)?;
    let start = value["start"].as_str().ok_or_else(bad)?;
    // A token names a position inside this collection, never a way out of it.
    if start.contains("..") || !start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, format!("{prefix}{start}")))
}

/// Whether an object being deleted has no finalizer left, of either kind.
fn finalized(resource: &Resource, object: &Value) -> bool {
    if object["metadata"]["deletionTimestamp"].is_null() {
        return false;
    }
    let metadata_pending = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let mut probe = object.clone();
    !metadata_pending && kinds::behaviour(resource).on_delete(&mut probe) == Deletion::Now
}

/// Drops fields the kind's schema does not have: an error under `fieldValidation=Strict`,
/// warnings otherwise (none under `Ignore`).
fn prune(resource: &Resource, object: &mut Value, query: &Query) -> Result<Vec<String>, ApiError> {
    let validation = Validation::parse(query.field_validation.as_deref())?;
    let unknown = crate::crd::prune_unknown(resource, object).unwrap_or_else(|| {
        fields::prune_unknown(resource.group, resource.version, resource.kind, object)
    });
    match validation {
        _ if unknown.is_empty() => Ok(Vec::new()),
        Validation::Strict => Err(fields::strict_error(
            resource.kind,
            &resource.api_version(),
            &unknown,
        )),
        Validation::Warn => Ok(unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect()),
        Validation::Ignore => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use r8s_store::{EmbeddedOptions, EmbeddedStore};

    async fn registry(dir: &std::path::Path) -> Registry {
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap());
        Registry {
            allocator: Allocator::new(store.clone(), ([10, 96, 0, 0].into(), 12), 30000..=32767),
            cache: Arc::new(WatchCache::new(store.clone())),
            store,
            authorizer: Default::default(),
        }
    }

    fn configmap(data: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "default", "uid": "u1"},
            "data": data,
        })
    }

    /// A store holding the ConfigMap at `data`, and a watch cache stuck on an older copy of it
    /// at `stale`.
    async fn stale_cache(
        dir: &std::path::Path,
        data: Value,
        stale: Value,
    ) -> (Registry, ResourcePath) {
        let registry = registry(dir).await;
        let resource = r8s_api::find("", "v1", "configmaps").unwrap();
        let key = objects::key(resource, Some("default"), "cm");
        let first = registry
            .store
            .create(
                &key,
                objects::encode(&configmap(stale.clone())).unwrap(),
                None,
            )
            .await
            .unwrap();
        registry
            .store
            .update(
                &key,
                objects::encode(&configmap(data)).unwrap(),
                first,
                None,
            )
            .await
            .unwrap();
        let mut old = configmap(stale);
        objects::set_resource_version(&mut old, first);
        registry
            .cache
            .install_unfed(resource, vec![(key, old)])
            .await;
        let path = ResourcePath {
            resource,
            namespace: Some("default".into()),
            name: Some("cm".into()),
            subresource: None,
        };
        (registry, path)
    }

    /// Sets `data.b` through the registry's read-change-write.
    async fn add_b_through(registry: &Registry, path: &ResourcePath) -> Value {
        let query = Query::parse(None).unwrap();
        let add_b = |current: &Value| {
            let mut next = current.clone();
            next["data"]["b"] = json!("added");
            Ok(next)
        };
        registry
            .modify(path, "cm", &query, None, add_b)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_write_from_a_stale_cached_copy_is_made_again_from_the_stores() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, path) =
            stale_cache(dir.path(), json!({"a": "new"}), json!({"a": "old"})).await;
        let written = add_b_through(&registry, &path).await;
        assert_eq!(written["data"], json!({"a": "new", "b": "added"}));
    }

    #[tokio::test]
    async fn a_change_that_a_stale_copy_already_shows_is_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, path) = stale_cache(
            dir.path(),
            json!({"a": "new"}),
            json!({"a": "new", "b": "added"}),
        )
        .await;
        let written = add_b_through(&registry, &path).await;
        assert_eq!(written["data"], json!({"a": "new", "b": "added"}));
        let stored = registry.get(&path, "cm").await.unwrap();
        assert_eq!(stored["data"], json!({"a": "new", "b": "added"}));
    }
}
