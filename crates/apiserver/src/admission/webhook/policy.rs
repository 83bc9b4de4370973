//! ValidatingAdmissionPolicy (`admissionregistration.k8s.io/v1`): CEL validations that run in
//! the server instead of a webhook. A ValidatingAdmissionPolicyBinding applies a policy;
//! a write is checked by every binding whose policy's `matchConstraints` (and the binding's
//! own `matchResources`) select it, whose `matchConditions` all hold, once per parameter
//! object its `paramRef` finds. A validation that is false denies the write (action `Deny`,
//! with the validation's reason and message) or adds a warning (`Warn`); an expression that
//! fails to evaluate follows `failurePolicy`. `Audit` has no audit log to write to in r8s.
//!
//! Matching is the webhooks' (rules, matchPolicy, namespace and object selectors), and the
//! CEL inputs (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `variables`,
//! `authorizer` asking the server's RBAC on the requester's behalf) are upstream's.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use http::StatusCode;
use r8s_api::Resource;
use r8s_cel::Value as Cel;
use serde_json::{Value, json};

use super::matching::{self, Invocation};
use super::{GROUP, Hook, Request, add_warnings, cached, namespace, should_call};
use crate::authz::User;
use crate::objects;
use crate::registry::Registry;
use crate::selectors::LabelSelector;
use crate::status::ApiError;
use r8s_cel::authz::{Authorize, Question};

/// Compiled expressions by source: policies are few and their expressions repeat on every
/// request. Bounded by clearing, as a cache of a handful of entries in practice.
static PROGRAMS: LazyLock<Mutex<HashMap<String, Arc<r8s_cel::Program>>>> =
    LazyLock::new(Default::default);
const MAX_PROGRAMS: usize = 4096;

fn program(source: &str) -> Result<Arc<r8s_cel::Program>, String> {
    let mut programs = PROGRAMS.lock().expect("poisoned");
    if let Some(found) = programs.get(source) {
        return Ok(found.clone());
    }
    let compiled = Arc::new(r8s_cel::compile(source)?);
    if programs.len() >= MAX_PROGRAMS {
        programs.clear();
    }
    programs.insert(source.to_owned(), compiled.clone());
    Ok(compiled)
}

/// What an expression came to.
enum Outcome {
    Value(Cel),
    Error(String),
}

/// The variables expressions of a policy (or a webhook's `matchConditions`) see.
pub(super) struct Inputs {
    variables: Vec<(&'static str, Cel)>,
}

impl Inputs {
    /// `object`, `oldObject`, `request` and `authorizer` for a write (or delete) matched as
    /// `invocation`.
    pub(super) fn new(
        registry: &Registry,
        request: &Request<'_>,
        invocation: &Invocation,
        object: Option<&Value>,
    ) -> Self {
        let review = super::review::build("v1", "", request, invocation, None, None);
        let mut admission = review["request"].clone();
        if let Some(fields) = admission.as_object_mut() {
            fields.remove("object");
            fields.remove("oldObject");
            fields.remove("uid");
        }
        let or_null = |o: Option<&Value>| o.map_or(Cel::Null, r8s_cel::value::untyped);
        let asker = Asker {
            authorizer: registry.authorizer.get().cloned(),
            user: request.user.cloned(),
        };
        let resource = invocation.resource;
        let request_resource = Question {
            group: resource.group.to_owned(),
            resource: resource.plural.to_owned(),
            subresource: request.subresource.unwrap_or_default().to_owned(),
            namespace: request.namespace.unwrap_or_default().to_owned(),
            name: request.name.to_owned(),
            ..Default::default()
        };
        Self {
            variables: vec![
                ("object", or_null(object)),
                ("oldObject", or_null(request.old)),
                ("request", r8s_cel::value::untyped(&admission)),
                (
                    "authorizer",
                    r8s_cel::authz::variable(Arc::new(asker), request_resource),
                ),
            ],
        }
    }

    fn with(&self, name: &'static str, value: Cel) -> Self {
        let mut variables = self.variables.clone();
        variables.retain(|(n, _)| *n != name);
        variables.push((name, value));
        Self { variables }
    }

    fn evaluate(&self, source: &str) -> Outcome {
        let program = match program(source) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(format!("compilation failed: {e}")),
        };
        let context = r8s_cel::context(self.variables.iter().map(|(n, v)| (*n, v.clone())));
        match program.execute(&context) {
            Ok(value) => Outcome::Value(value),
            Err(e) => Outcome::Error(r8s_cel::describe(&e)),
        }
    }

    /// Whether every condition holds: `Ok(false)` skips, `Err` is the first that failed to
    /// evaluate (for the failure policy to judge).
    pub(super) fn conditions_hold(&self, conditions: &Value) -> Result<bool, String> {
        for condition in conditions.as_array().into_iter().flatten() {
            let expression = condition["expression"].as_str().unwrap_or_default();
            match self.evaluate(expression) {
                Outcome::Value(Cel::Bool(true)) => {}
                Outcome::Value(Cel::Bool(false)) => return Ok(false),
                Outcome::Value(other) => {
                    return Err(format!(
                        "matchCondition '{}' must evaluate to bool, got {:?}",
                        condition["name"].as_str().unwrap_or_default(),
                        other.type_of()
                    ));
                }
                Outcome::Error(e) => {
                    return Err(format!(
                        "failed to evaluate matchCondition '{}': {e}",
                        condition["name"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        Ok(true)
    }
}

/// Answers the CEL `authorizer`'s questions with the server's authorizer, as the requester
/// (or the ServiceAccount a question names).
struct Asker {
    authorizer: Option<Arc<crate::authz::Authorizer>>,
    /// `None`: the server's own write.
    user: Option<User>,
}

impl Authorize for Asker {
    fn authorize(&self, question: &Question) -> (bool, String) {
        let Some(authorizer) = &self.authorizer else {
            return (false, "the authorizer is not ready".to_owned());
        };
        let user = match (&question.service_account, &self.user) {
            (Some((namespace, name)), _) => User {
                name: format!("system:serviceaccount:{namespace}:{name}"),
                uid: String::new(),
                groups: vec![
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".to_owned(),
                ],
                extra: Default::default(),
            },
            (None, Some(user)) => user.clone(),
            (None, None) => User {
                name: "system:apiserver".to_owned(),
                uid: String::new(),
                groups: vec!["system:masters".to_owned()],
                extra: Default::default(),
            },
        };
        let attributes = crate::authz::Attributes {
            verb: question.verb.clone(),
            resource_request: question.path.is_none(),
            path: question.path.clone().unwrap_or_default(),
            api_group: question.group.clone(),
            api_version: "*".to_owned(),
            resource: question.resource.clone(),
            subresource: question.subresource.clone(),
            namespace: question.namespace.clone(),
            name: question.name.clone(),
        };
        let decision = authorizer.authorize(&user, &attributes);
        (decision.allowed, decision.reason)
    }
}

/// One policy applied by one binding to one request.
struct Applied<'a> {
    policy: &'a Value,
    binding: &'a Value,
    request: &'a Request<'a>,
}

impl Applied<'_> {
    fn names(&self) -> (&str, &str) {
        (
            objects::name_of(self.policy),
            objects::name_of(self.binding),
        )
    }

    fn fails_open(&self) -> bool {
        self.policy["spec"]["failurePolicy"] == "Ignore"
    }

    fn actions(&self) -> Vec<&str> {
        self.binding["spec"]["validationActions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    }

    /// Upstream's denial: admission's `<resource> "<name>" is forbidden: ValidatingAdmissionPolicy
    /// 'p' with binding 'b' denied request: …`, with the validation's reason and its code.
    fn denial(&self, reason: &str, message: &str) -> ApiError {
        let (policy, binding) = self.names();
        let cause = format!(
            "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
        );
        let resource = self.request.resource;
        let qualified = match resource.group {
            "" => resource.plural.to_owned(),
            group => format!("{}.{group}", resource.plural),
        };
        let name = self.request.name;
        let message = match name {
            "" => format!("{qualified} is forbidden: {cause}"),
            name => format!("{qualified} {name:?} is forbidden: {cause}"),
        };
        let (code, reason) = match reason {
            "Unauthorized" => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            "Forbidden" => (StatusCode::FORBIDDEN, "Forbidden"),
            "RequestEntityTooLarge" => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
        };
        let mut details =
            json!({ "name": name, "kind": resource.plural, "causes": [{ "message": cause }] });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        ApiError {
            details: Some(details),
            ..ApiError::new(code, reason, message)
        }
    }

    /// A policy that could not be evaluated: refused unless it fails open.
    fn failed(&self, why: String) -> Result<(), ApiError> {
        let (policy, binding) = self.names();
        if self.fails_open() {
            tracing::warn!(policy, binding, reason = why, "policy failed, failing open");
            return Ok(());
        }
        Err(self.denial("Invalid", &why))
    }
}

/// Resources whose writes no policy sees, so a broken policy can always be removed.
fn exempt(resource: &Resource) -> bool {
    matching::is_exempt(resource)
}

/// Runs every binding that selects this write.
pub async fn validate(
    registry: &Registry,
    request: &Request<'_>,
    object: Option<&Value>,
) -> Result<(), ApiError> {
    if exempt(request.resource) {
        return Ok(());
    }
    let mut bindings = cached(registry, GROUP, "validatingadmissionpolicybindings", None).await?;
    if bindings.is_empty() {
        return Ok(());
    }
    bindings.sort_by(|a, b| objects::name_of(a).cmp(objects::name_of(b)));
    let policies = cached(registry, GROUP, "validatingadmissionpolicies", None).await?;
    for binding in &bindings {
        let wanted = binding["spec"]["policyName"].as_str().unwrap_or_default();
        let Some(policy) = policies.iter().find(|p| objects::name_of(p) == wanted) else {
            continue;
        };
        let applied = Applied {
            policy,
            binding,
            request,
        };
        let Some(invocation) = selects(registry, &applied, request, object).await? else {
            continue;
        };
        let inputs = Inputs::new(registry, request, &invocation, object);
        let inputs = match request.namespace.filter(|n| !n.is_empty()) {
            Some(name) => match namespace(registry, name).await {
                Ok(found) => inputs.with("namespaceObject", r8s_cel::value::untyped(&found)),
                Err(_) => inputs.with("namespaceObject", Cel::Null),
            },
            None => inputs.with("namespaceObject", Cel::Null),
        };
        match parameters(registry, &applied, request).await {
            Err(why) => applied.failed(why)?,
            Ok(Parameters::NotFound) => {
                return Err(applied.denial(
                    "Invalid",
                    "no params found for policy binding with `Deny` parameterNotFoundAction",
                ));
            }
            Ok(Parameters::Each(params)) => {
                for param in params {
                    run(&applied, &inputs.with("params", param))?;
                }
            }
        }
    }
    Ok(())
}

/// The version the policy sees the request as, if the policy's constraints and the binding's
/// resources both select it.
async fn selects(
    registry: &Registry,
    applied: &Applied<'_>,
    request: &Request<'_>,
    object: Option<&Value>,
) -> Result<Option<Invocation>, ApiError> {
    let constraints = &applied.policy["spec"]["matchConstraints"];
    let Some(invocation) = matches(registry, constraints, request, object).await? else {
        return Ok(None);
    };
    let resources = &applied.binding["spec"]["matchResources"];
    if resources.is_object()
        && matches(registry, resources, request, object)
            .await?
            .is_none()
    {
        return Ok(None);
    }
    Ok(Some(invocation))
}

/// Whether a `MatchResources` selects the request: a named rule matches, no excluded one does,
/// and the selectors agree. An empty `resourceRules` (a binding's) matches whatever the policy
/// matched.
async fn matches(
    registry: &Registry,
    resources: &Value,
    request: &Request<'_>,
    object: Option<&Value>,
) -> Result<Option<Invocation>, ApiError> {
    let named = |rule: &Value| {
        let names = rule["resourceNames"].as_array();
        names.is_none_or(|n| n.is_empty() || n.iter().any(|n| n == request.name))
    };
    let excluded = resources["excludeResourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| named(rule) && matching::rule_matches(rule, request, request.resource));
    if excluded {
        return Ok(None);
    }
    let rules: Vec<Value> = match resources["resourceRules"].as_array() {
        None => vec![
            json!({ "operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"] }),
        ],
        Some(rules) => rules.iter().filter(|r| named(r)).cloned().collect(),
    };
    let hook = Hook::parse(
        "",
        &json!({
            "name": "policy",
            "rules": rules,
            "matchPolicy": resources["matchPolicy"],
            "namespaceSelector": resources["namespaceSelector"],
            "objectSelector": resources["objectSelector"],
        }),
    );
    should_call(registry, &hook, request, object).await
}

enum Parameters {
    /// Run once per value (`null` when the policy takes no parameters).
    Each(Vec<Cel>),
    /// None found and the binding says `Deny`.
    NotFound,
}

/// The parameter objects a binding's `paramRef` names, of the policy's `paramKind`.
async fn parameters(
    registry: &Registry,
    applied: &Applied<'_>,
    request: &Request<'_>,
) -> Result<Parameters, String> {
    let kind = &applied.policy["spec"]["paramKind"];
    if !kind.is_object() {
        return Ok(Parameters::Each(vec![Cel::Null]));
    }
    let reference = &applied.binding["spec"]["paramRef"];
    if !reference.is_object() {
        return Err("failed to configure binding: no paramRef in binding".to_owned());
    }
    let api_version = kind["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind_name = kind["kind"].as_str().unwrap_or_default();
    let resource = find_kind(group, version, kind_name)
        .ok_or_else(|| format!("failed to configure policy: failed to find resource referenced by paramKind: '{api_version}, Kind={kind_name}'"))?;
    let namespace = match (reference["namespace"].as_str(), resource.namespaced) {
        (_, false) => None,
        (Some(n), true) if !n.is_empty() => Some(n.to_owned()),
        (_, true) => match request.namespace.filter(|n| !n.is_empty()) {
            Some(n) => Some(n.to_owned()),
            None => {
                return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".to_owned());
            }
        },
    };
    let cache = registry
        .cache
        .resource(resource)
        .await
        .map_err(|e| e.message)?;
    let mut prefix = objects::collection(resource, namespace.as_deref());
    prefix.push('/');
    let (found, _) = cache.snapshot(&prefix);
    let selector = match reference["selector"].is_object() {
        true => Some(LabelSelector::from_object(&reference["selector"]).map_err(|e| e.message)?),
        false => None,
    };
    let name = reference["name"].as_str().filter(|n| !n.is_empty());
    let params: Vec<Cel> = found
        .iter()
        .map(|o| o.value_as(resource))
        .filter(|o| match (name, &selector) {
            (Some(name), _) => objects::name_of(o) == name,
            (None, Some(selector)) => selector.matches(o),
            (None, None) => false,
        })
        .map(|o| r8s_cel::value::untyped(&o))
        .collect();
    if !params.is_empty() {
        return Ok(Parameters::Each(params));
    }
    match reference["parameterNotFoundAction"].as_str() {
        Some("Allow") => Ok(Parameters::Each(Vec::new())),
        _ => Ok(Parameters::NotFound),
    }
}

/// The served resource of a kind: built in, or a CRD's.
fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static Resource> {
    r8s_api::catalogue()
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .or_else(|| {
            crate::crd::catalogue::table()
                .served
                .iter()
                .map(|s| s.resource)
                .find(|r| r.group == group && r.version == version && r.kind == kind)
        })
}

/// One policy evaluation: conditions, variables, then validations.
fn run(applied: &Applied<'_>, inputs: &Inputs) -> Result<(), ApiError> {
    let spec = &applied.policy["spec"];
    match inputs.conditions_hold(&spec["matchConditions"]) {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(why) => return applied.failed(why),
    }
    // Variables in order, each able to read those before it.
    let mut variables: HashMap<String, Cel> = HashMap::new();
    for variable in spec["variables"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap_or_default().to_owned();
        let scope = inputs.with("variables", Cel::from(variables.clone()));
        // An unusable variable is left out: an expression reading it then fails.
        if let Outcome::Value(value) =
            scope.evaluate(variable["expression"].as_str().unwrap_or_default())
        {
            variables.insert(name, value);
        }
    }
    let inputs = inputs.with("variables", Cel::from(variables));
    let actions = applied.actions();
    for validation in spec["validations"].as_array().into_iter().flatten() {
        let expression = validation["expression"].as_str().unwrap_or_default();
        let message = match inputs.evaluate(expression) {
            Outcome::Value(Cel::Bool(true)) => continue,
            Outcome::Value(Cel::Bool(false)) => message_of(validation, &inputs),
            Outcome::Value(other) => {
                applied.failed(format!(
                    "expression '{expression}' resulted in error: expected bool, got {:?}",
                    other.type_of()
                ))?;
                continue;
            }
            Outcome::Error(e) => {
                applied.failed(format!("expression '{expression}' resulted in error: {e}"))?;
                continue;
            }
        };
        if actions.contains(&"Warn") {
            let (policy, binding) = applied.names();
            add_warnings(vec![format!(
                "Validation failed for ValidatingAdmissionPolicy '{policy}' with binding '{binding}': {message}"
            )]);
        }
        if actions.contains(&"Deny") {
            let reason = validation["reason"].as_str().unwrap_or("Invalid");
            return Err(applied.denial(reason, &message));
        }
    }
    Ok(())
}

/// A failed validation's message: its `messageExpression` if that gives a usable string,
/// its `message`, or `failed expression: <expression>`.
fn message_of(validation: &Value, inputs: &Inputs) -> String {
    if let Some(expression) = validation["messageExpression"].as_str()
        && let Outcome::Value(Cel::String(text)) = inputs.evaluate(expression)
        && !text.trim().is_empty()
        && !text.contains('\n')
    {
        return text.trim().to_owned();
    }
    match validation["message"].as_str() {
        Some(message) if !message.trim().is_empty() => message.trim().to_owned(),
        _ => format!(
            "failed expression: {}",
            validation["expression"].as_str().unwrap_or_default().trim()
        ),
    }
}

/// Where a policy's expressions sit, with the variables each may read.
fn expressions(spec: &Value) -> Vec<(String, &str)> {
    let mut found = Vec::new();
    let mut collect = |list: &str, field: &str| {
        for (i, item) in spec[list].as_array().into_iter().flatten().enumerate() {
            if let Some(expression) = item[field].as_str() {
                found.push((format!("spec.{list}[{i}].{field}"), expression));
            }
        }
    };
    collect("matchConditions", "expression");
    collect("variables", "expression");
    collect("validations", "expression");
    collect("validations", "messageExpression");
    collect("auditAnnotations", "valueExpression");
    found
}

/// Every variable a policy expression may read.
const POLICY_VARIABLES: &[&str] = &[
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
    "variables",
    "authorizer",
];

/// The kinds a policy's `matchConstraints` name exactly (wildcards name none), as upstream's
/// type checker finds the schemas to check against.
fn matched_kinds(spec: &Value) -> Vec<&'static Resource> {
    let mut kinds: Vec<&'static Resource> = Vec::new();
    let rules = spec["matchConstraints"]["resourceRules"].as_array();
    for rule in rules.into_iter().flatten() {
        let list = |key: &str| -> Vec<&str> {
            rule[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect()
        };
        let (groups, versions, resources) =
            (list("apiGroups"), list("apiVersions"), list("resources"));
        let wildcard = |l: &[&str]| l.iter().any(|i| i.contains('*') || i.contains('/'));
        if wildcard(&groups) || wildcard(&versions) || wildcard(&resources) {
            continue;
        }
        for group in &groups {
            for version in &versions {
                for plural in &resources {
                    let found = r8s_api::find(group, version, plural)
                        .or_else(|| crate::crd::find(group, version, plural));
                    if let Some(resource) = found
                        && !kinds.iter().any(|k| std::ptr::eq(*k, resource))
                    {
                        kinds.push(resource);
                    }
                }
            }
        }
    }
    kinds
}

/// On a ValidatingAdmissionPolicy write: refuses expressions that do not compile (or read
/// variables that do not exist), and records in `status.typeChecking` what upstream's type
/// checker warns about when the expressions are checked against the schemas of the kinds the
/// policy matches (`found no matching overload …`, `undefined field …`).
pub fn prepare(object: &mut Value) -> Result<(), ApiError> {
    let dynamic: Vec<(&str, r8s_cel::check::Ty<'static>)> = POLICY_VARIABLES
        .iter()
        .map(|v| (*v, r8s_cel::check::Ty::Dyn))
        .collect();
    let mut problems = Vec::new();
    let mut programs = Vec::new();
    for (path, expression) in expressions(&object["spec"]) {
        let checked = r8s_cel::compile(expression)
            .and_then(|program| r8s_cel::check::check(&program, &dynamic).map(|_| program));
        match checked {
            Ok(program) => programs.push((path, program)),
            Err(e) => problems.push((
                path,
                format!("Invalid value: {:?}: compilation failed: {e}", expression),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(
            "ValidatingAdmissionPolicy",
            GROUP,
            objects::name_of(object),
            problems,
        ));
    }
    let kinds = matched_kinds(&object["spec"]);
    let resolve =
        |node: &'static Value| crate::schema::Schema::resolve(node).node().unwrap_or(node);
    let mut warnings = Vec::new();
    for (path, program) in &programs {
        // Only validations are type checked, as upstream checks them.
        if !path.starts_with("spec.validations") {
            continue;
        }
        let mut found = Vec::new();
        for kind in &kinds {
            let Some(schema) =
                crate::schema::Schema::of_kind(kind.group, kind.version, kind.kind).node()
            else {
                continue;
            };
            let typed = r8s_cel::check::Ty::Schema(resolve(schema), false);
            let variables: Vec<_> = POLICY_VARIABLES
                .iter()
                .map(|v| match *v {
                    "object" | "oldObject" => (*v, typed),
                    _ => (*v, r8s_cel::check::Ty::Dyn),
                })
                .collect();
            if let Err(issues) = r8s_cel::check::check_with(program, &variables, &resolve) {
                found.push(format!(
                    "{}/{}, Kind={}: {issues}",
                    kind.group, kind.version, kind.kind
                ));
            }
        }
        if !found.is_empty() {
            warnings.push(json!({ "fieldRef": path, "warning": found.join("\n") }));
        }
    }
    let generation = object["metadata"]["generation"].clone();
    let status = &mut object["status"];
    if !status.is_object() {
        *status = json!({});
    }
    status["observedGeneration"] = generation;
    status["typeChecking"] = match warnings.is_empty() {
        true => json!({}),
        false => json!({ "expressionWarnings": warnings }),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_checking_finds_mismatched_operands_in_deployment_fields() {
        let mut policy = json!({
            "metadata": { "name": "p", "generation": 1 },
            "spec": {
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"],
                }] },
                "validations": [
                    { "expression": "object.spec.replicas > '1'" },
                    { "expression": "object.spec.replicas > 1 && object.metadata.labels.app == 'x'" },
                    { "expression": "object.spec.nope == 1" },
                ],
            },
        });
        prepare(&mut policy).unwrap();
        let warnings = policy["status"]["typeChecking"]["expressionWarnings"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{policy}"));
        let refs: Vec<&str> = warnings
            .iter()
            .map(|w| w["fieldRef"].as_str().unwrap())
            .collect();
        assert_eq!(
            refs,
            [
                "spec.validations[0].expression",
                "spec.validations[2].expression"
            ]
        );
        assert!(
            warnings[1]["warning"]
                .as_str()
                .unwrap()
                .contains("undefined field 'nope'")
        );
    }
}
