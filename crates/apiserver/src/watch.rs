//! Watch: a stream of `{"type": …, "object": …}` lines for a collection, from the store's
//! watch, with selectors applied the way upstream does (an object leaving a selector is
//! DELETED for that watcher, one entering it is ADDED).

use std::time::Duration;

use bytes::Bytes;
use r8s_store::{EventKind, RangeOptions, Revision, StoreError, WatchEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc;

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

/// Starts a watch; the receiver yields the response body's lines.
pub async fn start(
    registry: &Registry,
    path: &ResourcePath,
    query: &Query,
    send_initial_events: Option<bool>,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let filter = Filter {
        labels: LabelSelector::parse(query.label_selector.as_deref().unwrap_or(""))?,
        fields: FieldSelector::parse(
            query.field_selector.as_deref().unwrap_or(""),
            r8s_api::kinds::behaviour(path.resource).selectable_fields(),
        )?,
    };
    let prefix = objects::collection(path.resource, path.namespace.as_deref());
    let requested = query.resource_version()?;
    // Unset or "0" start with the current state as ADDED events, as upstream does; so does
    // sendInitialEvents=true (watch-list), which then ends the initial state with a bookmark.
    let initial = send_initial_events.unwrap_or(matches!(requested, None | Some(0)));
    let (tx, rx) = mpsc::channel(256);
    let store = registry.store.clone();
    let timeout = query
        .timeout_seconds
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let bookmarks = query.allow_watch_bookmarks;
    let mut from: Revision = match requested {
        Some(rev) if rev > 0 && !initial => rev + 1,
        _ => 0,
    };
    let mut initial_events = Vec::new();
    if initial {
        let snapshot = store
            .range(&prefix, RangeOptions::default())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        for kv in snapshot.kvs {
            let object = objects::decode(&kv.value, kv.mod_revision)?;
            if filter.matches(&object) {
                initial_events.push(line("ADDED", &object));
            }
        }
        from = snapshot.revision + 1;
        if send_initial_events == Some(true) {
            let bookmark = json!({
                "kind": path.resource.kind,
                "apiVersion": path.resource.api_version(),
                "metadata": {
                    "resourceVersion": snapshot.revision.to_string(),
                    "annotations": { "k8s.io/initial-events-end": "true" },
                },
            });
            initial_events.push(line("BOOKMARK", &bookmark));
        }
    }
    let watch = store.watch(&prefix, from).await;
    let resource = path.resource;
    tokio::spawn(async move {
        for event in initial_events {
            if tx.send(event).await.is_err() {
                return;
            }
        }
        let mut watch = match watch {
            Ok(watch) => watch,
            Err(e) => {
                let _ = tx.send(error_line(e)).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last = from - 1;
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.tick().await;
        loop {
            let next = tokio::select! {
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
                next = watch.next() => next,
            };
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    let _ = tx.send(error_line(e)).await;
                    return;
                }
                None => return,
            };
            last = event.revision();
            match translate(&event, &filter) {
                Ok(Some(bytes)) => {
                    if tx.send(bytes).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let status = json!({ "type": "ERROR", "object": e.to_status() });
                    let _ = tx.send(Bytes::from(format!("{status}\n"))).await;
                    return;
                }
            }
        }
    });
    Ok(rx)
}

fn error_line(e: StoreError) -> Bytes {
    let error = match e {
        StoreError::Compacted { requested, .. } => {
            ApiError::gone(format!("too old resource version: {}", requested - 1))
        }
        other => ApiError::internal(other.to_string()),
    };
    line("ERROR", &error.to_status())
}

fn translate(event: &WatchEvent, filter: &Filter) -> Result<Option<Bytes>, ApiError> {
    let revision = event.revision();
    let previous = match &event.prev {
        Some(prev) => Some(objects::decode(&prev.value, revision)?),
        None => None,
    };
    let was = previous.as_ref().is_some_and(|p| filter.matches(p));
    Ok(match event.kind {
        EventKind::Delete => match previous {
            Some(object) if was => Some(line("DELETED", &object)),
            _ => None,
        },
        EventKind::Put => {
            let object = objects::decode(&event.kv.value, revision)?;
            let is = filter.matches(&object);
            match (event.is_create(), was, is) {
                (_, false, true) => Some(line("ADDED", &object)),
                (false, true, true) => Some(line("MODIFIED", &object)),
                (false, true, false) => Some(line("DELETED", &object)),
                _ => None,
            }
        }
    })
}
