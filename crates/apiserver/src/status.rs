//! Kubernetes `Status` errors: every failure reaches the client as a `Status` object with
//! upstream's reason and code, so kubectl and client libraries react to it as they would to
//! kube-apiserver.

use http::StatusCode;
use r8s_store::StoreError;
use serde_json::{Value, json};

/// An API error, rendered as a `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds a client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

/// What a request is about, for error details (`configmaps "x" not found`).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub name: &'a str,
}

impl Subject<'_> {
    /// `configmaps` or `deployments.apps`, as upstream names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self) -> Value {
        let mut details = json!({ "name": self.name, "kind": self.plural });
        if !self.group.is_empty() {
            details["group"] = json!(self.group);
        }
        details
    }
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found_path() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn not_found(subject: Subject) -> Self {
        Self {
            details: Some(subject.details()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} \"{}\" not found", subject.qualified(), subject.name),
            )
        }
    }

    pub fn already_exists(subject: Subject) -> Self {
        Self {
            details: Some(subject.details()),
            ..Self::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!(
                    "{} \"{}\" already exists",
                    subject.qualified(),
                    subject.name
                ),
            )
        }
    }

    pub fn conflict(subject: Subject, why: &str) -> Self {
        Self {
            details: Some(subject.details()),
            ..Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {why}",
                    subject.qualified(),
                    subject.name
                ),
            )
        }
    }

    /// 422 with one cause per invalid field.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<(String, String)>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect();
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(field, message)| {
                json!({ "reason": "FieldValueInvalid", "message": message, "field": field })
            })
            .collect();
        let mut details = json!({ "name": name, "kind": kind, "causes": causes });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        Self {
            details: Some(details),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{qualified} \"{name}\" is invalid: {}", summary.join(", ")),
            )
        }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/merge-patch+json, application/json-patch+json; got {content_type:?}"
            ),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// Maps a store failure for `subject`.
    pub fn from_store(error: StoreError, subject: Subject) -> Self {
        match error {
            StoreError::NotFound { .. } => Self::not_found(subject),
            StoreError::AlreadyExists { .. } => Self::already_exists(subject),
            StoreError::Conflict { .. } => Self::conflict(
                subject,
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            StoreError::Compacted { requested, .. } => {
                Self::gone(format!("too old resource version: {requested}"))
            }
            StoreError::FutureRevision { requested, current } => Self {
                retry_after: Some(1),
                details: Some(
                    json!({ "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }], "retryAfterSeconds": 1 }),
                ),
                ..Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!("Too large resource version: {requested}, current: {current}"),
                )
            },
            other => Self::internal(other.to_string()),
        }
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.code.as_u16(),
            self.reason,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}
