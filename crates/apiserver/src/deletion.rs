//! DELETE, as upstream's generic store does it: `DeleteOptions` (from the body or the query),
//! preconditions, graceful deletion (pods wait for their kubelet), finalizers that hold an
//! object until its controllers let go, and the `orphan`/`foregroundDeletion` finalizers that
//! tell the garbage collector what to do with dependents.

use http::StatusCode;
use r8s_api::kinds::{self, Deletion};
use r8s_store::{Revision, StoreError};
use serde_json::{Value, json};

use crate::admission;
use crate::allocator;
use crate::authz::User;
use crate::objects::{self, Query};
use crate::registry::Registry;
use crate::router::ResourcePath;
use crate::status::{ApiError, Subject};

/// How many times a delete retries after losing a race.
const MAX_RETRIES: usize = 16;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

/// What happens to an object's dependents (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// A DELETE's options: `metav1.DeleteOptions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    /// The deprecated `orphanDependents=false` still changes the answer to 202, as upstream.
    orphan_dependents: Option<bool>,
    /// Who asked, for admission webhooks; `None` for the server's own deletes.
    pub user: Option<User>,
}

impl DeleteOptions {
    /// Upstream reads the options from the body when there is one, else from the query.
    pub fn from_request(body: Option<&Value>, query: &Query) -> Result<Self, ApiError> {
        let options = Self::parse(body, query)?;
        Ok(Self {
            user: query.user.clone(),
            ..options
        })
    }

    fn parse(body: Option<&Value>, query: &Query) -> Result<Self, ApiError> {
        let Some(body) = body else {
            return Self::build(
                query.grace_period_seconds,
                query.propagation_policy.as_deref(),
                query.orphan_dependents,
                None,
                None,
                query.dry_run,
            );
        };
        if !body.is_object() {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        }
        if let Some(kind) = body["kind"].as_str()
            && kind != "DeleteOptions"
        {
            return Err(ApiError::bad_request(format!(
                "the body of a delete must be DeleteOptions, not {kind}"
            )));
        }
        let text = |field: &str| -> Result<Option<String>, ApiError> {
            match &body["preconditions"][field] {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(ApiError::bad_request(format!(
                    "preconditions.{field} must be a string"
                ))),
            }
        };
        let grace =
            match &body["gracePeriodSeconds"] {
                Value::Null => None,
                value => Some(value.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?),
            };
        let dry_run = match &body["dryRun"] {
            Value::Null => query.dry_run,
            Value::Array(values) => {
                for value in values {
                    if value != "All" {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {value}: supported values: \"All\""
                        )));
                    }
                }
                !values.is_empty() || query.dry_run
            }
            _ => return Err(ApiError::bad_request("dryRun must be a list")),
        };
        Self::build(
            grace,
            body["propagationPolicy"].as_str(),
            body["orphanDependents"].as_bool(),
            text("uid")?,
            text("resourceVersion")?,
            dry_run,
        )
    }

    fn build(
        grace_period_seconds: Option<i64>,
        policy: Option<&str>,
        orphan_dependents: Option<bool>,
        precondition_uid: Option<String>,
        precondition_resource_version: Option<String>,
        dry_run: bool,
    ) -> Result<Self, ApiError> {
        let invalid = |why: String| {
            ApiError::invalid(
                "DeleteOptions",
                "",
                "",
                vec![("propagationPolicy".into(), why)],
            )
        };
        let propagation = match policy {
            None | Some("") => None,
            Some(_) if orphan_dependents.is_some() => {
                return Err(invalid(
                    "Invalid value: orphanDependents and deletionPropagation cannot be both set"
                        .into(),
                ));
            }
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some(other) => {
                return Err(invalid(format!(
                    "Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        };
        let propagation = propagation.or(match orphan_dependents {
            Some(true) => Some(Propagation::Orphan),
            Some(false) => Some(Propagation::Background),
            None => None,
        });
        Ok(Self {
            grace_period_seconds,
            propagation,
            precondition_uid,
            precondition_resource_version,
            dry_run,
            orphan_dependents,
            user: None,
        })
    }

    fn check_preconditions(&self, object: &Value, subject: Subject) -> Result<(), ApiError> {
        let meta = &object["metadata"];
        let checks = [
            ("UID", &self.precondition_uid, meta["uid"].as_str()),
            (
                "ResourceVersion",
                &self.precondition_resource_version,
                meta["resourceVersion"].as_str(),
            ),
        ];
        for (what, wanted, actual) in checks {
            if let Some(wanted) = wanted
                && Some(wanted.as_str()) != actual
            {
                return Err(ApiError::conflict(
                    subject,
                    &format!(
                        "Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {}",
                        actual.unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Sets the garbage collector's finalizers for the chosen propagation; true if they changed.
    fn apply_propagation(&self, object: &mut Value) -> bool {
        let Some(propagation) = self.propagation else {
            return false;
        };
        let before: Vec<String> = finalizers(object);
        let mut after: Vec<String> = before
            .iter()
            .filter(|f| *f != ORPHAN && *f != FOREGROUND)
            .cloned()
            .collect();
        match propagation {
            Propagation::Orphan => after.push(ORPHAN.into()),
            Propagation::Foreground => after.push(FOREGROUND.into()),
            Propagation::Background => {}
        }
        if after == before {
            return false;
        }
        object["metadata"]["finalizers"] = json!(after);
        true
    }
}

fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

/// What one DELETE does to the object it found.
enum Plan {
    /// Remove it from the store now.
    Remove,
    /// Write it back marked (deletion timestamp, grace period, finalizers).
    Mark(Value),
    /// It is already being deleted and nothing changes.
    Pending,
}

fn plan(resource: &r8s_api::Resource, current: &Value, options: &DeleteOptions) -> Plan {
    let kind = kinds::behaviour(resource);
    let mut marked = current.clone();
    let by_kind = kind.on_delete(&mut marked) == Deletion::Finalize;
    let grace = kind.grace_period(current, options.grace_period_seconds);
    options.apply_propagation(&mut marked);
    let held = !finalizers(&marked).is_empty() || by_kind;
    let waits = grace.is_some_and(|g| g > 0);
    if !held && !waits {
        return Plan::Remove;
    }
    let grace = grace.unwrap_or(0);
    let deadline = objects::rfc3339_after(grace);
    let meta = &mut marked["metadata"];
    match meta["deletionTimestamp"].as_str() {
        None => {
            meta["deletionTimestamp"] = json!(deadline);
            meta["deletionGracePeriodSeconds"] = json!(grace);
        }
        // A later DELETE asking for a grace period may only bring the deadline closer.
        Some(existing) => {
            if options.grace_period_seconds.is_some() && deadline.as_str() < existing {
                meta["deletionTimestamp"] = json!(deadline);
                meta["deletionGracePeriodSeconds"] = json!(grace);
            }
        }
    }
    if marked == *current {
        Plan::Pending
    } else {
        Plan::Mark(marked)
    }
}

impl Registry {
    /// DELETE with the options of a query string.
    pub async fn delete(
        &self,
        path: &ResourcePath,
        name: &str,
        query: &Query,
    ) -> Result<(StatusCode, Value), ApiError> {
        self.delete_with(path, name, &DeleteOptions::from_request(None, query)?)
            .await
    }

    /// DELETE: answers the object as it was (kinds that return it) or a success `Status`; an
    /// object that stays for now (finalizers, grace period) is answered as it now is.
    pub async fn delete_with(
        &self,
        path: &ResourcePath,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(StatusCode, Value), ApiError> {
        let key = objects::key(path.resource, path.namespace.as_deref(), name);
        let subject = Subject {
            group: path.resource.group,
            plural: path.resource.plural,
            name,
        };
        let kind = kinds::behaviour(path.resource);
        // 202 only where upstream gives it: a cascading delete that did not finish at once.
        let kept = if options.orphan_dependents == Some(false) {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        for _ in 0..MAX_RETRIES {
            let current = self.get(path, name).await?;
            options.check_preconditions(&current, subject)?;
            let user = options.user.as_ref();
            admission::admit_delete(self, path, name, &current, user, options.dry_run).await?;
            let revision: Revision = current["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse().ok())
                .unwrap_or_default();
            match plan(path.resource, &current, options) {
                Plan::Pending => return Ok((kept, current)),
                Plan::Mark(marked) => {
                    if options.dry_run {
                        return Ok((kept, marked));
                    }
                    let (stored, mut marked) = self.to_store(path.resource, marked).await?;
                    match self.store.update(&key, stored, revision, None).await {
                        Ok(written) => {
                            objects::set_resource_version(&mut marked, written);
                            return Ok((kept, marked));
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(ApiError::from_store(e, subject)),
                    }
                }
                Plan::Remove => {
                    let answer = if kind.returns_deleted_object() {
                        current.clone()
                    } else {
                        deleted_status(path, name, &current)
                    };
                    if options.dry_run {
                        return Ok((StatusCode::OK, answer));
                    }
                    match self.store.delete(&key, Some(revision)).await {
                        Ok(_) => {
                            self.allocator
                                .release(&allocator::held(&kind.allocations(&current), &current))
                                .await;
                            return Ok((StatusCode::OK, answer));
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(ApiError::from_store(e, subject)),
                    }
                }
            }
        }
        Err(ApiError::conflict(
            subject,
            "too many concurrent writers; try again",
        ))
    }

    /// DELETE on a collection: deletes every object the selectors match, as single deletes
    /// with the same options.
    pub async fn delete_collection(
        &self,
        path: &ResourcePath,
        query: &Query,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let list_query = Query {
            limit: 0,
            continue_token: None,
            ..query.clone()
        };
        let mut list = self.list(path, &list_query).await?.into_value();
        let mut deleted = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let item_path = ResourcePath {
                namespace: item["metadata"]["namespace"].as_str().map(str::to_owned),
                ..path.clone()
            };
            match self
                .delete_with(&item_path, objects::name_of(&item), options)
                .await
            {
                Ok(_) => deleted.push(item),
                Err(e) if e.code == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e),
            }
        }
        list["items"] = json!(deleted);
        Ok(list)
    }
}

/// Upstream's answer to a delete of a kind that does not return the object.
fn deleted_status(path: &ResourcePath, name: &str, object: &Value) -> Value {
    let mut details = json!({
        "name": name,
        "kind": path.resource.plural,
        "uid": object["metadata"]["uid"],
    });
    if !path.resource.group.is_empty() {
        details["group"] = json!(path.resource.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static r8s_api::Resource {
        r8s_api::find("", "v1", "pods").unwrap()
    }

    fn configmaps() -> &'static r8s_api::Resource {
        r8s_api::find("", "v1", "configmaps").unwrap()
    }

    fn options(body: Value) -> DeleteOptions {
        DeleteOptions::from_request(Some(&body), &Query::default()).unwrap()
    }

    fn bound_pod() -> Value {
        json!({
            "metadata": { "name": "p", "uid": "u1", "resourceVersion": "7" },
            "spec": { "nodeName": "n1", "terminationGracePeriodSeconds": 30 },
            "status": { "phase": "Running" },
        })
    }

    #[test]
    fn a_bound_running_pod_is_marked_with_its_grace_period() {
        let Plan::Mark(marked) = plan(pods(), &bound_pod(), &DeleteOptions::default()) else {
            panic!("a running pod waits for its kubelet");
        };
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(marked["metadata"]["deletionTimestamp"].as_str().unwrap() > "2000");
    }

    #[test]
    fn an_unbound_or_finished_pod_is_removed_at_once() {
        let mut unbound = bound_pod();
        unbound["spec"]["nodeName"] = Value::Null;
        assert!(matches!(
            plan(pods(), &unbound, &DeleteOptions::default()),
            Plan::Remove
        ));
        let mut done = bound_pod();
        done["status"]["phase"] = json!("Succeeded");
        assert!(matches!(
            plan(pods(), &done, &DeleteOptions::default()),
            Plan::Remove
        ));
    }

    #[test]
    fn grace_period_zero_removes_even_a_terminating_pod() {
        let Plan::Mark(marked) = plan(pods(), &bound_pod(), &DeleteOptions::default()) else {
            panic!("marked");
        };
        let force = options(json!({ "gracePeriodSeconds": 0 }));
        assert!(matches!(plan(pods(), &marked, &force), Plan::Remove));
    }

    #[test]
    fn a_second_delete_only_shortens_the_grace_period() {
        let Plan::Mark(marked) = plan(pods(), &bound_pod(), &DeleteOptions::default()) else {
            panic!("marked");
        };
        let longer = options(json!({ "gracePeriodSeconds": 600 }));
        assert!(matches!(plan(pods(), &marked, &longer), Plan::Pending));
        let shorter = options(json!({ "gracePeriodSeconds": 5 }));
        let Plan::Mark(shortened) = plan(pods(), &marked, &shorter) else {
            panic!("a shorter grace period moves the deadline");
        };
        assert_eq!(shortened["metadata"]["deletionGracePeriodSeconds"], 5);
    }

    #[test]
    fn foreground_and_orphan_propagation_add_the_collectors_finalizers() {
        let cm = json!({ "metadata": { "name": "c", "uid": "u" } });
        let fg = options(json!({ "propagationPolicy": "Foreground" }));
        let Plan::Mark(marked) = plan(configmaps(), &cm, &fg) else {
            panic!("foreground deletion waits for the garbage collector");
        };
        assert_eq!(marked["metadata"]["finalizers"], json!([FOREGROUND]));
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 0);
        let orphan = options(json!({ "orphanDependents": true }));
        let Plan::Mark(marked) = plan(configmaps(), &cm, &orphan) else {
            panic!("orphaning waits for the garbage collector");
        };
        assert_eq!(marked["metadata"]["finalizers"], json!([ORPHAN]));
        let background = options(json!({ "propagationPolicy": "Background" }));
        assert!(matches!(plan(configmaps(), &cm, &background), Plan::Remove));
    }

    #[test]
    fn bad_options_are_refused() {
        let q = Query::default();
        let both = json!({ "propagationPolicy": "Orphan", "orphanDependents": true });
        assert_eq!(
            DeleteOptions::from_request(Some(&both), &q)
                .unwrap_err()
                .code,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let unknown = json!({ "propagationPolicy": "Sideways" });
        assert_eq!(
            DeleteOptions::from_request(Some(&unknown), &q)
                .unwrap_err()
                .code,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let dry = json!({ "dryRun": ["Some"] });
        assert_eq!(
            DeleteOptions::from_request(Some(&dry), &q)
                .unwrap_err()
                .code,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_precondition_that_does_not_hold_conflicts() {
        let subject = Subject {
            group: "",
            plural: "pods",
            name: "p",
        };
        let uid = options(json!({ "preconditions": { "uid": "other" } }));
        let err = uid.check_preconditions(&bound_pod(), subject).unwrap_err();
        assert_eq!(err.code, StatusCode::CONFLICT);
        assert!(
            err.message.contains("UID in precondition: other"),
            "{}",
            err.message
        );
        let rv = options(json!({ "preconditions": { "resourceVersion": "7" } }));
        assert!(rv.check_preconditions(&bound_pod(), subject).is_ok());
    }
}
