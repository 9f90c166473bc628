//! Group commit. Writes that many callers make at once (a login, a new login challenge) go
//! through a batcher: it takes the first request, then every request already queued behind it
//! (up to a limit), and writes them all with a few multi-row statements. Under light load a
//! batch is one request and nothing waits; under heavy load the per-statement cost (on SQLite,
//! two thread hand-offs and a commit each) is shared by the whole batch. Every caller gets its
//! own answer only after the batch is durable.

use std::future::Future;
use std::sync::Arc;

use ampflow_runtime::Supervisor;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{Result, StorageError};

/// Requests waiting for a batcher; callers wait for room beyond this.
const QUEUE_CAPACITY: usize = 4096;

type Job<Req, Resp> = (Req, oneshot::Sender<Result<Resp>>);

pub(crate) struct Batcher<Req, Resp> {
    name: &'static str,
    jobs: mpsc::Sender<Job<Req, Resp>>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            jobs: self.jobs.clone(),
        }
    }
}

impl<Req, Resp> std::fmt::Debug for Batcher<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the batcher task under `supervisor`. `write` gets up to `batch_max` requests and
    /// answers one result per request, in order, or one error for the whole batch. A panic
    /// fails the batch it held (its callers get an error) and the task starts again on the
    /// same queue.
    pub(crate) fn spawn<F, Fut>(
        supervisor: &Supervisor,
        name: &'static str,
        batch_max: usize,
        write: F,
    ) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>>> + Send + 'static,
    {
        let (jobs, queue) = mpsc::channel::<Job<Req, Resp>>(QUEUE_CAPACITY);
        let queue = Arc::new(Mutex::new(queue));
        let write = Arc::new(write);
        supervisor.spawn(
            "storage_batch",
            format!("storage batch {name}"),
            move || run(name, batch_max, queue.clone(), write.clone()),
        );
        Self { name, jobs }
    }

    /// Queues `request` and waits until its batch is written.
    pub(crate) async fn submit(&self, request: Req) -> Result<Resp> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((request, reply)).await.map_err(|_| {
            StorageError::Unavailable(format!("{} batch: storage is closed", self.name))
        })?;
        // The writer dropped the batch without answering: it panicked (the supervisor starts
        // it again on the same queue).
        answer.await.map_err(|_| {
            StorageError::Unavailable(format!("{} batch: the batch was abandoned", self.name))
        })?
    }
}

async fn run<Req, Resp, F, Fut>(
    name: &'static str,
    batch_max: usize,
    queue: Arc<Mutex<mpsc::Receiver<Job<Req, Resp>>>>,
    write: Arc<F>,
) where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Result<Vec<Resp>>>,
{
    let mut queue = queue.lock().await;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<Req>, Vec<_>) = batch.into_iter().unzip();
        let size = requests.len();
        fail::fail_point!("storage_batch_panic");
        match write(requests).await {
            Ok(results) if results.len() == size => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Ok(results) => {
                tracing::error!(
                    name,
                    size,
                    answered = results.len(),
                    "batch answered the wrong number of results"
                );
                for reply in replies {
                    let _ = reply.send(Err(StorageError::Batch {
                        name,
                        message: "internal batching error".into(),
                    }));
                }
            }
            Err(error) => {
                let message = error.to_string();
                let unavailable = error.is_unavailable();
                for reply in replies {
                    let _ = reply.send(Err(if unavailable {
                        StorageError::Unavailable(format!("{name} batch: {message}"))
                    } else {
                        StorageError::Batch {
                            name,
                            message: message.clone(),
                        }
                    }));
                }
            }
        }
    }
}
