//! Watches: each is a task that replays the history from disk, then follows the writer's
//! broadcast. Subscribing before replaying closes the gap between the two: anything committed
//! before the subscription is on disk, anything after arrives on the broadcast, and revisions
//! already delivered are skipped. A watcher that falls behind the broadcast re-reads from disk.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};

use super::{Shared, reads};
use crate::{Result, Revision, StoreError, WATCH_BUFFER, Watch, WatchEvent, prefix_range};

/// Events read from disk per query while catching up.
const REPLAY_CHUNK: usize = 1000;

pub(super) fn start(shared: &Arc<Shared>, prefix: &str, from: Revision) -> Result<Watch> {
    let subscription = shared.events.subscribe();
    let from = if from <= 0 {
        shared.current() + 1
    } else {
        check_not_compacted(shared, from)?;
        from
    };
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let (progress, progress_rx) = watch::channel(from - 1);
    let task = Watcher {
        shared: shared.clone(),
        range: prefix_range(prefix),
        next: from,
        tx,
        progress,
    };
    tokio::spawn(task.run(subscription));
    Ok(Watch::new(rx, progress_rx, None))
}

fn check_not_compacted(shared: &Shared, from: Revision) -> Result<()> {
    let compacted = shared.compacted();
    if from <= compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compacted,
        });
    }
    Ok(())
}

struct Watcher {
    shared: Arc<Shared>,
    range: (String, String),
    /// Every revision below this has been delivered or skipped.
    next: Revision,
    tx: mpsc::Sender<Result<WatchEvent>>,
    /// Every revision below `next` has been queued or skipped: reported after the events.
    progress: watch::Sender<Revision>,
}

/// Why a watch task stopped early.
enum Stop {
    ReceiverGone,
    Failed(StoreError),
}

impl Watcher {
    async fn run(mut self, mut subscription: broadcast::Receiver<Arc<[WatchEvent]>>) {
        let outcome = async {
            self.replay().await?;
            self.report_progress();
            loop {
                match subscription.recv().await {
                    Ok(batch) => {
                        for event in batch.iter() {
                            self.deliver(event).await?;
                        }
                        self.report_progress();
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        subscription = self.shared.events.subscribe();
                        self.replay().await?;
                        self.report_progress();
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
        .await;
        if let Err(Stop::Failed(e)) = outcome {
            let _ = self.tx.send(Err(e)).await;
        }
    }

    fn report_progress(&self) {
        let done = self.next - 1;
        self.progress.send_if_modified(|p| {
            let moved = *p < done;
            *p = (*p).max(done);
            moved
        });
    }

    async fn deliver(&mut self, event: &WatchEvent) -> Result<(), Stop> {
        let rev = event.revision();
        if rev < self.next {
            return Ok(());
        }
        self.next = rev + 1;
        if event.kv.key.starts_with(&self.range.0) {
            self.tx
                .send(Ok(event.clone()))
                .await
                .map_err(|_| Stop::ReceiverGone)?;
        }
        Ok(())
    }

    /// Delivers everything on disk from `next` on.
    async fn replay(&mut self) -> Result<(), Stop> {
        loop {
            let from = self.next;
            let range = self.range.clone();
            let (events, snapshot) = self
                .shared
                .read(move |shared, conn| {
                    let err = |e| shared.sqlite_err(e);
                    // One snapshot for both: the rows and the revision they are complete to.
                    let tx = conn.unchecked_transaction().map_err(err)?;
                    let snapshot: Revision = tx
                        .query_row("SELECT value FROM meta WHERE name = 'rev'", [], |r| {
                            r.get(0)
                        })
                        .map_err(err)?;
                    let events = reads::history(&tx, (&range.0, &range.1), from, REPLAY_CHUNK)
                        .map_err(err)?;
                    // Rows may have been compacted away while we read.
                    check_not_compacted(shared, from)?;
                    Ok((events, snapshot))
                })
                .await
                .map_err(Stop::Failed)?;
            for event in &events {
                self.deliver(event).await?;
            }
            if events.len() < REPLAY_CHUNK {
                // Nothing else under the prefix up to the snapshot: later batches start after it.
                self.next = self.next.max(snapshot + 1);
                return Ok(());
            }
        }
    }
}
