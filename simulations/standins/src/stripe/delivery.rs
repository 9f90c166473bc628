//! Webhook delivery: one worker posts events to the endpoint in the order they are queued; a
//! failed attempt (non-2xx, redirect, timeout, refused connection) goes back on the queue after
//! the next delay of the retry schedule, so a failing event never blocks the others. Each
//! attempt is signed afresh with the time of that attempt, as Stripe does.
//!
//! Test controls act on events as they are raised: a filter of enabled types, copies (the same
//! event delivered several times), per-type or global delays, hold-and-release (for reordering)
//! and pause/resume of the worker.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::event::{Event, signature_header_for};
use super::objects::unix_now;

/// The stand-in's default retry schedule: short, since it only lives as long as a test.
const RETRY_DELAYS_DEFAULT_MS: [u64; 5] = [100, 500, 2_000, 10_000, 30_000];
/// At most this many retries per event, whatever schedule is set.
pub const RETRIES_MAX: usize = 50;
/// How long one attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Jobs waiting for the worker; past this, new events are recorded as not delivered.
const QUEUE_MAX: usize = 100_000;
/// Attempts kept for inspection; the oldest are dropped past this.
const ATTEMPTS_KEPT_MAX: usize = 100_000;
/// How many copies of one event `set_copies` may ask for.
pub const COPIES_MAX: usize = 100;

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first try of a copy, 2 for its first retry, …
    pub attempt: u32,
    /// The endpoint's status; `None` when no answer came (refused, reset, timed out).
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The `Stripe-Signature` header sent.
    pub signature_header: String,
    /// Failed, and the schedule has no retry left.
    pub gave_up: bool,
}

impl DeliveryAttempt {
    pub fn succeeded(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }
}

/// The order in which `release_held` delivers the held events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOrder {
    AsRaised,
    Reversed,
    /// These events first, in this order; any other held events follow in the order raised.
    ByIds(Vec<String>),
}

struct Settings {
    url: Option<String>,
    secrets: Vec<String>,
    /// `None` is Stripe's `*`: every type.
    enabled_events: Option<Vec<String>>,
    retry_delays: Vec<Duration>,
    attempt_timeout: Duration,
    copies: usize,
    delay_all: Duration,
    delay_by_type: HashMap<String, Duration>,
    holding: bool,
    held: Vec<Event>,
}

#[derive(Clone)]
struct Job {
    event: Event,
    body: Arc<Vec<u8>>,
    attempt: u32,
}

pub(crate) struct Deliveries {
    settings: Mutex<Settings>,
    attempts: Mutex<VecDeque<DeliveryAttempt>>,
    paused: watch::Sender<bool>,
    queue: mpsc::Sender<Job>,
    client: reqwest::Client,
}

impl Deliveries {
    /// The deliveries and their worker, which runs until the handle is aborted.
    pub(crate) fn start(secret: &str) -> anyhow::Result<(Arc<Self>, JoinHandle<()>)> {
        let client = reqwest::Client::builder()
            // Stripe counts a redirect as a failed delivery.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .build()
            .context("webhook HTTP client")?;
        let (queue, jobs) = mpsc::channel(QUEUE_MAX);
        let deliveries = Arc::new(Self {
            settings: Mutex::new(Settings {
                url: None,
                secrets: vec![secret.to_string()],
                enabled_events: None,
                retry_delays: RETRY_DELAYS_DEFAULT_MS
                    .iter()
                    .map(|&ms| Duration::from_millis(ms))
                    .collect(),
                attempt_timeout: ATTEMPT_TIMEOUT_DEFAULT,
                copies: 1,
                delay_all: Duration::ZERO,
                delay_by_type: HashMap::new(),
                holding: false,
                held: Vec::new(),
            }),
            attempts: Mutex::new(VecDeque::new()),
            paused: watch::Sender::new(false),
            queue,
            client,
        });
        let worker = tokio::spawn(deliveries.clone().run(jobs));
        Ok((deliveries, worker))
    }

    async fn run(self: Arc<Self>, mut jobs: mpsc::Receiver<Job>) {
        let mut paused = self.paused.subscribe();
        while let Some(job) = jobs.recv().await {
            if paused.wait_for(|paused| !*paused).await.is_err() {
                return;
            }
            self.attempt(job).await;
        }
    }

    /// Posts one attempt, records it, and puts a failed job back on the queue after its delay.
    async fn attempt(&self, job: Job) {
        let (url, secrets, timeout) = {
            let settings = self.settings.lock();
            let url = settings.url.clone();
            (url, settings.secrets.clone(), settings.attempt_timeout)
        };
        let test_mode = !job.event.json["livemode"].as_bool().unwrap_or(false);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let header = signature_header_for(&secrets, unix_now(), &job.body, test_mode);
        let (status, error) = match url {
            None => (None, Some("no webhook endpoint is set".to_string())),
            Some(url) => match self.post(&url, &job.body, &header, timeout).await {
                Ok(status) => (Some(status), None),
                Err(error) => (None, Some(format!("{error:#}"))),
            },
        };
        let mut attempt = DeliveryAttempt {
            event_id: job.event.id.clone(),
            event_type: job.event.event_type.clone(),
            attempt: job.attempt,
            status,
            error,
            signature_header: header,
            gave_up: false,
        };
        if !attempt.succeeded() {
            let retry_delay = self
                .settings
                .lock()
                .retry_delays
                .get(job.attempt as usize - 1)
                .copied();
            match retry_delay {
                Some(delay) => {
                    let retry = Job {
                        attempt: job.attempt + 1,
                        ..job
                    };
                    self.enqueue_after(retry, delay);
                }
                None => attempt.gave_up = true,
            }
        }
        self.record(attempt);
    }

    async fn post(
        &self,
        url: &str,
        body: &[u8],
        header: &str,
        timeout: Duration,
    ) -> anyhow::Result<u16> {
        let response = self
            .client
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Stripe-Signature", header)
            .header("Cache-Control", "no-cache")
            .timeout(timeout)
            .body(body.to_vec())
            .send()
            .await
            .context("post the webhook")?;
        Ok(response.status().as_u16())
    }

    fn record(&self, attempt: DeliveryAttempt) {
        let mut attempts = self.attempts.lock();
        if attempts.len() == ATTEMPTS_KEPT_MAX {
            attempts.pop_front();
        }
        attempts.push_back(attempt);
    }

    fn enqueue(&self, job: Job) {
        if self.queue.try_send(job.clone()).is_err() {
            self.record(DeliveryAttempt {
                event_id: job.event.id,
                event_type: job.event.event_type,
                attempt: job.attempt,
                status: None,
                error: Some(format!("more than {QUEUE_MAX} deliveries queued")),
                signature_header: String::new(),
                gave_up: true,
            });
        }
    }

    fn enqueue_after(&self, job: Job, delay: Duration) {
        if delay.is_zero() {
            self.enqueue(job);
            return;
        }
        // The timer holds only the queue, so a dropped stand-in leaves nothing behind but a
        // sleeping task whose send fails.
        let queue = self.queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = queue.send(job).await;
        });
    }

    /// Whether an event of this type goes to the endpoint (for `pending_webhooks`).
    pub(crate) fn wants(&self, event_type: &str) -> bool {
        let settings = self.settings.lock();
        settings.url.is_some()
            && settings
                .enabled_events
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == event_type))
    }

    /// Delivers a raised event, applying hold, copies and delays.
    pub(crate) fn dispatch(&self, event: Event) {
        if !self.wants(&event.event_type) {
            return;
        }
        let (copies, delay) = {
            let mut settings = self.settings.lock();
            if settings.holding {
                settings.held.push(event);
                return;
            }
            let delay = settings
                .delay_by_type
                .get(&event.event_type)
                .copied()
                .unwrap_or(settings.delay_all);
            (settings.copies, delay)
        };
        let body = Arc::new(event.body());
        for _ in 0..copies {
            let job = Job {
                event: event.clone(),
                body: body.clone(),
                attempt: 1,
            };
            self.enqueue_after(job, delay);
        }
    }

    /// Delivers one more copy of `event` now, whatever the controls say (Stripe's "resend").
    pub(crate) fn redeliver(&self, event: Event) {
        let body = Arc::new(event.body());
        self.enqueue(Job {
            event,
            body,
            attempt: 1,
        });
    }

    /// Signs `body` (at `timestamp`, or now) unless `header` is given, and posts it once.
    pub(crate) async fn send_once(
        &self,
        body: &[u8],
        livemode: bool,
        timestamp: Option<i64>,
        header: Option<&str>,
    ) -> anyhow::Result<u16> {
        let (url, secrets, timeout) = {
            let settings = self.settings.lock();
            let url = settings.url.clone();
            (url, settings.secrets.clone(), settings.attempt_timeout)
        };
        let url = url.context("set_webhook_url first")?;
        let header = match header {
            Some(header) => header.to_string(),
            None => {
                let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                let timestamp = timestamp.unwrap_or_else(unix_now);
                signature_header_for(&secrets, timestamp, body, !livemode)
            }
        };
        self.post(&url, body, &header, timeout).await
    }

    pub(crate) fn set_url(&self, url: Option<&str>) {
        self.settings.lock().url = url.map(str::to_string);
    }

    pub(crate) fn add_secret(&self, secret: &str) {
        let mut settings = self.settings.lock();
        if !settings.secrets.iter().any(|s| s == secret) {
            settings.secrets.push(secret.to_string());
        }
    }

    pub(crate) fn remove_secret(&self, secret: &str) {
        self.settings.lock().secrets.retain(|s| s != secret);
    }

    pub(crate) fn secrets(&self) -> Vec<String> {
        self.settings.lock().secrets.clone()
    }

    pub(crate) fn set_enabled_events(&self, types: Option<&[&str]>) {
        self.settings.lock().enabled_events =
            types.map(|types| types.iter().map(|t| t.to_string()).collect());
    }

    pub(crate) fn set_retry_delays(&self, delays: &[Duration]) {
        let kept = delays.len().min(RETRIES_MAX);
        self.settings.lock().retry_delays = delays[..kept].to_vec();
    }

    pub(crate) fn set_attempt_timeout(&self, timeout: Duration) {
        self.settings.lock().attempt_timeout = timeout;
    }

    pub(crate) fn set_copies(&self, copies: usize) {
        self.settings.lock().copies = copies.clamp(1, COPIES_MAX);
    }

    pub(crate) fn set_delay(&self, event_type: Option<&str>, delay: Duration) {
        let mut settings = self.settings.lock();
        match event_type {
            None => settings.delay_all = delay,
            Some(event_type) if delay.is_zero() => {
                settings.delay_by_type.remove(event_type);
            }
            Some(event_type) => {
                settings.delay_by_type.insert(event_type.to_string(), delay);
            }
        }
    }

    pub(crate) fn hold(&self) {
        self.settings.lock().holding = true;
    }

    pub(crate) fn held(&self) -> Vec<Event> {
        self.settings.lock().held.clone()
    }

    /// Stops holding and delivers what was held, in `order`; answers how many were released.
    pub(crate) fn release(&self, order: ReleaseOrder) -> usize {
        let mut held = {
            let mut settings = self.settings.lock();
            settings.holding = false;
            std::mem::take(&mut settings.held)
        };
        match order {
            ReleaseOrder::AsRaised => {}
            ReleaseOrder::Reversed => held.reverse(),
            ReleaseOrder::ByIds(ids) => {
                let rank = |event: &Event| {
                    ids.iter()
                        .position(|id| *id == event.id)
                        .unwrap_or(ids.len())
                };
                // A stable sort keeps the unnamed events in the order raised.
                held.sort_by_key(rank);
            }
        }
        let released = held.len();
        for event in held {
            self.redeliver(event);
        }
        released
    }

    pub(crate) fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub(crate) fn resume(&self) {
        self.paused.send_replace(false);
    }

    pub(crate) fn attempts(&self) -> Vec<DeliveryAttempt> {
        self.attempts.lock().iter().cloned().collect()
    }
}
