//! ecom-stream: an actor-based stream processor that joins e-commerce orders and payments
//! into one denormalized row per order (see `ARCHITECTURE.md` and the product contract, `docs/design.md`).
//!
//! # Layout
//!
//! One message's path, and the module that owns each step:
//!
//! - [`source`]: where messages come from. An [`source::Envelope`] carries the raw bytes and
//!   the [`ack::AckHandle`] that answers the source once the effect is durable.
//!   [`source::in_process`] is the built-in source (demo, tests, benches);
//!   [`pubsub::subscriber`] holds the `OrderSubscriber` / `PaymentSubscriber` actors that
//!   read Google Cloud Pub/Sub.
//! - [`join::router`]: the intake. Decodes and validates ([`model`]), sends the invalid to the
//!   DLQ and routes the rest to `JoinShard[hash(order_id) % N]`.
//! - [`join::shard`]: the `JoinShard` actor; [`join::state`] its decisions, with
//!   [`join::pending`] (early payments) and [`join::dedup`] (duplicates).
//! - [`writer`]: the `FactWriter` actor. Batches rows, bounds writes in flight, retries, and
//!   acks each message only after its row is durable.
//! - [`dlq`]: the `DeadLetter` actor (unmatched payments, invalid messages) and
//!   [`dlq::replay`]; [`pubsub::dlq_topic`] publishes dead letters to the DLQ topic.
//! - [`store`]: the storage seam and its implementations (embedded SQLite, in-memory, and
//!   [`store::cassandra`] for Cassandra/ScyllaDB).
//! - [`pipeline`]: starts the actors on their threads and drains them in order at shutdown.
//! - [`run`] (the production pipeline), [`demo`], [`pubsub::admin`] (`setup`),
//!   [`pubsub::producer`] (`produce`), [`cli`]: the commands. [`config`], [`config_file`]
//!   (the TOML layer), [`telemetry`], [`shutdown`], [`rng`]: support.
//! - [`ops`]: the operations listener (Prometheus `/metrics`, `/healthz`, `/readyz`, the
//!   status page), reading [`telemetry::Stats`] and [`health::Readiness`].

pub mod ack;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod demo;
pub mod dlq;
pub mod health;
pub mod join;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod pubsub;
pub mod rng;
pub mod run;
pub mod shutdown;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod writer;
