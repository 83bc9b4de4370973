//! What the scheduler tells the world besides bindings: the `PodScheduled=False` condition of
//! pods that fit nowhere (through `pods/status`) and `events.k8s.io/v1` Events (Scheduled,
//! FailedScheduling, Preempted). Written by a background task so scheduling never waits on them;
//! repeated events become a series, as upstream's event broadcaster does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::SCHEDULER_NAME;
use crate::cache::PodInfo;

/// Writes in flight at once.
const CONCURRENCY: usize = 16;
/// Reports waiting to be written; more are dropped, as upstream's event broadcaster drops
/// events past its 1,000-event queue rather than slow the scheduler down.
const MAX_QUEUED: usize = 1000;
/// Upstream's events library starts a new event (not a series) after this long.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

pub enum Report {
    Unschedulable {
        pod: Arc<PodInfo>,
        message: String,
        nominated_node: Option<String>,
    },
    Scheduled {
        pod: Arc<PodInfo>,
        node: String,
    },
    Preempted {
        victim: Arc<PodInfo>,
        preemptor: Arc<PodInfo>,
        node: String,
    },
}

#[derive(Clone)]
pub struct Reporter {
    sender: mpsc::Sender<Report>,
}

impl Reporter {
    pub fn start(client: Client, instance: &str) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        let recorder = Arc::new(Recorder {
            client,
            instance: format!("{SCHEDULER_NAME}-{instance}"),
            series: Mutex::default(),
        });
        tokio::spawn(receiver.for_each_concurrent(CONCURRENCY, move |report| {
            let recorder = recorder.clone();
            async move { recorder.write(report).await }
        }));
        Reporter { sender }
    }

    pub fn send(&self, report: Report) {
        let mut sender = self.sender.clone();
        // A closed queue means the scheduler is stopping.
        let Err(e) = sender.try_send(report) else {
            return;
        };
        if !e.is_full() {
            return;
        }
        match e.into_inner() {
            // The pod's condition must be written: wait for room without holding up the
            // scheduling loop.
            report @ Report::Unschedulable { .. } => {
                tokio::spawn(async move {
                    let _ = sender.send(report).await;
                });
            }
            _ => tracing::debug!("dropping a scheduler event: the queue is full"),
        }
    }
}

struct Series {
    name: String,
    namespace: String,
    count: i32,
    first: Instant,
}

/// The event series of the last [`SERIES_WINDOW`], forgotten in the order they began: a
/// scheduler writes an event per pod, so looking at every series on each event would make a
/// burst of pods cost the square of its size.
#[derive(Default)]
struct SeriesBook {
    series: HashMap<String, Series>,
    began: VecDeque<(Instant, String)>,
}

impl SeriesBook {
    fn forget_before(&mut self, cutoff: Instant) {
        while let Some((first, _)) = self.began.front()
            && *first < cutoff
        {
            let (first, key) = self.began.pop_front().expect("just seen");
            // A key that began again since is a newer series, kept.
            if self.series.get(&key).is_some_and(|s| s.first == first) {
                self.series.remove(&key);
            }
        }
    }

    /// Counts one more event of the series `key` at `now`; answers the series (name and
    /// namespace) when this repeat is the one upstream writes, and whether the series is new.
    fn observe(&mut self, key: &str, now: Instant) -> Observed {
        if let Some(cutoff) = now.checked_sub(SERIES_WINDOW) {
            self.forget_before(cutoff);
        }
        match self.series.get_mut(key) {
            // Upstream writes the series when it starts and then only on its heartbeat.
            Some(s) => {
                s.count += 1;
                match s.count {
                    2 => Observed::Repeated(s.name.clone(), s.namespace.clone()),
                    _ => Observed::Counted,
                }
            }
            None => Observed::New,
        }
    }

    fn begin(&mut self, key: String, name: String, namespace: String, now: Instant) {
        self.began.push_back((now, key.clone()));
        self.series.insert(
            key,
            Series {
                name,
                namespace,
                count: 1,
                first: now,
            },
        );
    }
}

#[derive(Debug, PartialEq)]
enum Observed {
    New,
    Repeated(String, String),
    Counted,
}

struct Recorder {
    client: Client,
    instance: String,
    series: Mutex<SeriesBook>,
}

impl Recorder {
    async fn write(&self, report: Report) {
        match report {
            Report::Unschedulable {
                pod,
                message,
                nominated_node,
            } => {
                self.set_unschedulable(&pod, &message, nominated_node.as_deref())
                    .await;
                self.event(&pod, "Warning", "FailedScheduling", "Scheduling", message)
                    .await;
            }
            Report::Scheduled { pod, node } => {
                let note = format!(
                    "Successfully assigned {}/{} to {node}",
                    pod.namespace, pod.name
                );
                self.event(&pod, "Normal", "Scheduled", "Binding", note)
                    .await;
            }
            Report::Preempted {
                victim,
                preemptor,
                node,
            } => {
                let note = format!("Preempted by pod {} on node {node}", preemptor.uid);
                self.event(&victim, "Normal", "Preempted", "Preempting", note)
                    .await;
            }
        }
    }

    /// Sets `PodScheduled=False, reason Unschedulable` unless the pod already says exactly that.
    async fn set_unschedulable(&self, pod: &PodInfo, message: &str, nominated: Option<&str>) {
        let status = pod.pod.status.as_ref();
        let current = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let same = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message)
        });
        let nominated_same = nominated.is_none()
            || status.and_then(|s| s.nominated_node_name.as_deref()) == nominated;
        if same && nominated_same {
            return;
        }
        let transition = match current {
            Some(c) if c.status == "False" => c
                .last_transition_time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_else(|| Timestamp::now().to_string()),
            _ => Timestamp::now().to_string(),
        };
        let mut patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]}});
        if let Some(node) = nominated {
            patch["status"]["nominatedNodeName"] = json!(node);
        }
        // Only over the pod as it was seen: a binding meanwhile (PodScheduled=True) must not be
        // overwritten; the conflict is left to the next attempt, which sees the pod bound.
        if let Some(version) = &pod.pod.metadata.resource_version {
            patch["metadata"] = json!({ "resourceVersion": version });
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        if let Err(error) = pods
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::debug!(%error, pod = %pod.key(), "cannot set PodScheduled=False");
        }
    }

    async fn event(&self, pod: &PodInfo, type_: &str, reason: &str, action: &str, note: String) {
        let key = format!(
            "{}/{}/{}/{}/{}",
            pod.namespace, pod.name, pod.uid, reason, note
        );
        let events: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        let observed = self.series.lock().unwrap().observe(&key, Instant::now());
        match observed {
            Observed::New => {}
            Observed::Counted => return,
            Observed::Repeated(name, namespace) => {
                let series = EventSeries {
                    count: 2,
                    last_observed_time: MicroTime(Timestamp::now()),
                };
                let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                let patch = json!({"series": series});
                if let Err(error) = events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    tracing::debug!(%error, "cannot update event series");
                }
                return;
            }
        }
        let now = Timestamp::now();
        let name = format!("{}.{:x}", pod.name, now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(SCHEDULER_NAME.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some(type_.to_owned()),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(pod.namespace.clone()),
                name: Some(pod.name.clone()),
                uid: Some(pod.uid.clone()),
                resource_version: pod.pod.metadata.resource_version.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.series
            .lock()
            .unwrap()
            .begin(key, name, pod.namespace.clone(), Instant::now());
        if let Err(error) = events.create(&PostParams::default(), &event).await {
            tracing::debug!(%error, pod = %pod.key(), reason, "cannot write event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_written_once_then_counted_until_the_series_ages_out() {
        let mut book = SeriesBook::default();
        let start = Instant::now();
        assert_eq!(book.observe("k", start), Observed::New);
        book.begin("k".into(), "ev".into(), "ns".into(), start);
        let later = start + Duration::from_secs(1);
        assert_eq!(
            book.observe("k", later),
            Observed::Repeated("ev".into(), "ns".into())
        );
        assert_eq!(book.observe("k", later), Observed::Counted);
        let aged = start + SERIES_WINDOW + Duration::from_secs(1);
        assert_eq!(book.observe("k", aged), Observed::New);
        assert!(book.began.is_empty());
    }

    #[test]
    fn a_series_begun_again_is_not_forgotten_with_its_predecessor() {
        let mut book = SeriesBook::default();
        let start = Instant::now();
        book.begin("k".into(), "first".into(), "ns".into(), start);
        book.begin("other".into(), "o".into(), "ns".into(), start);
        // The same key begins again (after the old series was dropped elsewhere).
        let again = start + Duration::from_secs(10);
        book.series.remove("k");
        book.begin("k".into(), "second".into(), "ns".into(), again);
        let past_first = start + SERIES_WINDOW + Duration::from_secs(1);
        assert_eq!(
            book.observe("k", past_first),
            Observed::Repeated("second".into(), "ns".into())
        );
        assert!(!book.series.contains_key("other"));
    }
}
