//! The scheduling queue, as upstream's: activeQ (highest priority, then oldest, first), backoffQ
//! (per-pod exponential back-off from 1s to 10s) and the unschedulable pods, which cluster events
//! move back and which are flushed after at most five minutes.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::PodInfo;
use crate::clock::Clock;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(5 * 60);

/// A change in the cluster that may make unschedulable pods fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdded,
    NodeChanged,
    /// A placed pod went away: its resources, ports and anti-affinity are free.
    AssignedPodDeleted,
    /// A placed pod appeared or changed labels: only affinity and spreading can care.
    AssignedPodAdded,
}

impl ClusterEvent {
    fn concerns(self, plugins: &[&'static str]) -> bool {
        match self {
            ClusterEvent::AssignedPodAdded => plugins
                .iter()
                .any(|p| *p == "InterPodAffinity" || *p == "PodTopologySpread"),
            _ => true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

struct Entry {
    info: Arc<PodInfo>,
    place: Place,
    attempts: u32,
    /// When the pod entered its current place (orders activeQ ties; ages unschedulable pods).
    since: Instant,
    /// Bumped on every move so stale heap entries are recognised.
    generation: u64,
    /// The scheduling cycle the pod was popped in.
    cycle: u64,
    unschedulable_plugins: Vec<&'static str>,
}

#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    since: Instant,
    generation: u64,
    uid: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then earlier.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.since.cmp(&self.since))
            .then_with(|| other.generation.cmp(&self.generation))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A pod handed out for one scheduling cycle.
pub struct Popped {
    pub info: Arc<PodInfo>,
    pub attempts: u32,
}

pub struct SchedulingQueue {
    clock: Arc<dyn Clock>,
    pods: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    unschedulable: HashSet<String>,
    generation: u64,
    cycle: u64,
    /// The last cycle in which a cluster event asked to move pods: a pod that was in flight then
    /// goes to backoff rather than waiting for the next event.
    move_request_cycle: u64,
}

impl SchedulingQueue {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        SchedulingQueue {
            clock,
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            unschedulable: HashSet::new(),
            generation: 0,
            cycle: 0,
            move_request_cycle: 0,
        }
    }

    pub fn backoff_duration(attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(16);
        (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
    }

    fn backoff_expiry(entry: &Entry) -> Instant {
        entry.since + Self::backoff_duration(entry.attempts)
    }

    fn put(&mut self, uid: &str, place: Place) {
        self.generation += 1;
        let now = self.clock.now();
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        if entry.place == Place::Unschedulable {
            self.unschedulable.remove(uid);
        }
        entry.place = place;
        entry.generation = self.generation;
        match place {
            Place::Active => {
                entry.since = now;
                self.active.push(ActiveKey {
                    priority: entry.info.priority,
                    since: now,
                    generation: entry.generation,
                    uid: uid.to_owned(),
                });
            }
            Place::Backoff => {
                entry.since = now;
                let expiry = Self::backoff_expiry(entry);
                self.backoff
                    .push(Reverse((expiry, entry.generation, uid.to_owned())));
            }
            Place::Unschedulable => {
                entry.since = now;
                self.unschedulable.insert(uid.to_owned());
            }
            Place::InFlight => {}
        }
    }

    /// A new pending pod, or a newer version of one already queued.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>) {
        let uid = info.uid.clone();
        match self.pods.get_mut(&uid) {
            Some(entry) => {
                entry.info = info;
                // The pod changed (tolerations, affinity…): it may fit now.
                if entry.place == Place::Unschedulable {
                    self.requeue(&uid);
                }
            }
            None => {
                self.pods.insert(
                    uid.clone(),
                    Entry {
                        info,
                        place: Place::InFlight,
                        attempts: 0,
                        since: self.clock.now(),
                        generation: 0,
                        cycle: 0,
                        unschedulable_plugins: Vec::new(),
                    },
                );
                self.put(&uid, Place::Active);
            }
        }
    }

    /// The pod was deleted, bound, or is no longer ours.
    pub fn remove(&mut self, uid: &str) {
        if self.pods.remove(uid).is_some() {
            self.unschedulable.remove(uid);
        }
    }

    /// Back to activeQ, or to backoffQ while the pod is still backing off.
    fn requeue(&mut self, uid: &str) {
        let Some(entry) = self.pods.get(uid) else {
            return;
        };
        let place = if entry.attempts > 0 && Self::backoff_expiry(entry) > self.clock.now() {
            Place::Backoff
        } else {
            Place::Active
        };
        self.put(uid, place);
    }

    /// Moves expired back-offs to activeQ and pods unschedulable for too long back to the queue.
    pub fn flush(&mut self) {
        let now = self.clock.now();
        while let Some(Reverse((expiry, generation, uid))) = self.backoff.peek() {
            if *expiry > now {
                break;
            }
            let (generation, uid) = (*generation, uid.clone());
            self.backoff.pop();
            if self
                .pods
                .get(&uid)
                .is_some_and(|e| e.place == Place::Backoff && e.generation == generation)
            {
                self.put(&uid, Place::Active);
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.pods
                    .get(*uid)
                    .is_some_and(|e| now.duration_since(e.since) >= MAX_UNSCHEDULABLE_DURATION)
            })
            .cloned()
            .collect();
        for uid in stale {
            self.requeue(&uid);
        }
    }

    /// When the next back-off ends, so the scheduler knows how long it may sleep.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((expiry, _, _))| *expiry)
    }

    /// The next pod to schedule, if any is active.
    pub fn pop(&mut self) -> Option<Popped> {
        while let Some(key) = self.active.pop() {
            let Some(entry) = self.pods.get_mut(&key.uid) else {
                continue;
            };
            if entry.place != Place::Active || entry.generation != key.generation {
                continue;
            }
            self.cycle += 1;
            entry.place = Place::InFlight;
            entry.attempts += 1;
            entry.cycle = self.cycle;
            return Some(Popped {
                info: entry.info.clone(),
                attempts: entry.attempts,
            });
        }
        None
    }

    /// The pod fit nowhere: it waits for a cluster event that concerns one of `plugins`.
    pub fn unschedulable(&mut self, uid: &str, plugins: Vec<&'static str>) {
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        entry.unschedulable_plugins = plugins;
        if self.move_request_cycle >= entry.cycle {
            // Something changed while it was being scheduled: try again after its back-off.
            self.put(uid, Place::Backoff);
        } else {
            self.put(uid, Place::Unschedulable);
        }
    }

    /// Scheduling or binding failed for a reason other than fit: retry after back-off.
    pub fn retry(&mut self, info: Arc<PodInfo>, attempts: u32) {
        let uid = info.uid.clone();
        let entry = self.pods.entry(uid.clone()).or_insert_with(|| Entry {
            info,
            place: Place::InFlight,
            attempts,
            since: self.clock.now(),
            generation: 0,
            cycle: 0,
            unschedulable_plugins: Vec::new(),
        });
        entry.attempts = entry.attempts.max(attempts);
        self.put(&uid, Place::Backoff);
    }

    /// Moves the unschedulable pods `event` concerns to activeQ or backoffQ.
    pub fn on_cluster_event(&mut self, event: ClusterEvent) {
        self.move_request_cycle = self.cycle;
        let moved: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.pods
                    .get(*uid)
                    .is_some_and(|e| event.concerns(&e.unschedulable_plugins))
            })
            .cloned()
            .collect();
        for uid in moved {
            self.requeue(&uid);
        }
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Pods waiting in each queue: (active, backoff, unschedulable).
    pub fn lengths(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for entry in self.pods.values() {
            match entry.place {
                Place::Active => counts.0 += 1,
                Place::Backoff => counts.1 += 1,
                Place::Unschedulable => counts.2 += 1,
                Place::InFlight => {}
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::pod;
    use crate::clock::FakeClock;

    fn queue() -> (Arc<FakeClock>, SchedulingQueue) {
        let clock = Arc::new(FakeClock::default());
        (clock.clone(), SchedulingQueue::new(clock))
    }

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        let mut p = pod(name, "", "");
        p.spec.as_mut().unwrap().priority = Some(priority);
        Arc::new(PodInfo::new(p))
    }

    #[test]
    fn higher_priority_pops_first_then_the_oldest() {
        let (clock, mut q) = queue();
        q.add_or_update(info("low", 0));
        clock.advance(Duration::from_millis(1));
        q.add_or_update(info("high", 100));
        clock.advance(Duration::from_millis(1));
        q.add_or_update(info("low-later", 0));
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.info.name.clone())
            .collect();
        assert_eq!(order, vec!["high", "low", "low-later"]);
    }

    #[test]
    fn back_off_doubles_from_one_to_ten_seconds() {
        let durations: Vec<u64> = (1..=6)
            .map(|a| SchedulingQueue::backoff_duration(a).as_secs())
            .collect();
        assert_eq!(durations, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event_then_their_back_off() {
        let (clock, mut q) = queue();
        q.add_or_update(info("web", 0));
        let popped = q.pop().unwrap();
        q.unschedulable(&popped.info.uid, vec!["NodeResourcesFit"]);
        clock.advance(Duration::from_secs(30));
        q.flush();
        assert!(q.pop().is_none(), "nothing changed, the pod waits");
        q.on_cluster_event(ClusterEvent::NodeAdded);
        assert_eq!(q.pop().unwrap().info.name, "web");
    }

    #[test]
    fn an_event_during_the_attempt_sends_the_pod_to_backoff() {
        let (clock, mut q) = queue();
        q.add_or_update(info("web", 0));
        let popped = q.pop().unwrap();
        q.on_cluster_event(ClusterEvent::NodeAdded);
        q.unschedulable(&popped.info.uid, vec!["NodeResourcesFit"]);
        q.flush();
        assert!(q.pop().is_none(), "backing off for 1s");
        clock.advance(Duration::from_secs(1));
        q.flush();
        assert!(q.pop().is_some());
    }

    #[test]
    fn placed_pods_only_wake_pods_waiting_on_affinity_or_spreading() {
        let (clock, mut q) = queue();
        q.add_or_update(info("fit", 0));
        q.add_or_update(info("affine", 0));
        let a = q.pop().unwrap();
        q.unschedulable(&a.info.uid, vec!["NodeResourcesFit"]);
        let b = q.pop().unwrap();
        q.unschedulable(&b.info.uid, vec!["InterPodAffinity"]);
        clock.advance(Duration::from_secs(1));
        q.on_cluster_event(ClusterEvent::AssignedPodAdded);
        q.flush();
        let woken: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.info.name.clone())
            .collect();
        assert_eq!(woken, vec!["affine"]);
    }

    #[test]
    fn unschedulable_pods_are_flushed_after_five_minutes() {
        let (clock, mut q) = queue();
        q.add_or_update(info("web", 0));
        let popped = q.pop().unwrap();
        q.unschedulable(&popped.info.uid, vec!["NodeAffinity"]);
        clock.advance(MAX_UNSCHEDULABLE_DURATION);
        q.flush();
        assert!(q.pop().is_some());
    }
}
