//! What the engine benches and the profiling example share: the message set and a store
//! that does nothing, so that every measurement of the engine runs the same work.
//!
//! Owns: the workload. Must never: differ between the bench and the profile, or the
//! instruction counts of one would not explain the timings of the other.

#![allow(dead_code)]

use async_trait::async_trait;
use bytes::Bytes;
use ecom_stream::app::pipeline::{Drained, Pipeline};
use ecom_stream::config::EngineConfig;
use ecom_stream::dlq::TableOnly;
use ecom_stream::generator::MockData;
use ecom_stream::model::StreamKind;
use ecom_stream::shutdown::Shutdown;
use ecom_stream::source::in_process::{Delivery, InProcessSource, Message, SourceOptions};
use ecom_stream::store::{
    DeadLetterStore, DlqEntry, FactSink, FactWrite, InvalidMessage, OrderLookup, Page,
    ReplayedEntry, StoreError,
};
use ecom_stream::telemetry::Stats;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `orders` orders and as many payments; each payment shortly after its order, as in
/// production.
pub fn messages(orders: i64) -> Vec<Message> {
    let mut mock = MockData::new(7);
    let mut out = Vec::with_capacity(2 * orders as usize);
    let mut pending = Vec::new();
    for id in 1..=orders {
        let order = serde_json::to_vec(&mock.order(id)).expect("a mock order serialises");
        out.push(message(StreamKind::Orders, format!("o{id}"), order));
        let payment =
            serde_json::to_vec(&mock.payment(1_000_000 + id, id)).expect("a mock payment too");
        pending.push(message(StreamKind::Payments, format!("p{id}"), payment));
        // Payments trail their orders by up to 8 messages.
        if pending.len() == 8 {
            out.append(&mut pending);
        }
    }
    out.append(&mut pending);
    out
}

fn message(topic: StreamKind, message_id: String, data: Vec<u8>) -> Message {
    Message {
        topic,
        message_id,
        data: Bytes::from(data),
        publish_time: 1,
    }
}

/// Accepts everything, keeps nothing: isolates the engine from storage.
pub struct NoopStore;

#[async_trait]
impl FactSink for NoopStore {
    async fn write_facts(&self, _: &[FactWrite]) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl OrderLookup for NoopStore {
    async fn known_orders(&self, _: &[i64]) -> Result<HashSet<i64>, StoreError> {
        Ok(HashSet::new())
    }
}

#[async_trait]
impl DeadLetterStore for NoopStore {
    async fn put_dead_letters(&self, _: &[DlqEntry]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn scan_dead_letters(
        &self,
        _: Option<i64>,
        _: usize,
    ) -> Result<Page<DlqEntry, i64>, StoreError> {
        Ok(Page::last(Vec::new()))
    }
    async fn delete_dead_letters(&self, _: &[ReplayedEntry]) -> Result<Vec<i64>, StoreError> {
        Ok(Vec::new())
    }
    async fn bump_dead_letter_attempts(&self, _: &[i64]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn put_invalid(&self, _: &[InvalidMessage]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn scan_invalid(
        &self,
        _: Option<(StreamKind, String)>,
        _: usize,
    ) -> Result<Page<InvalidMessage, (StreamKind, String)>, StoreError> {
        Ok(Page::last(Vec::new()))
    }
}

/// One run of `msgs` through a fresh pipeline of `shards` shards; returns the time from
/// first delivery to last ack (start-up and shutdown excluded). Panics if a message is not
/// acked: a bench that loses messages measures nothing.
pub fn run_pipeline(msgs: Vec<Message>, shards: usize) -> Duration {
    actix_rt::System::new().block_on(async move {
        let config = EngineConfig {
            shards,
            ..EngineConfig::default()
        };
        let stats = Arc::new(Stats::default());
        let pipeline = Pipeline::start(&config, Arc::new(NoopStore), Arc::new(TableOnly), stats)
            .expect("valid config");
        let source = InProcessSource::new(SourceOptions::default());
        let n = msgs.len() as u64;
        let started = Instant::now();
        let outcome = source
            .deliver(msgs, &pipeline.intake(), &Shutdown::never())
            .await;
        let elapsed = started.elapsed();
        assert_eq!(outcome, Delivery::Completed);
        assert_eq!(source.counts().acked, n);
        assert_eq!(pipeline.shutdown().await, Drained::Clean);
        elapsed
    })
}
