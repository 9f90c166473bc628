//! Supervision for the process's background tasks: group-commit writers, ledger writers,
//! request batchers, transaction senders, auto-invest executors, the checkpoint job and the
//! periodic chores. The entity actors have their registry for this; everything else runs under
//! a [`Supervisor`].
//!
//! A supervised task is a factory of futures. When a run panics, the supervisor logs the panic
//! with the task's name, counts it in `/metrics` (`background_task_restarts_total{task}`),
//! waits a backoff (exponential with jitter) and starts a new run from the factory. A run that
//! returns ends the task. A task that panics more than `restarts_max` times within `window` is
//! given up: it is logged at error level, counted (`background_task_failures_total{task}`),
//! and listed by [`Supervisor::failed`], which `/ready` reports, until the process restarts.
//!
//! What survives a restart is what the factory hands each run: a queue receiver kept behind a
//! shared lock stays open (callers keep queueing), while the work the panicking run held is
//! dropped (its callers get an error, never a silent success).

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// When a panicking task is restarted, and when it is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`; one more panic gives the task up.
    pub restarts_max: u32,
    pub window: Duration,
    /// The first restart's wait; each next one doubles, up to `backoff_max` (with jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            restarts_max: 5,
            window: Duration::from_secs(60),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// A task that was given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The kind of task (the metrics label), e.g. `tx_sender`.
    pub task: &'static str,
    /// Which one, e.g. `tx_sender chain 31337`.
    pub name: String,
    /// Panics within the window, the last included.
    pub panics: u32,
    pub last_panic: String,
}

/// The supervisor of one process's background tasks. Cloning is cheap: clones share the policy
/// and the list of failed tasks.
#[derive(Clone, Default)]
pub struct Supervisor(Arc<Shared>);

#[derive(Default)]
struct Shared {
    policy: RwLock<RestartPolicy>,
    failed: Mutex<BTreeMap<String, TaskFailure>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("policy", &*self.0.policy.read())
            .field("failed", &self.0.failed.lock().len())
            .finish()
    }
}

impl Supervisor {
    pub fn new(policy: RestartPolicy) -> Self {
        let supervisor = Self::default();
        supervisor.set_policy(policy);
        supervisor
    }

    /// Applies to every restart decision from now on.
    pub fn set_policy(&self, policy: RestartPolicy) {
        *self.0.policy.write() = policy;
    }

    /// The tasks given up, by name.
    pub fn failed(&self) -> Vec<TaskFailure> {
        self.0.failed.lock().values().cloned().collect()
    }

    /// Starts `make()` as a supervised task on the current runtime. `task` is the kind (a
    /// metrics label: keep it to a fixed set), `name` says which one in logs and `/ready`.
    pub fn spawn<F, Fut>(
        &self,
        task: &'static str,
        name: impl Into<String>,
        make: F,
    ) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(self.clone().supervise(task, name.into(), make))
    }

    /// Runs `make()` until a run returns, restarting it after each panic (see the module
    /// documentation). Aborting the task that awaits this stops the current run.
    pub async fn supervise<F, Fut>(self, task: &'static str, name: String, mut make: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut window_start = Instant::now();
        let mut panics = 0u32;
        let mut backoff = None;
        loop {
            let Err(payload) = AssertUnwindSafe(make()).catch_unwind().await else {
                return;
            };
            let message = panic_message(payload.as_ref());
            let policy = *self.0.policy.read();
            if window_start.elapsed() > policy.window {
                window_start = Instant::now();
                panics = 0;
                backoff = None;
            }
            panics += 1;
            if panics > policy.restarts_max {
                metrics::counter!("background_task_failures_total", "task" => task).increment(1);
                tracing::error!(
                    task,
                    name,
                    panics,
                    panic = %message,
                    "background task keeps panicking: given up until the process restarts (/ready reports it)"
                );
                let mut failed = self.0.failed.lock();
                failed.insert(
                    name.clone(),
                    TaskFailure {
                        task,
                        name,
                        panics,
                        last_panic: message,
                    },
                );
                metrics::gauge!("background_tasks_failed").set(failed.len() as f64);
                return;
            }
            let delay = backoff
                .get_or_insert_with(|| {
                    ExponentialBuilder::default()
                        .with_min_delay(policy.backoff_min)
                        .with_max_delay(policy.backoff_max.max(policy.backoff_min))
                        .with_jitter()
                        .without_max_times()
                        .build()
                })
                .next()
                .unwrap_or(policy.backoff_max);
            metrics::counter!("background_task_restarts_total", "task" => task).increment(1);
            tracing::error!(
                task,
                name,
                restart = panics,
                restart_in_ms = delay.as_millis() as u64,
                panic = %message,
                "background task panicked; restarting it"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick(restarts_max: u32) -> Supervisor {
        Supervisor::new(RestartPolicy {
            restarts_max,
            window: Duration::from_secs(60),
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
        })
    }

    #[tokio::test]
    async fn a_panicking_run_is_restarted_and_the_task_finishes_its_work() {
        let supervisor = quick(5);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor
            .spawn("test", "flaky", move || {
                let counted = counted.clone();
                async move {
                    if counted.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("injected");
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(supervisor.failed().is_empty());
    }

    #[tokio::test]
    async fn a_task_panicking_past_the_cap_is_given_up_and_listed() {
        let supervisor = quick(2);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor
            .spawn("test", "broken one", move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { panic!("always") }
            })
            .await
            .unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "the first run and two restarts"
        );
        assert_eq!(
            supervisor.failed(),
            vec![TaskFailure {
                task: "test",
                name: "broken one".into(),
                panics: 3,
                last_panic: "always".into(),
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn panics_further_apart_than_the_window_never_add_up() {
        let supervisor = Supervisor::new(RestartPolicy {
            restarts_max: 1,
            window: Duration::from_millis(50),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(100),
        });
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor
            .spawn("test", "rare", move || {
                let counted = counted.clone();
                async move {
                    if counted.fetch_add(1, Ordering::SeqCst) < 4 {
                        panic!("now and then");
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        assert!(supervisor.failed().is_empty());
    }

    #[tokio::test]
    async fn aborting_the_task_stops_the_current_run() {
        let supervisor = quick(5);
        let (started, mut ran) = tokio::sync::mpsc::channel::<()>(1);
        let dropped = Arc::new(AtomicU32::new(0));
        struct Guard(Arc<AtomicU32>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let seen = dropped.clone();
        let handle = supervisor.spawn("test", "forever", move || {
            let started = started.clone();
            let guard = Guard(seen.clone());
            async move {
                let _guard = guard;
                let _ = started.send(()).await;
                std::future::pending::<()>().await
            }
        });
        ran.recv().await.unwrap();
        handle.abort();
        assert!(handle.await.unwrap_err().is_cancelled());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}
