//! The etcd backend: the same semantics over a real etcd v3 cluster, for HA control planes.
//! Compare-and-swap is an etcd transaction on the key's create or mod revision; TTLs are
//! leases, shared between writes with the same TTL as upstream's API server does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, EventType, GetOptions, KvClient,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use tokio::sync::{mpsc, watch};

use crate::{
    EventKind, KeyValue, RangeOptions, RangeResult, Result, Revision, Store, StoreError,
    WATCH_BUFFER, Watch, WatchEvent, prefix_range,
};

/// Writes with the same TTL reuse one lease for this share of the TTL (at most a minute), so a
/// burst of events does not grant a lease each; keys then live up to that much longer.
const LEASE_REUSE_SHARE: f64 = 0.05;
const LEASE_REUSE_MAX: Duration = Duration::from_secs(60);
/// Keys per etcd range request: with objects of at most 1.5 MiB, a page stays well inside
/// [`MAX_MESSAGE_BYTES`].
const RANGE_PAGE: usize = 100;
const MAX_MESSAGE_BYTES: usize = 256 << 20;

pub struct EtcdStore {
    client: Client,
    /// KV and watch clients that accept messages as large as a page of the largest objects.
    kv: KvClient,
    watch: WatchClient,
    endpoints: String,
    /// TTL in seconds → (lease id, granted at).
    leases: Mutex<HashMap<i64, (i64, Instant)>>,
}

impl EtcdStore {
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let joined = endpoints.join(",");
        let client = Client::connect(endpoints, None)
            .await
            .map_err(|e| StoreError::Etcd {
                endpoints: joined.clone(),
                message: format!("cannot connect: {e}"),
            })?;
        let store = Self {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            client,
            endpoints: joined,
            leases: Mutex::new(HashMap::new()),
        };
        // Fail at start, not at the first request, when nothing answers.
        store.current_revision().await?;
        Ok(store)
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn err(&self, e: etcd_client::Error) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            message: e.to_string(),
        }
    }

    /// etcd answers OutOfRange both for compacted and for future revisions; tell them apart
    /// by the current revision rather than by the message.
    async fn revision_error(&self, e: etcd_client::Error, requested: Revision) -> StoreError {
        let out_of_range =
            matches!(&e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange);
        if !out_of_range {
            return self.err(e);
        }
        match self.current_revision().await {
            Ok(current) if requested > current => StoreError::FutureRevision { requested, current },
            Ok(_) => StoreError::Compacted {
                requested,
                // etcd does not say where history starts; the request is the best bound known.
                compacted: requested,
            },
            Err(e) => e,
        }
    }

    async fn put_options(&self, ttl: Option<Duration>) -> Result<Option<PutOptions>> {
        let Some(ttl) = ttl else { return Ok(None) };
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let reuse = Duration::from_secs_f64(secs as f64 * LEASE_REUSE_SHARE).min(LEASE_REUSE_MAX);
        if !reuse.is_zero() {
            let leases = self.leases.lock().expect("lease cache poisoned");
            if let Some(&(id, granted)) = leases.get(&secs)
                && granted.elapsed() < reuse
            {
                return Ok(Some(PutOptions::new().with_lease(id)));
            }
        }
        let grant_ttl = secs + reuse.as_secs() as i64;
        let lease = self
            .client()
            .lease_grant(grant_ttl, None)
            .await
            .map_err(|e| self.err(e))?;
        if !reuse.is_zero() {
            self.leases
                .lock()
                .expect("lease cache poisoned")
                .insert(secs, (lease.id(), Instant::now()));
        }
        Ok(Some(PutOptions::new().with_lease(lease.id())))
    }

    /// Runs `if compare then op else get(key)`; on failure returns the key's current value.
    async fn cas(
        &self,
        key: &str,
        compare: Compare,
        op: TxnOp,
    ) -> Result<std::result::Result<(Revision, Vec<TxnOpResponse>), Option<KeyValue>>> {
        let txn = Txn::new()
            .when([compare])
            .and_then([op])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(|e| self.err(e))?;
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            return Ok(Ok((revision, response.op_responses())));
        }
        let current = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(convert_kv),
            _ => None,
        });
        Ok(Err(current))
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .kv
            .clone()
            .get(key, None)
            .await
            .map_err(|e| self.err(e))?;
        Ok(response.kvs().first().map(convert_kv))
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let (mut start, end) = prefix_range(prefix);
        if let Some(from) = &opts.start
            && *from > start
        {
            start.clone_from(from);
        }
        // gRPC messages are bounded (4 MiB by default), so large ranges are read in pages at
        // one revision and joined.
        let mut kvs = Vec::new();
        let mut revision = opts.revision;
        loop {
            let want = if opts.limit == 0 {
                RANGE_PAGE
            } else {
                (opts.limit - kvs.len()).min(RANGE_PAGE)
            };
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(want as i64);
            if let Some(revision) = revision {
                options = options.with_revision(revision);
            }
            let response = match self.kv.clone().get(start.clone(), Some(options)).await {
                Ok(response) => response,
                Err(e) => {
                    return Err(match revision {
                        Some(rev) => self.revision_error(e, rev).await,
                        None => self.err(e),
                    });
                }
            };
            let at = response.header().map_or(0, |h| h.revision());
            revision.get_or_insert(at);
            kvs.extend(response.kvs().iter().map(convert_kv));
            let full = opts.limit != 0 && kvs.len() >= opts.limit;
            if !response.more() || full {
                return Ok(RangeResult {
                    more: response.more(),
                    kvs,
                    revision: revision.unwrap_or(at),
                });
            }
            let last = &kvs.last().expect("a page with more has keys").key;
            start = format!("{last}\0");
        }
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<Revision> {
        let options = self.put_options(ttl).await?;
        let compare = Compare::create_revision(key, CompareOp::Equal, 0);
        match self
            .cas(key, compare, TxnOp::put(key, value.to_vec(), options))
            .await?
        {
            Ok((revision, _)) => Ok(revision),
            Err(_) => Err(StoreError::AlreadyExists { key: key.into() }),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        let options = self.put_options(ttl).await?;
        let compare = Compare::mod_revision(key, CompareOp::Equal, expected);
        match self
            .cas(key, compare, TxnOp::put(key, value.to_vec(), options))
            .await?
        {
            Ok((revision, _)) => Ok(revision),
            Err(None) => Err(StoreError::NotFound { key: key.into() }),
            Err(Some(current)) => Err(StoreError::Conflict {
                key: key.into(),
                expected,
                current: Box::new(current),
            }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        // Without a precondition, "the key exists" is the condition, so a missing key is
        // NotFound rather than a no-op delete.
        let compare = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let op = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
        match self.cas(key, compare, op).await? {
            Ok((revision, responses)) => {
                let prev = responses.into_iter().find_map(|r| match r {
                    TxnOpResponse::Delete(d) => d.prev_kvs().first().map(convert_kv),
                    _ => None,
                });
                let prev = prev.ok_or_else(|| StoreError::NotFound { key: key.into() })?;
                Ok((revision, prev))
            }
            Err(None) => Err(StoreError::NotFound { key: key.into() }),
            Err(Some(current)) => Err(StoreError::Conflict {
                key: key.into(),
                expected: expected.unwrap_or_default(),
                current: Box::new(current),
            }),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        // "From now" is pinned to a revision first, so no write after this call is missed.
        let from = if from <= 0 {
            self.current_revision().await? + 1
        } else {
            from
        };
        // etcd confirms a watch before it cancels it as compacted; probing the revision just
        // before `from` answers at once, with the same rule as the embedded store.
        if from > 1 {
            let probe = GetOptions::new().with_count_only().with_revision(from - 1);
            if let Err(e) = self.client().get("/", Some(probe)).await {
                match self.revision_error(e, from - 1).await {
                    StoreError::Compacted { compacted, .. } => {
                        return Err(StoreError::Compacted {
                            requested: from,
                            compacted,
                        });
                    }
                    // Watching from the future is allowed: events arrive when it comes.
                    StoreError::FutureRevision { .. } => {}
                    other => return Err(other),
                }
            }
        }
        let (start, end) = prefix_range(prefix);
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(from)
            .with_prev_key();
        let mut stream = self
            .watch
            .clone()
            .watch(start, Some(options))
            .await
            .map_err(|e| self.err(e))?;
        // Wait for etcd to confirm the watch (or refuse it as compacted) before answering.
        let mut pending = Vec::new();
        loop {
            let Some(response) = stream.message().await.map_err(|e| self.err(e))? else {
                return Err(self.err(etcd_client::Error::WatchError(
                    "watch stream closed at start".into(),
                )));
            };
            if response.compact_revision() > 0 {
                return Err(StoreError::Compacted {
                    requested: from,
                    compacted: response.compact_revision(),
                });
            }
            if response.canceled() {
                return Err(self.err(etcd_client::Error::WatchError(format!(
                    "watch refused: {}",
                    response.cancel_reason()
                ))));
            }
            pending.extend(response.events().iter().filter_map(convert_event));
            if response.created() {
                break;
            }
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let (progress, progress_rx) = watch::channel(from - 1);
        let (requests_tx, mut requests) = mpsc::unbounded_channel();
        let endpoints = self.endpoints.clone();
        let (mut sender, mut responses) = stream.split();
        tokio::spawn(async move {
            // One key per transaction: once an event is queued, every earlier one is too.
            let report = |revision: Revision| {
                progress.send_if_modified(|p| {
                    let moved = *p < revision;
                    *p = (*p).max(revision);
                    moved
                });
            };
            for event in pending {
                let revision = event.revision();
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                report(revision);
            }
            loop {
                let message = tokio::select! {
                    message = responses.message() => message,
                    Some(()) = requests.recv() => {
                        // The answer is a response without events carrying the revision.
                        let _ = sender.request_progress().await;
                        continue;
                    }
                };
                let failure = match message {
                    Ok(Some(response)) if response.compact_revision() > 0 => {
                        StoreError::Compacted {
                            requested: from,
                            compacted: response.compact_revision(),
                        }
                    }
                    Ok(Some(response)) if response.canceled() => StoreError::Etcd {
                        endpoints,
                        message: format!("watch canceled: {}", response.cancel_reason()),
                    },
                    Ok(Some(response)) => {
                        let events: Vec<WatchEvent> =
                            response.events().iter().filter_map(convert_event).collect();
                        if events.is_empty()
                            && let Some(header) = response.header()
                        {
                            report(header.revision());
                        }
                        for event in events {
                            let revision = event.revision();
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                            report(revision);
                        }
                        continue;
                    }
                    Ok(None) => StoreError::Etcd {
                        endpoints,
                        message: "watch stream ended".into(),
                    },
                    Err(e) => StoreError::Etcd {
                        endpoints,
                        message: format!("watch failed: {e}"),
                    },
                };
                let _ = tx.send(Err(failure)).await;
                return;
            }
        });
        Ok(Watch::new(rx, progress_rx, Some(requests_tx)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .client()
            .get("/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| self.err(e))?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self
            .client()
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.revision_error(e, revision).await),
        }
    }
}

fn convert_event(event: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = convert_kv(event.kv()?);
    let prev = event.prev_kv().map(convert_kv);
    Some(match event.event_type() {
        EventType::Put => WatchEvent {
            kind: EventKind::Put,
            kv,
            prev,
        },
        EventType::Delete => WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                create_revision: prev.as_ref().map_or(0, |p| p.create_revision),
                ..kv
            },
            prev,
        },
    })
}
