//! Watch: a stream of `{"type": …, "object": …}` lines for a collection, from the watch
//! cache, with selectors applied the way upstream does (an object leaving a selector is
//! DELETED for that watcher, one entering it is ADDED).

use std::time::Duration;

use bytes::Bytes;
use r8s_api::Resource;
use r8s_store::EventKind;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cache::{CachedEvent, CachedObject, Start, Subscription};
use crate::objects::{self, Query};
use crate::registry::Registry;
use crate::router::ResourcePath;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// Upstream closes watches after a random 30–60 minutes; clients then re-watch.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({ "type": kind, "object": object }).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Starts a watch, served from the watch cache; the receiver yields the response body's lines.
pub async fn start(
    registry: &Registry,
    path: &ResourcePath,
    query: &Query,
    send_initial_events: Option<bool>,
    partial: Option<&'static str>,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let filter = Filter {
        labels: LabelSelector::parse(query.label_selector.as_deref().unwrap_or(""))?,
        fields: FieldSelector::for_kind(
            query.field_selector.as_deref().unwrap_or(""),
            r8s_api::kinds::behaviour(path.resource),
        )?,
    };
    let requested = query.resource_version()?;
    // Unset or "0" start with the current state as ADDED events, as upstream does; so does
    // sendInitialEvents=true (watch-list), which then ends the initial state with a bookmark.
    let initial = send_initial_events.unwrap_or(matches!(requested, None | Some(0)));
    let start = match requested {
        Some(rev) if rev > 0 && !initial => Start::After(rev),
        _ => Start::Snapshot,
    };
    let since = match start {
        Start::After(revision) => Some(revision),
        Start::Snapshot => None,
    };
    let cache = registry.cache.resource_since(path.resource, since).await?;
    let key_prefix = format!(
        "{}/",
        objects::collection(path.resource, path.namespace.as_deref())
    );
    let subscription = match cache.subscribe(start, &key_prefix) {
        Ok(subscription) => subscription,
        // A start older than the cache's history is, as upstream answers it, the stream's one
        // event (ERROR, 410 Expired): clients re-list on that, while a refused request makes
        // some (kube-rs) retry the same watch for ever.
        Err(expired) => {
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.try_send(line("ERROR", &expired.to_status()));
            return Ok(rx);
        }
    };
    let (tx, rx) = mpsc::channel(256);
    let timeout = query
        .timeout_seconds
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let bookmarks = query.allow_watch_bookmarks;
    let resource = path.resource;
    let converter = crate::crd::conversion::by_webhook(resource).then(|| registry.clone());
    let shape = Shape {
        resource,
        partial,
        converter,
    };
    let end_bookmark = (send_initial_events == Some(true)).then(|| {
        json!({
            "kind": resource.kind,
            "apiVersion": resource.api_version(),
            "metadata": {
                "resourceVersion": subscription.revision.to_string(),
                "annotations": { "k8s.io/initial-events-end": "true" },
            },
        })
    });
    tokio::spawn(async move {
        let Subscription {
            initial,
            replay,
            revision,
            mut live,
        } = subscription;
        let mut last = revision;
        for object in initial.iter().filter(|o| filter.matches(&o.selectable)) {
            let Some(line) = shape.line("ADDED", object).await else {
                return;
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if let Some(bookmark) = end_bookmark
            && tx.send(line("BOOKMARK", &bookmark)).await.is_err()
        {
            return;
        }
        for event in &replay {
            if let Some(kind) = translate(event, &filter) {
                let Some(line) = shape.line(kind, &event.object).await else {
                    return;
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.tick().await;
        loop {
            let event = tokio::select! {
                _ = &mut deadline => return,
                _ = bookmark.tick(), if bookmarks => {
                    let object = json!({
                        "kind": resource.kind,
                        "apiVersion": resource.api_version(),
                        "metadata": { "resourceVersion": last.to_string() },
                    });
                    if tx.send(line("BOOKMARK", &object)).await.is_err() {
                        return;
                    }
                    continue;
                }
                event = live.recv() => event,
            };
            // A watcher that fell too far behind, or a cache that re-listed, ends the
            // stream; the client re-watches from the last revision it saw.
            let Ok(event) = event else { return };
            if event.revision <= revision || !event.key.starts_with(&key_prefix) {
                continue;
            }
            last = event.revision;
            if let Some(kind) = translate(&event, &filter) {
                let Some(line) = shape.line(kind, &event.object).await else {
                    return;
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

fn raw_line(kind: &str, object_json: &str) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":\"{kind}\",\"object\":{object_json}}}\n"
    ))
}

/// How a watcher sees objects: as `resource` serves them, or their metadata alone.
struct Shape {
    resource: &'static Resource,
    partial: Option<&'static str>,
    /// For objects a CRD's conversion webhook converts.
    converter: Option<Registry>,
}

impl Shape {
    /// One event's line; `None` when the object cannot be converted (the watch then ends,
    /// and the client's re-watch reports the error).
    async fn line(&self, kind: &str, object: &CachedObject) -> Option<Bytes> {
        let json = match (self.partial, &self.converter) {
            (Some(version), _) => object.partial_json(version),
            (None, None) => object.json_as(self.resource),
            (None, Some(registry)) => {
                let converted = registry.served(self.resource, object.value()).await;
                match converted {
                    Ok(value) => value.to_string().into(),
                    Err(e) => {
                        tracing::warn!(
                            resource = self.resource.plural,
                            reason = e.message,
                            "watch conversion failed"
                        );
                        return None;
                    }
                }
            }
        };
        Some(raw_line(kind, &json))
    }
}

/// The event type a change is to one watcher, if it sees it at all.
fn translate(event: &CachedEvent, filter: &Filter) -> Option<&'static str> {
    let was = event
        .previous
        .as_ref()
        .is_some_and(|p| filter.matches(&p.selectable));
    match event.kind {
        EventKind::Delete => was.then_some("DELETED"),
        EventKind::Put => {
            let is = filter.matches(&event.object.selectable);
            let created = event.previous.is_none();
            match (created, was, is) {
                (_, false, true) => Some("ADDED"),
                (false, true, true) => Some("MODIFIED"),
                (false, true, false) => Some("DELETED"),
                _ => None,
            }
        }
    }
}
