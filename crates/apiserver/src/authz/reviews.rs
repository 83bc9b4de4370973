//! The create-only review resources, answered from the authorizer and never stored:
//! SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectRulesReview (`kubectl auth can-i --list`) and
//! SelfSubjectReview (`kubectl auth whoami`).

use serde_json::{Value, json};

use super::{Attributes, Authorizer, User};
use crate::router::ResourcePath;
use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    SelfSubjectAccess,
    SubjectAccess,
    LocalSubjectAccess,
    SelfSubjectRules,
    SelfSubject,
}

impl Review {
    /// The review a path names, if any.
    pub fn of(path: &ResourcePath) -> Option<Self> {
        let r = path.resource;
        match (r.group, r.plural) {
            ("authorization.k8s.io", "selfsubjectaccessreviews") => Some(Self::SelfSubjectAccess),
            ("authorization.k8s.io", "subjectaccessreviews") => Some(Self::SubjectAccess),
            ("authorization.k8s.io", "localsubjectaccessreviews") => Some(Self::LocalSubjectAccess),
            ("authorization.k8s.io", "selfsubjectrulesreviews") => Some(Self::SelfSubjectRules),
            ("authentication.k8s.io", "selfsubjectreviews") => Some(Self::SelfSubject),
            _ => None,
        }
    }
}

/// Answers `review` for the request's `user`; `namespace` is the URL's, `body` the posted object.
pub fn answer(
    review: Review,
    authorizer: &Authorizer,
    user: &User,
    path: &ResourcePath,
    body: Value,
) -> Result<Value, ApiError> {
    let kind = path.resource.kind;
    let group = path.resource.group;
    let invalid = |field: &str, message: &str| {
        ApiError::invalid(
            kind,
            group,
            "",
            vec![(field.to_owned(), message.to_owned())],
        )
    };
    match review {
        Review::SelfSubject => Ok(json!({
            "kind": kind,
            "apiVersion": format!("{group}/{}", path.resource.version),
            "metadata": { "creationTimestamp": null },
            "status": { "userInfo": user_info(user) },
        })),
        Review::SelfSubjectRules => {
            let namespace = body["spec"]["namespace"].as_str().unwrap_or_default();
            if namespace.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            Ok(json!({
                "kind": kind,
                "apiVersion": format!("{group}/{}", path.resource.version),
                "metadata": { "creationTimestamp": null },
                "spec": {},
                "status": rules_status(authorizer, user, namespace),
            }))
        }
        Review::SelfSubjectAccess => {
            let request = attributes_of(&body["spec"], &invalid)?;
            Ok(with_status(body, authorizer, user, &request))
        }
        Review::SubjectAccess | Review::LocalSubjectAccess => {
            let spec = &body["spec"];
            let subject: User = subject_of(spec);
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(invalid(
                    "spec.user",
                    "at least one of user or group must be specified",
                ));
            }
            let request = attributes_of(spec, &invalid)?;
            if review == Review::LocalSubjectAccess {
                let url_namespace = path.namespace.as_deref().unwrap_or_default();
                if !request.resource_request {
                    return Err(invalid(
                        "spec.nonResourceAttributes",
                        "disallowed on this kind of request",
                    ));
                }
                if request.namespace != url_namespace {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {url_namespace}"
                    )));
                }
            }
            Ok(with_status(body, authorizer, &subject, &request))
        }
    }
}

fn user_info(user: &User) -> Value {
    let mut info = json!({ "username": user.name, "groups": user.groups });
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// The user a SubjectAccessReview asks about: exactly its user, groups, uid and extra.
fn subject_of(spec: &Value) -> User {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    User {
        name: spec["user"].as_str().unwrap_or_default().to_owned(),
        uid: spec["uid"].as_str().unwrap_or_default().to_owned(),
        groups: strings(&spec["groups"]),
        extra: spec["extra"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), strings(v)))
            .collect(),
    }
}

/// The request a review's spec describes (upstream's `ResourceAttributesFrom` and
/// `NonResourceAttributesFrom`); exactly one of the two kinds must be given.
fn attributes_of(
    spec: &Value,
    invalid: &dyn Fn(&str, &str) -> ApiError,
) -> Result<Attributes, ApiError> {
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
    match (
        spec["resourceAttributes"].as_object(),
        spec["nonResourceAttributes"].as_object(),
    ) {
        (Some(_), Some(_)) => Err(invalid(
            "spec.nonResourceAttributes",
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Err(invalid(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        (Some(_), None) => {
            let r = &spec["resourceAttributes"];
            let version = text(r, "version");
            Ok(Attributes {
                verb: text(r, "verb"),
                resource_request: true,
                api_group: text(r, "group"),
                api_version: if version.is_empty() {
                    "*".into()
                } else {
                    version
                },
                resource: text(r, "resource"),
                subresource: text(r, "subresource"),
                namespace: text(r, "namespace"),
                name: text(r, "name"),
                path: String::new(),
            })
        }
        (None, Some(_)) => {
            let n = &spec["nonResourceAttributes"];
            Ok(Attributes {
                verb: text(n, "verb"),
                path: text(n, "path"),
                ..Attributes::default()
            })
        }
    }
}

fn with_status(
    mut review: Value,
    authorizer: &Authorizer,
    user: &User,
    request: &Attributes,
) -> Value {
    let decision = authorizer.authorize(user, request);
    let mut status = json!({ "allowed": decision.allowed });
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    review["status"] = status;
    review
}

/// Upstream's `SubjectRulesReviewStatus` from RBAC's `RulesFor`.
fn rules_status(authorizer: &Authorizer, user: &User, namespace: &str) -> Value {
    let (rules, errors) = authorizer.rules_for(user, namespace);
    let omit_empty = |object: &mut Value, key: &str, values: &[String]| {
        if !values.is_empty() {
            object[key] = json!(values);
        }
    };
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in &rules {
        if !rule.resources.is_empty() {
            let mut r = json!({ "verbs": rule.verbs });
            omit_empty(&mut r, "apiGroups", &rule.api_groups);
            omit_empty(&mut r, "resources", &rule.resources);
            omit_empty(&mut r, "resourceNames", &rule.resource_names);
            resource_rules.push(r);
        }
        if !rule.non_resource_urls.is_empty() {
            let mut r = json!({ "verbs": rule.verbs });
            omit_empty(&mut r, "nonResourceURLs", &rule.non_resource_urls);
            non_resource_rules.push(r);
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    });
    match errors.as_slice() {
        [] => {}
        [one] => status["evaluationError"] = json!(one),
        many => status["evaluationError"] = json!(format!("[{}]", many.join(", "))),
    }
    status
}
