//! `ecom-stream demo`: the original pipeline's scenario through the real actors, in one
//! process, into the embedded store (design §5).
//!
//! Owns: the demo scenario (which messages, in which order) and the run that feeds it,
//! drains, replays the DLQ and reports. Must never: bypass the pipeline (every message goes
//! through the in-process source and is acked only when durable) or count from its own
//! expectations: the report reads the pipeline's counters.
//!
//! The scenario, with the defaults (80 orders, payments for order ids 1..=500):
//! - orders 1..=80, and one payment for each order id 1..=500, interleaved;
//! - about a quarter of the joinable payments arrive shortly before their order (within the
//!   hold time), so they are held, then joined;
//! - a few orders are "late": sent only after their payments were dead-lettered, so the
//!   closing replay joins them;
//! - about 2% of the messages are published twice, and six payloads are invalid;
//! - payments for order ids 81..=500 never find their order: 420 DLQ entries.
//!
//! Afterwards `query facts` lists 80 rows, each with its payment, and `dlq list` 420.

use crate::app::pipeline::{Drained, Pipeline};
use crate::config::{ConfigError, EngineConfig};
use crate::dlq::replay::{replay_once, ReplayReport};
use crate::dlq::TableOnly;
use crate::generator::MockData;
use crate::model::{StreamKind, PAYMENT_ID_OFFSET};
use crate::shutdown::Shutdown;
use crate::source::in_process::{Delivery, InProcessSource, Message, SourceCounts, SourceOptions};
use crate::store::{Store, StoreError};
use crate::telemetry::{Stats, StatsSnapshot};
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the demo generates.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Orders with ids `1..=orders`.
    pub orders: u64,
    /// One payment for each order id `1..=payments`.
    pub payments: u64,
    /// Messages per second, or unlimited.
    pub rate: Option<f64>,
    pub seed: u64,
    /// Fraction of messages published twice.
    pub duplicates: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            orders: 80,
            payments: 500,
            rate: None,
            seed: 42,
            duplicates: 0.02,
        }
    }
}

/// The scenario is built in memory (it is sorted to interleave), ~350 bytes a message.
const MAX_DEMO: u64 = 10_000_000;

impl DemoOptions {
    /// Checks every setting, naming the flag to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting, problem: String| Err(ConfigError { setting, problem });
        if self.orders > MAX_DEMO {
            return bad(
                "--orders",
                format!("{} is more than {MAX_DEMO}", self.orders),
            );
        }
        if self.payments > MAX_DEMO {
            return bad(
                "--payments",
                format!("{} is more than {MAX_DEMO}", self.payments),
            );
        }
        if !(0.0..=1.0).contains(&self.duplicates) {
            return bad("--duplicates", "must be between 0 and 1".into());
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return bad(
                "--rate",
                "must be a positive number of messages per second".into(),
            );
        }
        Ok(())
    }
}

/// The messages of a demo run and what they must produce.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Sent first.
    pub main: Vec<Message>,
    /// Orders sent once everything of `main` is acked (their payments dead-lettered).
    pub late: Vec<Message>,
    /// Rows `query facts` must list afterwards.
    pub expected_rows: u64,
    /// Of those, rows with a payment.
    pub expected_joined: u64,
    /// Entries `dlq list` must list afterwards.
    pub expected_dlq: u64,
    /// Invalid payloads in `main`.
    pub invalid: u64,
}

/// Builds the scenario for `opts` (deterministic in `opts.seed`).
pub fn scenario(opts: &DemoOptions) -> Scenario {
    let mut mock = MockData::new(opts.seed);
    let orders = opts.orders as i64;
    let payments = opts.payments as i64;
    // Keys order the main stream: order i sits at 10*i.
    let span = 10 * orders.max(1) + 60;
    let late_count = if orders >= 20 {
        (orders / 25).max(1)
    } else {
        0
    };
    let mut late_ids: HashSet<i64> = HashSet::new();
    while (late_ids.len() as i64) < late_count {
        late_ids.insert(1 + mock.rng().below(orders as u64) as i64);
    }
    let mut keyed: Vec<(i64, Message)> = Vec::new();
    let mut late = Vec::new();
    for id in 1..=orders {
        let msg = json_message(StreamKind::Orders, format!("order-{id}"), &mock.order(id));
        if late_ids.contains(&id) {
            late.push(msg);
        } else {
            keyed.push((10 * id, msg));
        }
    }
    for order_id in 1..=payments {
        let rng = mock.rng();
        let key = if order_id <= orders && !late_ids.contains(&order_id) {
            if rng.below(4) == 0 {
                // Early: up to three orders ahead of its own, well within the hold time.
                10 * order_id - 1 - rng.below(30) as i64
            } else {
                10 * order_id + 1 + rng.below(60) as i64
            }
        } else {
            rng.below(span as u64) as i64
        };
        let payment_id = PAYMENT_ID_OFFSET + order_id;
        let payment = mock.payment(payment_id, order_id);
        keyed.push((
            key,
            json_message(
                StreamKind::Payments,
                format!("payment-{payment_id}"),
                &payment,
            ),
        ));
    }
    let duplicates = ((keyed.len() as f64 * opts.duplicates).round() as usize).min(keyed.len());
    for n in 0..duplicates {
        let rng = mock.rng();
        let (key, original) = &keyed[rng.below(keyed.len() as u64) as usize];
        let mut copy = original.clone();
        copy.message_id = format!("{}-dup{n}", copy.message_id);
        keyed.push((key + 1 + rng.below(200) as i64, copy));
    }
    let invalid = invalid_payloads();
    let invalid_count = invalid.len() as u64;
    for (n, (topic, data)) in invalid.into_iter().enumerate() {
        let key = mock.rng().below(span as u64) as i64;
        keyed.push((
            key,
            Message {
                topic,
                message_id: format!("{topic}-invalid-{n}"),
                data: Bytes::from(data),
                publish_time: 0,
            },
        ));
    }
    keyed.sort_by_key(|(key, _)| *key);
    Scenario {
        main: keyed.into_iter().map(|(_, m)| m).collect(),
        late,
        expected_rows: opts.orders,
        expected_joined: opts.orders.min(opts.payments),
        expected_dlq: opts.payments.saturating_sub(opts.orders),
        invalid: invalid_count,
    }
}

fn json_message<T: Serialize>(topic: StreamKind, message_id: String, record: &T) -> Message {
    // Serialising plain structs of strings and numbers cannot fail.
    let data = serde_json::to_vec(record).unwrap_or_default();
    Message {
        topic,
        message_id,
        data: Bytes::from(data),
        publish_time: 0,
    }
}

/// The garbage real producers send sooner or later.
fn invalid_payloads() -> Vec<(StreamKind, Vec<u8>)> {
    vec![
        (StreamKind::Orders, b"this is not json".to_vec()),
        (StreamKind::Orders, br#"{"order_id": 9001, "item": "Laptop"}"#.to_vec()),
        (
            StreamKind::Orders,
            br#"{"order_id":9002,"customer_id":1,"item":"Mouse","quantity":-3,"price":9.5,"shipping_address":"x","order_status":"Pending","creation_date":"2024-01-01 00:00:00"}"#.to_vec(),
        ),
        (
            StreamKind::Payments,
            br#"{"payment_id":"abc","order_id":1,"payment_method":"PayPal","card_last_four":"1234","payment_status":"Completed","payment_datetime":"2024-01-01 00:00:00"}"#.to_vec(),
        ),
        (
            StreamKind::Payments,
            br#"{"payment_id":0,"order_id":1,"payment_method":"PayPal","card_last_four":"1234","payment_status":"Completed","payment_datetime":"2024-01-01 00:00:00"}"#.to_vec(),
        ),
        (StreamKind::Payments, Vec::new()),
    ]
}

/// What a demo run did, from the pipeline's own counters.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub stats: StatsSnapshot,
    /// Deliveries, acks and redeliveries, as the source counted them.
    pub source: SourceCounts,
    pub replay: ReplayReport,
    /// Distinct messages generated (duplicates and invalid ones included).
    pub messages: u64,
    pub elapsed: Duration,
    /// Shutdown was requested before the scenario completed.
    pub interrupted: bool,
    pub expected_rows: u64,
    pub expected_dlq: u64,
    /// The store held no row and no dead letter when the run began: only then do
    /// `expected_rows` and `expected_dlq` describe what `query` and `dlq list` will show.
    pub store_was_empty: bool,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the scenario through a fresh pipeline on `store`, then one DLQ replay pass. Counts
/// into `stats` (fresh ones for a report of this run alone), which a caller may serve live.
pub async fn run(
    engine: &EngineConfig,
    opts: &DemoOptions,
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> Result<DemoReport, DemoError> {
    let sc = scenario(opts);
    let messages = (sc.main.len() + sc.late.len()) as u64;
    let store_was_empty = store.scan_facts(None, 1).await?.items.is_empty()
        && store.scan_dead_letters(None, 1).await?.items.is_empty();
    let pipeline = Pipeline::start(engine, store.clone(), Arc::new(TableOnly), stats.clone())?;
    pipeline.shut_on(shutdown.clone());
    let intake = pipeline.intake();
    let source = InProcessSource::with_stats(
        SourceOptions {
            rate: opts.rate,
            ..SourceOptions::default()
        },
        stats.clone(),
    );
    let started = Instant::now();
    tracing::info!(messages, "demo: delivering");
    let mut interrupted =
        source.deliver(sc.main, &intake, &shutdown).await == Delivery::Interrupted;
    if !interrupted && !sc.late.is_empty() {
        tracing::info!(orders = sc.late.len(), "demo: delivering late orders");
        interrupted = source.deliver(sc.late, &intake, &shutdown).await == Delivery::Interrupted;
    }
    let elapsed = started.elapsed();
    if pipeline.shutdown().await == Drained::DeadlineExceeded {
        interrupted = true;
    }
    let replay = if interrupted {
        ReplayReport::default()
    } else {
        replay_once(store.as_ref(), &stats).await?
    };
    Ok(DemoReport {
        stats: stats.snapshot(),
        source: source.counts(),
        replay,
        messages,
        elapsed,
        interrupted,
        expected_rows: sc.expected_rows,
        expected_dlq: sc.expected_dlq,
        store_was_empty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scenario_has_the_original_shape() {
        let sc = scenario(&DemoOptions::default());
        let count = |topic| {
            sc.main
                .iter()
                .chain(&sc.late)
                .filter(|m| {
                    m.topic == topic
                        && !m.message_id.contains("dup")
                        && !m.message_id.contains("invalid")
                })
                .count()
        };
        assert_eq!(count(StreamKind::Orders), 80);
        assert_eq!(count(StreamKind::Payments), 500);
        assert_eq!(sc.late.len(), 3);
        assert_eq!(
            (sc.expected_rows, sc.expected_joined, sc.expected_dlq),
            (80, 80, 420)
        );
        assert!(sc.main.iter().any(|m| m.message_id.contains("dup")));
        // Some payments come before their order.
        let pos = |id: &str| sc.main.iter().position(|m| m.message_id == id);
        let early = (1..=80)
            .filter(|i| {
                match (
                    pos(&format!("payment-{}", PAYMENT_ID_OFFSET + i)),
                    pos(&format!("order-{i}")),
                ) {
                    (Some(p), Some(o)) => p < o,
                    _ => false,
                }
            })
            .count();
        assert!(early >= 5, "only {early} early payments");
        // Same seed, same scenario.
        let again = scenario(&DemoOptions::default());
        assert!(sc
            .main
            .iter()
            .zip(&again.main)
            .all(|(a, b)| a.message_id == b.message_id && a.data == b.data));
    }
}
