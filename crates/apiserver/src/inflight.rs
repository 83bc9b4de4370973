//! Upstream's max-in-flight filter: at most N read-only and M mutating requests are served at
//! once; past that a client gets 429 with `Retry-After` instead of a server that slows to a
//! crawl for everyone. Long-running requests (watches, logs, exec…) are not counted, and
//! `system:masters` is always answered, as upstream does.

use std::sync::Arc;

use http::{Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::status::ApiError;

/// Subresources that hold their connection open for as long as the client wants.
const LONG_RUNNING_SUBRESOURCES: [&str; 5] = ["attach", "exec", "proxy", "log", "portforward"];

pub struct InFlight {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

/// A slot held while a request is served; empty when the request is not counted.
pub struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl InFlight {
    /// Limits of 0 mean unlimited, as upstream's flags.
    pub fn new(read_only: usize, mutating: usize) -> Self {
        let limit = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Self {
            read_only: limit(read_only),
            mutating: limit(mutating),
        }
    }

    /// Takes a slot for a request, or refuses it with 429.
    pub fn admit(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        privileged: bool,
    ) -> Result<Slot, ApiError> {
        if is_long_running(path, query) {
            return Ok(Slot(None));
        }
        let read_only = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let pool = if read_only {
            &self.read_only
        } else {
            &self.mutating
        };
        let Some(pool) = pool else {
            return Ok(Slot(None));
        };
        match pool.clone().try_acquire_owned() {
            Ok(permit) => Ok(Slot(Some(permit))),
            Err(_) if privileged => Ok(Slot(None)),
            Err(_) => Err(ApiError {
                retry_after: Some(1),
                details: Some(serde_json::json!({ "retryAfterSeconds": 1 })),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                )
            }),
        }
    }
}

fn is_long_running(path: &str, query: Option<&str>) -> bool {
    let watching = query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    });
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/api/v1/watch/…` and `/apis/<group>/<version>/watch/…`, the older watch paths.
    let watch_path = segments.get(2) == Some(&"watch") || segments.get(3) == Some(&"watch");
    let subresource = segments
        .last()
        .is_some_and(|last| LONG_RUNNING_SUBRESOURCES.contains(last));
    watching || watch_path || subresource
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pool_refuses_with_429_and_retry_after() {
        let limits = InFlight::new(1, 1);
        let _held = limits.admit(
            &Method::POST,
            "/api/v1/namespaces/a/configmaps",
            None,
            false,
        );
        let refused = limits
            .admit(
                &Method::PUT,
                "/api/v1/namespaces/a/configmaps/x",
                None,
                false,
            )
            .err()
            .expect("the mutating pool is full");
        assert_eq!(refused.code, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            limits
                .admit(&Method::GET, "/api/v1/namespaces/a/configmaps", None, false)
                .is_ok(),
            "reads have their own pool"
        );
    }

    #[test]
    fn masters_and_long_running_requests_are_always_served() {
        let limits = InFlight::new(1, 1);
        let _held = limits.admit(&Method::GET, "/api/v1/pods", None, false);
        assert!(
            limits
                .admit(&Method::GET, "/api/v1/pods", None, true)
                .is_ok()
        );
        assert!(
            limits
                .admit(&Method::GET, "/api/v1/pods", Some("watch=true"), false)
                .is_ok()
        );
        assert!(
            limits
                .admit(&Method::GET, "/api/v1/namespaces/a/pods/p/log", None, false)
                .is_ok()
        );
    }

    #[test]
    fn a_slot_is_free_again_once_its_request_is_done() {
        let limits = InFlight::new(1, 0);
        drop(limits.admit(&Method::GET, "/api/v1/pods", None, false));
        assert!(
            limits
                .admit(&Method::GET, "/api/v1/pods", None, false)
                .is_ok()
        );
        assert!(
            limits
                .admit(&Method::DELETE, "/api/v1/pods", None, false)
                .is_ok(),
            "0 is unlimited"
        );
    }
}
