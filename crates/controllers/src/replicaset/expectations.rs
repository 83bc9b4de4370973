//! Expectations, as upstream's `ControllerExpectations`: what a controller has just created or
//! deleted and not yet seen in its informer cache. Until the cache catches up, it does not
//! count pods again, so a lagging informer never makes it create or delete twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::reflector::{ObjectRef, Store};

/// After this long an unseen write is assumed lost (upstream's `ExpectationsTimeout`).
pub const TIMEOUT: SignedDuration = SignedDuration::from_secs(300);

#[derive(Default, Debug)]
struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Option<Timestamp>,
}

#[derive(Default)]
pub struct Expectations {
    by_owner: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    pub fn created(&self, owner: &str, pod: String, now: Timestamp) {
        let mut map = self.by_owner.lock().unwrap();
        let pending = map.entry(owner.to_owned()).or_default();
        pending.created.insert(pod);
        pending.since.get_or_insert(now);
    }

    pub fn deleted(&self, owner: &str, pod: String, now: Timestamp) {
        let mut map = self.by_owner.lock().unwrap();
        let pending = map.entry(owner.to_owned()).or_default();
        pending.deleted.insert(pod);
        pending.since.get_or_insert(now);
    }

    /// Whether the cache shows every write this owner made (a created pod present, a deleted
    /// one gone or terminating), or the writes are too old to wait for. Satisfied
    /// expectations are forgotten.
    pub fn satisfied(
        &self,
        owner: &str,
        namespace: &str,
        pods: &Store<Pod>,
        now: Timestamp,
    ) -> bool {
        let mut map = self.by_owner.lock().unwrap();
        let Some(pending) = map.get_mut(owner) else {
            return true;
        };
        let cached = |name: &str| pods.get(&ObjectRef::new(name).within(namespace));
        pending.created.retain(|name| cached(name).is_none());
        pending
            .deleted
            .retain(|name| cached(name).is_some_and(|p| p.metadata.deletion_timestamp.is_none()));
        let expired = pending.since.is_some_and(|since| since + TIMEOUT <= now);
        if expired || (pending.created.is_empty() && pending.deleted.is_empty()) {
            map.remove(owner);
            return true;
        }
        false
    }
}
