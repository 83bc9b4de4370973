//! Events through `events.k8s.io/v1`, with upstream's reasons and reporting controllers.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

/// Publishes events for one controller. Events go out from a task of their own, as
/// upstream's broadcaster sends them, so a reconcile never waits on one; a lost event is
/// logged, never a reconcile failure, and when the queue is full (the API is not keeping up)
/// new events are dropped, as upstream drops them.
#[derive(Clone)]
pub struct EventRecorder {
    queue: Option<mpsc::Sender<(Event, ObjectReference)>>,
}

/// Upstream's broadcaster queue length.
const QUEUE: usize = 1000;

impl EventRecorder {
    pub fn new(client: Client, controller: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance: Some("r8s-controller-manager".to_owned()),
        };
        let recorder = Recorder::new(client, reporter);
        let (queue, mut events) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        // Ends once every clone of this recorder is gone.
        tokio::spawn(async move {
            while let Some((event, regarding)) = events.recv().await {
                if let Err(error) = recorder.publish(&event, &regarding).await {
                    tracing::warn!(%error, reason = event.reason, "cannot record event");
                }
            }
        });
        Self { queue: Some(queue) }
    }

    /// A recorder that records nothing, for unit tests without a server.
    #[cfg(test)]
    pub fn disabled() -> Self {
        Self { queue: None }
    }

    pub async fn normal(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(regarding, EventType::Normal, reason, action, note)
            .await
    }

    pub async fn warning(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(regarding, EventType::Warning, reason, action, note)
            .await
    }

    /// A Normal event about `regarding` whose action touched `related` (the pod or claim a
    /// controller created or deleted). Events differing only in their note would otherwise
    /// merge into one series, which keeps the first note.
    pub async fn normal_about(
        &self,
        regarding: &ObjectReference,
        related: ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish_about(
            regarding,
            Some(related),
            EventType::Normal,
            reason,
            action,
            note,
        )
        .await
    }

    /// A Warning event about `regarding` whose action failed on `related`.
    pub async fn warning_about(
        &self,
        regarding: &ObjectReference,
        related: ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish_about(
            regarding,
            Some(related),
            EventType::Warning,
            reason,
            action,
            note,
        )
        .await
    }

    async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish_about(regarding, None, type_, reason, action, note)
            .await
    }

    async fn publish_about(
        &self,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let Some(queue) = &self.queue else {
            return;
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: related,
        };
        if let Err(mpsc::error::TrySendError::Full((event, _))) =
            queue.try_send((event, regarding.clone()))
        {
            tracing::warn!(
                reason = event.reason,
                "event queue full; dropping the event"
            );
        }
    }
}

/// The reference an event names for a namespaced object.
pub fn reference(
    api_version: &str,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}
