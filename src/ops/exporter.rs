//! Prometheus metrics through the `metrics` facade (design §5; the README has the table).
//!
//! Owns: the process-wide Prometheus recorder and the mapping of [`Stats`] onto metric names.
//! Must never: count anything itself. Counters and gauges are the atomics of [`Stats`],
//! published onto the facade at each scrape (`absolute` for counters, `set` for gauges), so
//! every event is counted once, where it happens. The write-latency histogram is not on the
//! facade at all (a histogram cannot be republished from totals): [`Stats`] records each
//! sample once, and its snapshot is rendered after the recorder's output, under the same
//! name ([`WRITE_LATENCY_METRIC`]) the dashboard queries.
//!
//! The recorder is global (the facade has one per process), installed by the first
//! [`install`]. One process runs one pipeline, so one `Stats` is published.

use crate::health::Readiness;
use crate::model::StreamKind;
use crate::telemetry::{
    histogram_header, Stats, ACK_LATENCY_HELP, ACK_LATENCY_METRIC, PUBLISH_TO_ACK_HELP,
    PUBLISH_TO_ACK_METRIC, WRITE_LATENCY_HELP, WRITE_LATENCY_METRIC,
};
use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Per-source counters and gauge: `{source="orders"|"payments"}`.
pub const SOURCE_RECEIVED: &str = "ecom_stream_messages_received_total";
pub const SOURCE_ACKED: &str = "ecom_stream_messages_acked_total";
pub const SOURCE_NACKED: &str = "ecom_stream_messages_nacked_total";
pub const SOURCE_OUTSTANDING: &str = "ecom_stream_subscriber_outstanding_messages";
/// `{source, reason}`: the nacks of [`SOURCE_NACKED`] split by why (`ack::NackReason`).
pub const NACKS_BY_REASON: &str = "ecom_stream_nacks_by_reason_total";
/// `{source, how="after_ack"|"while_held"|"after_nack"}`: messages this process received
/// again, recognised from its recent message ids.
pub const REDELIVERED: &str = "ecom_stream_pubsub_redelivered_total";
/// `{source}`: deliveries whose Pub/Sub `delivery_attempt` was above 1.
pub const DELIVERY_ATTEMPT_ABOVE_ONE: &str = "ecom_stream_pubsub_delivery_attempt_above_one_total";
/// `{source}`: the longest lease the client extends (`--pubsub-max-lease`).
pub const MAX_LEASE: &str = "ecom_stream_pubsub_max_lease_seconds";
/// `{source}`: unanswered messages held longer than half the maximum lease.
pub const OVER_HALF_LEASE: &str = "ecom_stream_pubsub_unanswered_over_half_lease";
/// Orders plus payments upserted.
pub const ROWS_WRITTEN: &str = "ecom_stream_rows_written_total";
pub const PENDING: &str = "ecom_stream_pending_payments";
pub const PENDING_OLDEST_AGE: &str = "ecom_stream_pending_oldest_age_seconds";
/// `{writer="facts"|"dead_letter"}`.
pub const WRITES_IN_FLIGHT: &str = "ecom_stream_writes_in_flight";
/// `{actor="join_shard"|"fact_writer"|"dead_letter"}`.
pub const MAILBOX_DEPTH: &str = "ecom_stream_mailbox_depth";
pub const STORE_UP: &str = "ecom_stream_store_up";
pub const READY: &str = "ecom_stream_ready";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder (once; later calls
/// do nothing) and describes every metric.
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::error!(error = %e, "a metrics recorder is already installed; /metrics is disabled");
            return None;
        }
        describe();
        Some(handle)
    });
}

fn describe() {
    for (info, _) in Stats::default().snapshot().prometheus() {
        describe_counter!(info.name, Unit::Count, info.help);
    }
    describe_counter!(
        SOURCE_RECEIVED,
        Unit::Count,
        "Messages delivered by each source (subscription), redeliveries included"
    );
    describe_counter!(
        SOURCE_ACKED,
        Unit::Count,
        "Messages acked to each source after their effect was durable"
    );
    describe_counter!(
        SOURCE_NACKED,
        Unit::Count,
        "Messages nacked to each source (redelivered later)"
    );
    describe_gauge!(
        SOURCE_OUTSTANDING,
        Unit::Count,
        "Messages delivered by each source and not answered yet"
    );
    describe_counter!(
        NACKS_BY_REASON,
        Unit::Count,
        "Nacks to each source by reason: shutdown, store_failed, write_failed, dead_letter_failed, dropped"
    );
    describe_counter!(
        REDELIVERED,
        Unit::Count,
        "Messages received again: after_ack (the ack was lost), while_held (the lease expired under us), after_nack"
    );
    describe_counter!(
        DELIVERY_ATTEMPT_ABOVE_ONE,
        Unit::Count,
        "Deliveries whose Pub/Sub delivery_attempt was above 1 (subscriptions with a dead-letter policy)"
    );
    describe_gauge!(
        MAX_LEASE,
        Unit::Seconds,
        "How long the client keeps extending an unanswered message's lease"
    );
    describe_gauge!(
        OVER_HALF_LEASE,
        Unit::Count,
        "Unanswered messages held longer than half the maximum lease"
    );
    describe_counter!(
        ROWS_WRITTEN,
        Unit::Count,
        "Rows written by the fact writer (orders plus payments upserted)"
    );
    describe_gauge!(
        PENDING,
        Unit::Count,
        "Payments held now, waiting for their order"
    );
    describe_gauge!(
        PENDING_OLDEST_AGE,
        Unit::Seconds,
        "How long the oldest held payment has waited"
    );
    describe_gauge!(
        WRITES_IN_FLIGHT,
        Unit::Count,
        "Store writes in flight per writer"
    );
    describe_gauge!(
        MAILBOX_DEPTH,
        Unit::Count,
        "Messages sent to each kind of actor and not yet answered"
    );
    describe_gauge!(
        STORE_UP,
        Unit::Count,
        "1 while the last store read and the last store write both succeeded"
    );
    describe_gauge!(READY, Unit::Count, "1 when /readyz answers 200");
}

/// Publishes `stats` and `readiness` onto the recorder and renders the text format.
/// `None` when another recorder owns the facade.
pub fn render(stats: &Stats, readiness: &Readiness) -> Option<String> {
    install();
    let handle = HANDLE.get()?.as_ref()?;
    publish(stats, readiness);
    handle.run_upkeep();
    let mut text = handle.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(
        &stats
            .gauges()
            .write_latency
            .prometheus(WRITE_LATENCY_METRIC, WRITE_LATENCY_HELP),
    );
    text.push_str(&histogram_header(ACK_LATENCY_METRIC, ACK_LATENCY_HELP));
    for topic in [StreamKind::Orders, StreamKind::Payments] {
        stats.lease(topic).snapshot().ack_latency.prometheus_series(
            &mut text,
            ACK_LATENCY_METRIC,
            &format!("source=\"{}\"", topic.as_str()),
        );
    }
    text.push_str(&histogram_header(
        PUBLISH_TO_ACK_METRIC,
        PUBLISH_TO_ACK_HELP,
    ));
    for topic in [StreamKind::Orders, StreamKind::Payments] {
        stats.source(topic).publish_to_ack().prometheus_series(
            &mut text,
            PUBLISH_TO_ACK_METRIC,
            &format!("source=\"{}\"", topic.as_str()),
        );
    }
    Some(text)
}

fn publish(stats: &Stats, readiness: &Readiness) {
    let snapshot = stats.snapshot();
    for (info, value) in snapshot.prometheus() {
        counter!(info.name).absolute(value);
    }
    counter!(ROWS_WRITTEN).absolute(snapshot.orders_upserted + snapshot.payments_upserted);
    for (topic, s) in stats.sources() {
        let source = topic.as_str();
        counter!(SOURCE_RECEIVED, "source" => source).absolute(s.received);
        counter!(SOURCE_ACKED, "source" => source).absolute(s.acked);
        counter!(SOURCE_NACKED, "source" => source).absolute(s.nacked);
        gauge!(SOURCE_OUTSTANDING, "source" => source)
            .set(stats.source(topic).outstanding() as f64);
        for (reason, n) in stats.source(topic).nacked_by_reason() {
            counter!(NACKS_BY_REASON, "source" => source, "reason" => reason.as_str()).absolute(n);
        }
        let lease = stats.lease(topic).snapshot();
        for (how, n) in &lease.redelivered {
            counter!(REDELIVERED, "source" => source, "how" => *how).absolute(*n);
        }
        counter!(DELIVERY_ATTEMPT_ABOVE_ONE, "source" => source)
            .absolute(lease.delivery_attempt_above_one);
        gauge!(MAX_LEASE, "source" => source).set(lease.max_lease_seconds as f64);
        gauge!(OVER_HALF_LEASE, "source" => source).set(lease.unanswered_over_half_lease as f64);
    }
    let g = stats.gauges();
    gauge!(PENDING).set(g.pending_payments as f64);
    gauge!(PENDING_OLDEST_AGE).set(g.pending_oldest_age_seconds);
    for (writer, n) in g.in_flight {
        gauge!(WRITES_IN_FLIGHT, "writer" => writer).set(n as f64);
    }
    for (actor, n) in g.mailbox {
        gauge!(MAILBOX_DEPTH, "actor" => actor).set(n as f64);
    }
    gauge!(STORE_UP).set(if g.store_up { 1.0 } else { 0.0 });
    gauge!(READY).set(if readiness.check(stats).is_ok() {
        1.0
    } else {
        0.0
    });
}
