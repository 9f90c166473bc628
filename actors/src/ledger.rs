//! The public ledger's writers: one `LedgerActor` per organisation, a task that owns the
//! appends to that organisation's hash chain. It takes the first waiting entry and every entry
//! queued behind it (up to a limit) and hands them to storage as one group, which commits it
//! together with the groups other organisations' actors hand over at the same time (group
//! commit within and across organisations), then answers each caller once the batch is
//! durable. An actor waits for its group before taking the next, so its organisation's entries
//! stay in order. An actor with nothing to do for a while stops; the next append starts a new
//! one.
//!
//! Storage locks the organisation's head row for each append, so actors for the same
//! organisation in several processes still produce one chain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use ampflow_storage::{LedgerEntryRecord, LedgerRange};
use ampflow_storage::{NewLedgerEntry, Storage, StorageError};
use ampflow_types::Clock;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Entries one organisation hands to storage as one group at most, unless configured otherwise.
pub const BATCH_MAX_DEFAULT: usize = 256;
/// Entries waiting for an organisation's actor; appenders wait for room beyond this.
const QUEUE_CAPACITY: usize = 4_096;
/// An actor with nothing to append for this long stops.
const IDLE_STOP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// Carries the cause for the logs.
    #[error("the ledger could not be written: {0}")]
    Storage(String),
    /// Nothing was written and a retry may well succeed: the writer panicked holding the
    /// append (and restarted), or storage was unavailable.
    #[error("the ledger could not be written now: {0}")]
    Unavailable(String),
    #[error("the ledger is shutting down")]
    ShuttingDown,
}

/// Reads organisations' chains: what the public ledger, its export and the dashboard show.
#[derive(Clone)]
pub struct LedgerReader {
    storage: Storage,
    clock: Arc<dyn Clock>,
}

/// Entries read per query while an export streams.
const EXPORT_CHUNK: u64 = 2_000;

/// An organisation's whole ledger as a document (`{downloaded_at, organisation_id,
/// entry_count, entries}`, the shape `ampflow ledger verify` reads), in chunks of JSON.
pub struct Export {
    pub entry_count: u64,
    pub chunks: futures::stream::BoxStream<'static, Result<Vec<u8>, std::io::Error>>,
}

impl LedgerReader {
    /// The organisation's entry count and head hash (none before its first entry).
    pub async fn head(&self, organisation_id: &str) -> Result<(u64, Option<String>), StorageError> {
        self.storage.ledger().ledger_head(organisation_id).await
    }

    /// The organisation's ledger for independent verification, consistent: it holds exactly
    /// the entries the chain had when the export began, read a page at a time. A read that
    /// fails mid-way ends the stream with an error (the document is then incomplete, and
    /// fails to parse, rather than looking whole).
    pub async fn export(&self, organisation_id: &str) -> Result<Export, StorageError> {
        use futures::StreamExt;
        let (count, _) = self.head(organisation_id).await?;
        let downloaded_at = ampflow_types::ledger::ledger_timestamp(self.clock.now_ms());
        let head = format!(
            "{{\"downloaded_at\":{},\"organisation_id\":{},\"entry_count\":{count},\"entries\":[",
            serde_json::to_string(&downloaded_at).unwrap_or_default(),
            serde_json::to_string(organisation_id).unwrap_or_default(),
        );
        let reader = self.clone();
        let organisation_id = organisation_id.to_string();
        // One chunk per page of entries; the document ends with `]}` once `count` are out.
        let pages = futures::stream::unfold((0u64, false), move |(after, done)| {
            let reader = reader.clone();
            let organisation_id = organisation_id.clone();
            async move {
                if done {
                    return None;
                }
                if after >= count {
                    return Some((Ok(b"]}".to_vec()), (after, true)));
                }
                match reader.export_page(&organisation_id, after, count).await {
                    Ok((chunk, last)) => Some((Ok(chunk), (last, false))),
                    Err(error) => Some((Err(error), (after, true))),
                }
            }
        });
        Ok(Export {
            entry_count: count,
            chunks: futures::stream::once(async move { Ok(head.into_bytes()) })
                .chain(pages)
                .boxed(),
        })
    }

    /// The entries after `after` (up to a page, and never past `count`), as JSON with their
    /// separating commas; answers the last seq written.
    async fn export_page(
        &self,
        organisation_id: &str,
        after: u64,
        count: u64,
    ) -> Result<(Vec<u8>, u64), std::io::Error> {
        let range = LedgerRange {
            after_seq: after,
            ..Default::default()
        };
        let entries = self
            .entries(organisation_id, range, EXPORT_CHUNK.min(count - after))
            .await
            .map_err(|error| {
                tracing::error!(%error, organisation = %organisation_id, "ledger export failed");
                std::io::Error::other("reading the ledger failed")
            })?;
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Err(std::io::Error::other("the ledger ended early"));
        };
        let mut chunk = Vec::new();
        for entry in entries {
            if entry.seq > 1 {
                chunk.push(b',');
            }
            let export = ampflow_types::ledger::ExportEntry::new(entry.content, entry.entry_hash);
            serde_json::to_writer(&mut chunk, &export)
                .map_err(|_| std::io::Error::other("serialise a ledger entry"))?;
        }
        Ok((chunk, last))
    }

    /// Up to `limit` entries in `range`, in chain order.
    pub async fn entries(
        &self,
        organisation_id: &str,
        range: LedgerRange,
        limit: u64,
    ) -> Result<Vec<LedgerEntryRecord>, StorageError> {
        self.storage
            .ledger()
            .ledger_entries(organisation_id, range, limit)
            .await
    }
}

type Job = (
    NewLedgerEntry,
    oneshot::Sender<Result<LedgerEntryRecord, LedgerError>>,
);

/// The ledger actors, by organisation.
pub struct Ledger {
    storage: Storage,
    clock: Arc<dyn Clock>,
    /// Entries handed to storage as one group at most (at least 1).
    batch_max: usize,
    actors: Arc<Mutex<HashMap<String, mpsc::Sender<Job>>>>,
}

impl Ledger {
    pub(crate) fn new(storage: Storage, clock: Arc<dyn Clock>, batch_max: usize) -> Self {
        Self {
            storage,
            clock,
            batch_max: batch_max.clamp(1, QUEUE_CAPACITY),
            actors: Arc::default(),
        }
    }

    /// The reading side of every organisation's chain. Cloning is cheap (a streamed export
    /// keeps one).
    pub fn reader(&self) -> LedgerReader {
        LedgerReader {
            storage: self.storage.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Appends `entry` to the organisation's chain; answers once it is durable (the stored
    /// entry when its dedupe key was already recorded).
    pub async fn append(
        &self,
        organisation_id: &str,
        entry: NewLedgerEntry,
    ) -> Result<LedgerEntryRecord, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let mut job = (entry, reply);
        // An actor that stopped between the lookup and the send is replaced once.
        for _ in 0..2 {
            let sender = self.actor(organisation_id);
            match sender.send(job).await {
                Ok(()) => {
                    // Dropped unanswered: the writer panicked holding it (and restarted).
                    return answer.await.map_err(|_| {
                        LedgerError::Unavailable("the append was abandoned by its writer".into())
                    })?;
                }
                Err(mpsc::error::SendError(returned)) => {
                    let mut actors = self.actors.lock();
                    if actors
                        .get(organisation_id)
                        .is_some_and(|s| s.same_channel(&sender))
                    {
                        actors.remove(organisation_id);
                    }
                    job = returned;
                }
            }
        }
        Err(LedgerError::ShuttingDown)
    }

    fn actor(&self, organisation_id: &str) -> mpsc::Sender<Job> {
        let mut actors = self.actors.lock();
        if let Some(sender) = actors.get(organisation_id)
            && !sender.is_closed()
        {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        actors.insert(organisation_id.to_string(), sender.clone());
        let writer = Arc::new(Writer {
            organisation_id: organisation_id.to_string(),
            queue: tokio::sync::Mutex::new(receiver),
            me: Mutex::new(Some(sender.clone())),
            storage: self.storage.clone(),
            clock: self.clock.clone(),
            batch_max: self.batch_max,
            actors: self.actors.clone(),
        });
        // After a panic the writer starts again on the same queue: the entries it held were
        // answered with an error (their appends are not acknowledged), the rest wait.
        self.storage.supervisor().spawn(
            "ledger",
            format!("ledger writer {organisation_id}"),
            move || writer.clone().run(),
        );
        sender
    }

    /// Stops taking entries; actors finish the batches they hold.
    pub(crate) fn shutdown(&self) {
        self.actors.lock().clear();
    }
}

/// One organisation's writer: what survives a restart of its task.
struct Writer {
    organisation_id: String,
    queue: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    /// Held only until the writer idles out, so the channel closes once the map lets go.
    me: Mutex<Option<mpsc::Sender<Job>>>,
    storage: Storage,
    clock: Arc<dyn Clock>,
    batch_max: usize,
    actors: Arc<Mutex<HashMap<String, mpsc::Sender<Job>>>>,
}

impl Writer {
    async fn run(self: Arc<Self>) {
        let organisation_id = &self.organisation_id;
        let mut queue = self.queue.lock().await;
        let mut jobs: Vec<Job> = Vec::with_capacity(self.batch_max);
        loop {
            let received =
                match tokio::time::timeout(IDLE_STOP, queue.recv_many(&mut jobs, self.batch_max))
                    .await
                {
                    Ok(n) => n,
                    Err(_) => {
                        // Idle: leave the map (if still there), then finish whatever arrives until
                        // every appender has let go of the channel.
                        if let Some(me) = self.me.lock().take() {
                            let mut map = self.actors.lock();
                            if map
                                .get(organisation_id)
                                .is_some_and(|s| s.same_channel(&me))
                            {
                                map.remove(organisation_id);
                            }
                        }
                        continue;
                    }
                };
            if received == 0 {
                return;
            }
            let (entries, replies): (Vec<NewLedgerEntry>, Vec<_>) = jobs.drain(..).unzip();
            fail::fail_point!("ledger_writer_panic");
            let result = self
                .storage
                .ledger()
                .append_ledger_group(organisation_id, entries, self.clock.now_ms())
                .await;
            match result {
                Ok(records) if records.len() == replies.len() => {
                    for (reply, record) in replies.into_iter().zip(records) {
                        let _ = reply.send(Ok(record));
                    }
                }
                Ok(records) => {
                    tracing::error!(organisation = %organisation_id, entries = replies.len(), answered = records.len(), "ledger append answered the wrong number of entries");
                    for reply in replies {
                        let _ =
                            reply.send(Err(LedgerError::Storage("internal batching error".into())));
                    }
                }
                Err(error) => {
                    tracing::warn!(organisation = %organisation_id, entries = replies.len(), %error, "ledger append failed");
                    let error = if error.is_unavailable() {
                        LedgerError::Unavailable(error.to_string())
                    } else {
                        LedgerError::Storage(error.to_string())
                    };
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}
