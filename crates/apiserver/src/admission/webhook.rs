//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook: the writes that
//! `admissionregistration.k8s.io/v1` webhook configurations select are sent to their webhooks
//! as `AdmissionReview`s. Mutating webhooks are called one after another, configurations in
//! name order, and may patch the object; validating webhooks are called together and any may
//! refuse. Configurations are read from the watch cache on each request.
//!
//! Deletes go to both kinds with the deleted object as `oldObject`; a mutating webhook may not
//! patch one.
//!
//! A webhook's `matchConditions` (CEL over `object`, `oldObject` and `request`) must all hold
//! for it to be called; one that fails to evaluate follows the webhook's `failurePolicy`.
//!
//! A mutating webhook with `reinvocationPolicy: IfNeeded` is called once more, after all the
//! others, when a later webhook changed the object after it was called.
//!
//! Not done as upstream: the in-tree mutating plugins are not run again when a reinvoked
//! webhook changes the object.

mod client;
mod matching;
pub(super) mod policy;
mod review;

use std::cell::RefCell;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::StatusCode;
use r8s_api::Resource;
use serde_json::{Value, json};

use super::{Attributes, Operation, cached};
use crate::authz::User;
use crate::objects;
use crate::registry::Registry;
use crate::status::{ApiError, Subject};
use client::Endpoint;
use matching::{Invocation, NamespaceLabels};
use review::PatchError;

const GROUP: &str = "admissionregistration.k8s.io";
const DEFAULT_TIMEOUT_SECONDS: u64 = 10;

tokio::task_local! {
    /// The warnings webhooks gave during one request, as upstream's `warning.AddWarning(ctx…)`.
    static WARNINGS: RefCell<Vec<String>>;
}

/// Runs one write, collecting the warnings its webhooks answered with for `Warning` headers.
pub async fn collect_warnings<F: Future>(write: F) -> (F::Output, Vec<String>) {
    WARNINGS
        .scope(RefCell::new(Vec::new()), async {
            let output = write.await;
            (output, WARNINGS.with(|w| w.take()))
        })
        .await
}

pub(super) fn add_warnings(warnings: Vec<String>) {
    // A write outside `collect_warnings` (the server's own) has nobody to tell.
    let _ = WARNINGS.try_with(|w| w.borrow_mut().extend(warnings));
}

/// One webhook of a configuration, with upstream's defaults filled in.
#[derive(Debug)]
pub struct Hook {
    pub configuration: String,
    pub name: String,
    pub rules: Value,
    /// `matchPolicy: Exact`; the default, Equivalent, also matches other served versions.
    pub exact_match: bool,
    pub namespace_selector: Value,
    pub object_selector: Value,
    pub match_conditions: Value,
    /// `reinvocationPolicy: IfNeeded` (mutating webhooks).
    pub reinvoke: bool,
    /// `failurePolicy: Ignore`; the default, Fail, refuses the request when the call fails.
    pub ignore_failures: bool,
    pub side_effects: Option<String>,
    pub timeout: Duration,
    pub review_versions: Vec<String>,
    pub endpoint: Result<Endpoint, String>,
    /// The decoded `caBundle` (PEM); empty: the system's roots. Not base64: an error to
    /// report when the webhook is called.
    pub ca_bundle: Result<Vec<u8>, String>,
}

impl Hook {
    pub fn parse(configuration: &str, spec: &Value) -> Self {
        let client_config = &spec["clientConfig"];
        let ca_bundle = match client_config["caBundle"].as_str() {
            None => Ok(Vec::new()),
            Some(encoded) => B64
                .decode(encoded)
                .map_err(|e| format!("invalid caBundle: {e}")),
        };
        Self {
            configuration: configuration.to_owned(),
            name: spec["name"].as_str().unwrap_or_default().to_owned(),
            rules: spec["rules"].clone(),
            exact_match: spec["matchPolicy"] == "Exact",
            namespace_selector: spec["namespaceSelector"].clone(),
            object_selector: spec["objectSelector"].clone(),
            match_conditions: spec["matchConditions"].clone(),
            reinvoke: spec["reinvocationPolicy"] == "IfNeeded",
            ignore_failures: spec["failurePolicy"] == "Ignore",
            side_effects: spec["sideEffects"].as_str().map(str::to_owned),
            timeout: Duration::from_secs(
                spec["timeoutSeconds"]
                    .as_u64()
                    .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            ),
            review_versions: spec["admissionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            endpoint: Endpoint::parse(client_config),
            ca_bundle,
        }
    }
}

pub const CREATE: &str = "CREATE";
pub const UPDATE: &str = "UPDATE";
pub const DELETE: &str = "DELETE";

/// What a webhook is told about a request: admission's attributes, and deletes besides
/// (r8s's in-tree plugins never see those).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub resource: &'static Resource,
    pub subresource: Option<&'a str>,
    /// `CREATE`, `UPDATE` or `DELETE`, as rules and reviews spell it.
    pub operation: &'static str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// The stored object an update replaces or a delete removes.
    pub old: Option<&'a Value>,
    pub user: Option<&'a User>,
    pub dry_run: bool,
}

impl<'a> From<&'a Attributes<'a>> for Request<'a> {
    fn from(attributes: &'a Attributes<'a>) -> Self {
        Self {
            resource: attributes.resource,
            subresource: attributes.subresource,
            operation: match attributes.operation {
                Operation::Create => CREATE,
                Operation::Update => UPDATE,
            },
            namespace: attributes.namespace,
            name: attributes.name,
            old: attributes.old,
            user: attributes.user,
            dry_run: attributes.dry_run,
        }
    }
}

/// Sends a ConversionReview to a CRD's conversion webhook and answers its reply.
pub(crate) async fn convert_review(
    registry: &Registry,
    crd: &str,
    client_config: &Value,
    review: &Value,
) -> Result<Value, String> {
    let hook = Hook::parse(
        crd,
        &json!({ "name": crd, "clientConfig": client_config, "timeoutSeconds": 30 }),
    );
    client::post(registry, &hook, review).await
}

/// Upstream's `NewInternalError`: 500 `Internal error occurred: <why>`.
fn internal_error(why: String) -> ApiError {
    ApiError {
        details: Some(json!({ "causes": [{ "message": why }] })),
        ..ApiError::internal(format!("Internal error occurred: {why}"))
    }
}

/// How a call went wrong.
enum Failure {
    /// The webhook could not be asked or answered nonsense: `failurePolicy` decides.
    Calling(String),
    /// The webhook refused, or the request cannot go to it: always an error.
    Refused(ApiError),
}

impl Failure {
    /// What the client is told, or `None` when the webhook's failure policy lets it pass.
    fn into_error(self, hook: &Hook) -> Option<ApiError> {
        match self {
            Self::Calling(why) if hook.ignore_failures => {
                tracing::warn!(
                    configuration = hook.configuration,
                    webhook = hook.name,
                    reason = why,
                    "failed calling webhook, failing open"
                );
                None
            }
            Self::Calling(why) => {
                let message = format!("failed calling webhook {:?}: {why}", hook.name);
                tracing::warn!(
                    configuration = hook.configuration,
                    webhook = hook.name,
                    reason = why,
                    "failed calling webhook, failing closed"
                );
                Some(internal_error(message))
            }
            Self::Refused(error) => Some(error),
        }
    }
}

/// The webhooks of every configuration of `plural`, configurations in name order.
async fn hooks(registry: &Registry, plural: &str) -> Result<Vec<Hook>, ApiError> {
    let mut configurations = cached(registry, GROUP, plural, None).await?;
    configurations.sort_by(|a, b| objects::name_of(a).cmp(objects::name_of(b)));
    Ok(configurations
        .iter()
        .flat_map(|c| {
            let name = objects::name_of(c);
            c["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |spec| Hook::parse(name, spec))
        })
        .collect())
}

/// The namespace named, from the watch cache or, if it is not there yet, the store, as upstream
/// falls back to a live read.
pub(super) async fn namespace(registry: &Registry, name: &str) -> Result<Value, ApiError> {
    let namespaces = r8s_api::find("", "v1", "namespaces").expect("catalogue has namespaces");
    // One object by its key: every pod write asks (PodSecurity), so no scan of them all.
    let key = objects::key(namespaces, None, name);
    if let Some(namespace) = registry.cache.resource(namespaces).await?.get(&key) {
        return Ok(namespace.value());
    }
    let kv = registry
        .store
        .get(&objects::key(namespaces, None, name))
        .await
        .map_err(|e| internal_error(e.to_string()))?;
    match kv {
        Some(kv) => objects::decode(&kv.value, kv.mod_revision),
        None => Err(ApiError::not_found(Subject {
            group: "",
            plural: "namespaces",
            name,
        })),
    }
}

/// Upstream's `ShouldCallHook`: the version to call the webhook with, if its rules,
/// namespaceSelector and objectSelector all select the request.
async fn should_call(
    registry: &Registry,
    hook: &Hook,
    request: &Request<'_>,
    object: Option<&Value>,
) -> Result<Option<Invocation>, ApiError> {
    let Some(invocation) = matching::invocation(hook, request) else {
        return Ok(None);
    };
    if !matching::object_selected(hook, object, request.old)? {
        return Ok(None);
    }
    if let Some(selector) = matching::namespace_selector(hook)? {
        let selected = match matching::namespace_labels_source(request, object) {
            NamespaceLabels::ClusterScoped => true,
            NamespaceLabels::Of(namespace) => selector.matches(namespace),
            NamespaceLabels::Lookup(name) => selector.matches(&namespace(registry, name).await?),
        };
        if !selected {
            return Ok(None);
        }
    }
    if hook.match_conditions.as_array().is_none_or(Vec::is_empty) {
        return Ok(Some(invocation));
    }
    let inputs = policy::Inputs::new(registry, request, &invocation, object);
    match inputs.conditions_hold(&hook.match_conditions) {
        Ok(true) => Ok(Some(invocation)),
        Ok(false) => Ok(None),
        Err(_) if hook.ignore_failures => Ok(None),
        Err(why) => Err(internal_error(format!(
            "failed calling webhook {:?}: {why}",
            hook.name
        ))),
    }
}

/// The object in the form of the version the webhook is called with.
fn as_invoked(request: &Request<'_>, invocation: &Invocation, object: &Value) -> Value {
    if std::ptr::eq(invocation.resource, request.resource) {
        return object.clone();
    }
    let stored = r8s_api::kinds::behaviour(request.resource).to_storage(object.clone());
    r8s_api::kinds::behaviour(invocation.resource).to_served(stored)
}

/// The object back in the form the request is written in.
fn as_requested(request: &Request<'_>, invocation: &Invocation, object: Value) -> Value {
    if std::ptr::eq(invocation.resource, request.resource) {
        return object;
    }
    let stored = r8s_api::kinds::behaviour(invocation.resource).to_storage(object);
    r8s_api::kinds::behaviour(request.resource).to_served(stored)
}

/// Sends one review and checks the answer; a denial is the client's error, as upstream's
/// `ToStatusErr` words it.
async fn call(
    registry: &Registry,
    hook: &Hook,
    invocation: &Invocation,
    request: &Request<'_>,
    object: Option<&Value>,
    mutating: bool,
) -> Result<review::Response, Failure> {
    if request.dry_run {
        match hook.side_effects.as_deref() {
            None => return Err(Failure::Calling("Webhook SideEffects is nil".into())),
            Some("None" | "NoneOnDryRun") => {}
            Some(_) => {
                return Err(Failure::Refused(ApiError::bad_request(format!(
                    "admission webhook {:?} does not support dry run",
                    hook.name
                ))));
            }
        }
    }
    let version = review::version_for(&hook.review_versions).map_err(Failure::Calling)?;
    if let Err(why) = &hook.endpoint {
        return Err(Failure::Calling(why.clone()));
    }
    let uid = objects::new_uid();
    let object = object.map(|o| as_invoked(request, invocation, o));
    let old = request.old.map(|o| as_invoked(request, invocation, o));
    let sent = review::build(
        version,
        &uid,
        request,
        invocation,
        object.as_ref(),
        old.as_ref(),
    );
    let answer = client::post(registry, hook, &sent)
        .await
        .map_err(|why| Failure::Calling(format!("failed to call webhook: {why}")))?;
    let response = review::verify(version, &uid, mutating, &answer)
        .map_err(|why| Failure::Calling(format!("received invalid webhook response: {why}")))?;
    add_warnings(response.warnings.clone());
    if !response.allowed {
        return Err(Failure::Refused(denial(&hook.name, &response.result)));
    }
    Ok(response)
}

/// Upstream's `ToStatusErr`: the webhook's Status, its message prefixed with who denied.
fn denial(hook: &str, status: &Value) -> ApiError {
    let denied_by = format!("admission webhook {hook:?} denied the request");
    let reason = status["reason"].as_str().unwrap_or_default();
    let message = match status["message"].as_str().unwrap_or_default() {
        "" if reason.is_empty() => format!("{denied_by} without explanation"),
        "" => format!("{denied_by}: {reason}"),
        message => format!("{denied_by}: {message}"),
    };
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 400)
        .unwrap_or(StatusCode::BAD_REQUEST);
    ApiError {
        details: status.get("details").cloned().filter(|d| d.is_object()),
        ..ApiError::new(code, known_reason(reason), message)
    }
}

/// The webhook's `reason`, if it is one of metav1's (the error carries a static reason).
fn known_reason(reason: &str) -> &'static str {
    const REASONS: [&str; 18] = [
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "StoreReadError",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "ServiceUnavailable",
    ];
    REASONS.into_iter().find(|r| *r == reason).unwrap_or("")
}

/// MutatingAdmissionWebhook on a create or update: each selected mutating webhook in turn,
/// its patch applied before the next is asked.
pub async fn admit(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &mut Value,
) -> Result<(), ApiError> {
    mutate(registry, &Request::from(attributes), Some(object)).await
}

/// ValidatingAdmissionPolicy, then ValidatingAdmissionWebhook, on a create or update.
pub async fn validate(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &Value,
) -> Result<(), ApiError> {
    let request = Request::from(attributes);
    policy::validate(registry, &request, Some(object)).await?;
    check(registry, &request, Some(object)).await
}

/// Both webhook plugins on a DELETE (`request.old` the object deleted), as upstream's
/// handler admits a delete before its store validates it.
pub async fn admit_delete(registry: &Registry, request: &Request<'_>) -> Result<(), ApiError> {
    debug_assert_eq!(request.operation, DELETE);
    mutate(registry, request, None).await?;
    policy::validate(registry, request, None).await?;
    check(registry, request, None).await
}

/// The mutating webhooks, in order; `object` is `None` for a delete, which they may see but
/// not change.
async fn mutate(
    registry: &Registry,
    request: &Request<'_>,
    mut object: Option<&mut Value>,
) -> Result<(), ApiError> {
    if matching::is_exempt(request.resource) {
        return Ok(());
    }
    let hooks = hooks(registry, "mutatingwebhookconfigurations").await?;
    // IfNeeded webhooks that were called, with the object as they left it.
    let mut reinvocable = Vec::new();
    for hook in &hooks {
        let called = mutate_once(registry, hook, request, object.as_deref_mut()).await?;
        if called && hook.reinvoke {
            reinvocable.push((hook, object.as_deref().cloned()));
        }
    }
    for (hook, left) in reinvocable {
        if object.as_deref() != left.as_ref() {
            mutate_once(registry, hook, request, object.as_deref_mut()).await?;
        }
    }
    Ok(())
}

/// Calls one mutating webhook if it selects the request and applies its patch; whether it was
/// called.
async fn mutate_once(
    registry: &Registry,
    hook: &Hook,
    request: &Request<'_>,
    object: Option<&mut Value>,
) -> Result<bool, ApiError> {
    let current = object.as_deref();
    let Some(invocation) = should_call(registry, hook, request, current).await? else {
        return Ok(false);
    };
    let response = match call(registry, hook, &invocation, request, current, true).await {
        Ok(response) => response,
        Err(failure) => match failure.into_error(hook) {
            Some(error) => return Err(error),
            None => return Ok(true),
        },
    };
    let Some((patch, patch_type)) = response.patch else {
        return Ok(true);
    };
    let Some(object) = object else {
        let empty =
            serde_json::from_slice::<json_patch::Patch>(&patch).is_ok_and(|ops| ops.0.is_empty());
        if empty {
            return Ok(true);
        }
        return Err(internal_error(format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            hook.name
        )));
    };
    let mut invoked = as_invoked(request, &invocation, object);
    match review::apply_patch(&mut invoked, &patch, &patch_type) {
        Ok(false) => {}
        Ok(true) => *object = as_requested(request, &invocation, invoked),
        Err(PatchError::NotApplicable(why)) => return Err(internal_error(why)),
        Err(PatchError::Undecodable(why)) => {
            if let Some(error) = Failure::Calling(why).into_error(hook) {
                return Err(error);
            }
        }
    }
    Ok(true)
}

/// The validating webhooks, all at once; the first refusal is the answer.
async fn check(
    registry: &Registry,
    request: &Request<'_>,
    object: Option<&Value>,
) -> Result<(), ApiError> {
    if matching::is_exempt(request.resource) {
        return Ok(());
    }
    let mut selected = Vec::new();
    for hook in hooks(registry, "validatingwebhookconfigurations").await? {
        if let Some(invocation) = should_call(registry, &hook, request, object).await? {
            selected.push((hook, invocation));
        }
    }
    let calls = selected.iter().map(|(hook, invocation)| async move {
        let result = call(registry, hook, invocation, request, object, false).await;
        result.err().and_then(|failure| failure.into_error(hook))
    });
    let refusals = futures::future::join_all(calls).await;
    match refusals.into_iter().flatten().next() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_defaults_are_upstreams() {
        let hook = Hook::parse(
            "c",
            &json!({ "name": "h", "clientConfig": { "url": "https://h/" } }),
        );
        assert!(!hook.exact_match);
        assert!(!hook.ignore_failures);
        assert_eq!(hook.timeout, Duration::from_secs(10));
        assert_eq!(hook.side_effects, None);
    }

    #[test]
    fn webhook_denial_is_worded_as_upstream() {
        let error = denial(
            "deny.example.com",
            &json!({ "code": 403, "message": "no labels" }),
        );
        assert_eq!(error.code, StatusCode::FORBIDDEN);
        assert_eq!(
            error.message,
            r#"admission webhook "deny.example.com" denied the request: no labels"#
        );
        let bare = denial("h", &Value::Null);
        assert_eq!(bare.code, StatusCode::BAD_REQUEST);
        assert_eq!(
            bare.message,
            r#"admission webhook "h" denied the request without explanation"#
        );
        let reason_only = denial("h", &json!({ "reason": "Forbidden", "code": 200 }));
        assert_eq!(reason_only.code, StatusCode::BAD_REQUEST);
        assert_eq!(reason_only.reason, "Forbidden");
        assert_eq!(
            reason_only.message,
            r#"admission webhook "h" denied the request: Forbidden"#
        );
    }

    #[test]
    fn webhook_call_failure_follows_failure_policy() {
        let spec = |policy: &str| json!({ "name": "h", "failurePolicy": policy, "clientConfig": { "url": "https://h/" } });
        let failing = Failure::Calling("connection refused".into());
        let error = failing
            .into_error(&Hook::parse("c", &spec("Fail")))
            .expect("Fail refuses");
        assert_eq!(error.code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            error.message,
            r#"Internal error occurred: failed calling webhook "h": connection refused"#
        );
        let ignored = Failure::Calling("connection refused".into());
        assert!(
            ignored
                .into_error(&Hook::parse("c", &spec("Ignore")))
                .is_none()
        );
    }

    #[tokio::test]
    async fn webhook_warnings_are_collected_per_write() {
        let ((), warnings) = collect_warnings(async { add_warnings(vec!["a".into()]) }).await;
        assert_eq!(warnings, vec!["a".to_owned()]);
        add_warnings(vec!["nobody listens".into()]);
    }
}
