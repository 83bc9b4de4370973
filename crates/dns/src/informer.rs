//! Keeps a [`Records`] snapshot in step with the cluster: reflectors over all Services and
//! EndpointSlices, and a fresh snapshot published shortly after each change (changes arriving
//! together are built once).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher::{self, Event, watcher};
use kube::runtime::{WatchStreamExt, reflector};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::records::{ClusterZone, Records};

/// How long after a change the snapshot is rebuilt; a rollout touches many slices at once.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Which store an event changed, and whether it finished a full list.
enum Change {
    Services { listed: bool },
    Slices { listed: bool },
}

/// Publishes snapshots on `records` until the watches end (they retry with backoff, so in
/// practice until aborted). Until both kinds are listed, the unsynced snapshot stays in place.
pub(crate) async fn keep_records(
    client: Client,
    zone: ClusterZone,
    records: watch::Sender<Arc<Records>>,
) -> anyhow::Result<()> {
    let (services, service_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector(
        service_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map_ok(|event| Change::Services {
        listed: matches!(event, Event::InitDone),
    });
    let slice_events = reflector(
        slice_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map_ok(|event| Change::Slices {
        listed: matches!(event, Event::InitDone),
    });
    let mut events = futures::stream::select(service_events.boxed(), slice_events.boxed());

    let (mut services_listed, mut slices_listed) = (false, false);
    let mut rebuild_at: Option<Instant> = None;
    loop {
        let due = rebuild_at.filter(|_| services_listed && slices_listed);
        tokio::select! {
            event = events.next() => match event {
                None => anyhow::bail!("the Service and EndpointSlice watches ended"),
                Some(Err(e)) => tracing::warn!("dns: watching Services and EndpointSlices: {e}"),
                Some(Ok(change)) => {
                    match change {
                        Change::Services { listed } => services_listed |= listed,
                        Change::Slices { listed } => slices_listed |= listed,
                    }
                    rebuild_at.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
            },
            () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                rebuild_at = None;
                let snapshot = Records::new(zone.clone(), services.state(), slices.state(), unix_time());
                records.send_replace(Arc::new(snapshot));
            }
        }
    }
}

/// The SOA serial CoreDNS uses: seconds since the epoch, which wraps in 2106 as serials may.
fn unix_time() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    use http_body_util::Full;
    use serde_json::json;

    use super::*;

    /// Lists one Service and its EndpointSlice; watches never report anything.
    async fn apiserver(
        request: http::Request<kube::client::Body>,
    ) -> Result<http::Response<Full<Bytes>>, Infallible> {
        if request
            .uri()
            .query()
            .unwrap_or_default()
            .contains("watch=true")
        {
            std::future::pending::<()>().await;
        }
        let list = match request.uri().path() {
            "/api/v1/services" => json!({
                "apiVersion": "v1", "kind": "ServiceList", "metadata": { "resourceVersion": "1" },
                "items": [{
                    "metadata": { "name": "db", "namespace": "prod" },
                    "spec": { "clusterIP": "None", "ports": [{ "name": "pg", "port": 5432 }] },
                }],
            }),
            "/apis/discovery.k8s.io/v1/endpointslices" => json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                "metadata": { "resourceVersion": "1" },
                "items": [{
                    "metadata": {
                        "name": "db-x", "namespace": "prod",
                        "labels": { "kubernetes.io/service-name": "db" },
                    },
                    "addressType": "IPv4",
                    "endpoints": [{ "addresses": ["10.244.3.7"], "hostname": "db-0" }],
                }],
            }),
            other => panic!("unexpected request for {other}"),
        };
        Ok(http::Response::new(Full::new(Bytes::from(
            list.to_string(),
        ))))
    }

    #[tokio::test]
    async fn records_are_published_once_services_and_slices_are_listed() {
        let client = Client::new(tower::service_fn(apiserver), "default");
        let zone = ClusterZone::new("cluster.local", 5).unwrap();
        let (sender, mut receiver) = watch::channel(Arc::new(Records::unsynced(zone.clone())));
        let task = tokio::spawn(keep_records(client, zone, sender));
        tokio::time::timeout(Duration::from_secs(5), async {
            while !receiver.borrow_and_update().synced {
                receiver.changed().await.unwrap();
            }
        })
        .await
        .expect("no synced snapshot was published");
        task.abort();

        let mut query = Message::query();
        let name = Name::from_ascii("db-0.db.prod.svc.cluster.local.").unwrap();
        query.add_query(Query::query(name, RecordType::A));
        let response = receiver.borrow().answer(&query).unwrap();
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert_eq!(response.answers.len(), 1);
        assert_eq!(response.answers[0].data.to_string(), "10.244.3.7");
    }
}
