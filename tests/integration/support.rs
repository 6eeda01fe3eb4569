//! Shared test harness: messages, engine configs, and stores that fail or stall on demand.

use async_trait::async_trait;
use bytes::Bytes;
use ecom_stream::config::{EngineConfig, RetryPolicy};
use ecom_stream::dlq::{DlqPublisher, PublishError};
use ecom_stream::generator::MockData;
use ecom_stream::model::StreamKind;
use ecom_stream::source::in_process::Message;
use ecom_stream::store::memory::MemoryStore;
use ecom_stream::store::{
    DeadLetterStore, DlqEntry, FactReader, FactRow, FactSink, FactWrite, InvalidMessage,
    OrderLookup, Page, ReplayedEntry, StampedFact, Store, StoreError,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A small, fast engine: two shards, short linger, quick retries.
pub fn engine(hold: Duration) -> EngineConfig {
    EngineConfig {
        shards: 2,
        hold,
        batch_size: 100,
        linger: Duration::from_millis(2),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        },
        shutdown_deadline: Duration::from_secs(30),
        ..EngineConfig::default()
    }
}

pub fn order_msg(mock: &mut MockData, order_id: i64, tag: &str) -> Message {
    let order = mock.order(order_id);
    Message {
        topic: StreamKind::Orders,
        message_id: format!("order-{order_id}{tag}"),
        data: Bytes::from(serde_json::to_vec(&order).unwrap()),
        publish_time: 0,
    }
}

pub fn payment_msg(mock: &mut MockData, payment_id: i64, order_id: i64, tag: &str) -> Message {
    let payment = mock.payment(payment_id, order_id);
    Message {
        topic: StreamKind::Payments,
        message_id: format!("payment-{payment_id}{tag}"),
        data: Bytes::from(serde_json::to_vec(&payment).unwrap()),
        publish_time: 0,
    }
}

pub fn raw_msg(topic: StreamKind, id: &str, data: impl Into<Bytes>) -> Message {
    Message {
        topic,
        message_id: id.to_string(),
        data: data.into(),
        publish_time: 0,
    }
}

/// Every fact row, by order id (paging until the store says the scan is complete).
pub async fn all_facts(store: &dyn FactReader) -> BTreeMap<i64, FactRow> {
    let mut rows = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.scan_facts(after, 500).await.unwrap();
        rows.extend(page.items.into_iter().map(|r| (r.order_id, r)));
        let Some(next) = page.next else { break };
        after = Some(next);
    }
    rows
}

/// Every DLQ entry, by payment id.
pub async fn all_dead_letters(store: &dyn DeadLetterStore) -> BTreeMap<i64, DlqEntry> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.scan_dead_letters(after, 500).await.unwrap();
        out.extend(page.items.into_iter().map(|e| (e.payment.payment_id, e)));
        let Some(next) = page.next else { break };
        after = Some(next);
    }
    out
}

pub async fn all_invalid(store: &dyn DeadLetterStore) -> Vec<InvalidMessage> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan_invalid(after, 500).await.unwrap();
        out.extend(page.items);
        let Some(next) = page.next else { break };
        after = Some(next);
    }
    out
}

/// What a store wrapper does before each write reaches the real store.
#[async_trait]
pub trait WriteHook: Send + Sync + 'static {
    async fn before_write(&self) -> Result<(), StoreError>;
}

/// A [`MemoryStore`] whose writes pass through a [`WriteHook`] first; reads go straight
/// through.
pub struct HookedStore<H> {
    pub inner: MemoryStore,
    pub hook: H,
}

impl<H: WriteHook> HookedStore<H> {
    pub fn new(hook: H) -> Arc<Self> {
        Arc::new(HookedStore {
            inner: MemoryStore::new(),
            hook,
        })
    }
}

// The pipeline takes the whole store; only writes go through the hook.

#[async_trait]
impl<H: WriteHook> FactSink for HookedStore<H> {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
        self.hook.before_write().await?;
        self.inner.write_facts(writes).await
    }
}

#[async_trait]
impl<H: WriteHook> OrderLookup for HookedStore<H> {
    async fn known_orders(&self, ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
        self.inner.known_orders(ids).await
    }
}

#[async_trait]
impl<H: WriteHook> FactReader for HookedStore<H> {
    async fn fact(&self, id: i64) -> Result<Option<FactRow>, StoreError> {
        self.inner.fact(id).await
    }
    async fn fact_with_timestamps(&self, id: i64) -> Result<Option<StampedFact>, StoreError> {
        self.inner.fact_with_timestamps(id).await
    }
    async fn dead_letter(&self, id: i64) -> Result<Option<DlqEntry>, StoreError> {
        self.inner.dead_letter(id).await
    }
    async fn scan_facts(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<FactRow, i64>, StoreError> {
        self.inner.scan_facts(after, limit).await
    }
}

#[async_trait]
impl<H: WriteHook> DeadLetterStore for HookedStore<H> {
    async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError> {
        self.hook.before_write().await?;
        self.inner.put_dead_letters(entries).await
    }
    async fn scan_dead_letters(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<DlqEntry, i64>, StoreError> {
        self.inner.scan_dead_letters(after, limit).await
    }
    async fn delete_dead_letters(
        &self,
        resolved: &[ReplayedEntry],
    ) -> Result<Vec<i64>, StoreError> {
        self.inner.delete_dead_letters(resolved).await
    }
    async fn bump_dead_letter_attempts(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.inner.bump_dead_letter_attempts(ids).await
    }
    async fn put_invalid(&self, entries: &[InvalidMessage]) -> Result<(), StoreError> {
        self.hook.before_write().await?;
        self.inner.put_invalid(entries).await
    }
    async fn scan_invalid(
        &self,
        after: Option<(StreamKind, String)>,
        limit: usize,
    ) -> Result<Page<InvalidMessage, (StreamKind, String)>, StoreError> {
        self.inner.scan_invalid(after, limit).await
    }
}

/// Fails the first `failures` writes with a retriable error, then lets writes through.
#[derive(Default)]
pub struct FailFirst {
    pub failures: u64,
    pub calls: AtomicU64,
}

#[async_trait]
impl WriteHook for FailFirst {
    async fn before_write(&self) -> Result<(), StoreError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(StoreError::unavailable("injected timeout"));
        }
        Ok(())
    }
}

/// Blocks every write until [`Gate::open`]; counts the writes that arrived at the gate.
pub struct Gate {
    open: tokio::sync::watch::Sender<bool>,
    pub arrived: AtomicU64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            open: tokio::sync::watch::channel(false).0,
            arrived: AtomicU64::new(0),
        }
    }
}

impl Gate {
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

#[async_trait]
impl WriteHook for Gate {
    async fn before_write(&self) -> Result<(), StoreError> {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
        Ok(())
    }
}

/// A DLQ topic that counts what it was asked to publish, per payment id.
#[derive(Default)]
pub struct CountingPublisher {
    pub unmatched: dashmap::DashMap<i64, u64>,
    pub invalid: AtomicU64,
}

#[async_trait]
impl DlqPublisher for CountingPublisher {
    async fn publish_unmatched(&self, entries: &[DlqEntry]) -> Result<(), PublishError> {
        for e in entries {
            *self.unmatched.entry(e.payment.payment_id).or_default() += 1;
        }
        Ok(())
    }
    async fn publish_invalid(&self, messages: &[InvalidMessage]) -> Result<(), PublishError> {
        self.invalid
            .fetch_add(messages.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

/// Waits (bounded) until `cond` holds, polling; panics with `what` if it never does.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Delivers `msgs` through `pipeline` in the background, so a test can watch it run.
pub fn spawn_delivery(
    source: &ecom_stream::source::in_process::InProcessSource,
    pipeline: &ecom_stream::app::pipeline::Pipeline,
    msgs: Vec<Message>,
    shutdown: ecom_stream::shutdown::Shutdown,
) -> tokio::task::JoinHandle<ecom_stream::source::in_process::Delivery> {
    let (source, intake) = (source.clone(), pipeline.intake());
    actix_rt::spawn(async move { source.deliver(msgs, &intake, &shutdown).await })
}

/// A pipeline on `store` with `cfg`, no DLQ topic, and its counters.
pub fn start_pipeline(
    cfg: &EngineConfig,
    store: Arc<dyn Store>,
) -> (
    ecom_stream::app::pipeline::Pipeline,
    Arc<ecom_stream::telemetry::Stats>,
) {
    let stats = Arc::new(ecom_stream::telemetry::Stats::default());
    let pipeline = ecom_stream::app::pipeline::Pipeline::start(
        cfg,
        store,
        Arc::new(ecom_stream::dlq::TableOnly),
        stats.clone(),
    )
    .expect("valid test config");
    (pipeline, stats)
}

/// How a source stand-in's messages were answered, by message id.
#[derive(Default)]
pub struct Answers {
    acked: std::sync::Mutex<Vec<String>>,
    nacked: std::sync::Mutex<Vec<String>>,
}

impl Answers {
    /// The ids acked so far, one entry per ack.
    pub fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }
    /// The ids nacked so far, one entry per nack.
    pub fn nacked(&self) -> Vec<String> {
        self.nacked.lock().unwrap().clone()
    }
}

/// One message's answer path into [`Answers`].
struct Recorded {
    id: String,
    answers: Arc<Answers>,
}

impl ecom_stream::ack::Acknowledge for Recorded {
    fn ack(self: Box<Self>) {
        self.answers.acked.lock().unwrap().push(self.id);
    }
    fn nack(self: Box<Self>, _: ecom_stream::ack::NackReason) {
        self.answers.nacked.lock().unwrap().push(self.id);
    }
}

/// `msg` as a delivery with write timestamp `ts`, whose answer is recorded in `answers`
/// under its message id.
pub fn recorded_envelope(
    msg: Message,
    ts: i64,
    answers: &Arc<Answers>,
) -> ecom_stream::source::Envelope {
    ecom_stream::source::Envelope {
        topic: msg.topic,
        ack: ecom_stream::ack::AckHandle::new(Recorded {
            id: msg.message_id.clone(),
            answers: answers.clone(),
        }),
        message_id: msg.message_id,
        data: msg.data,
        publish_time: ts,
        delivery_attempt: None,
    }
}
