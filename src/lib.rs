//! ecom-stream: an actor-based stream processor that joins e-commerce orders and payments
//! into one denormalized row per order (see `ARCHITECTURE.md` and the product contract,
//! `docs/design.md`).
//!
//! # Layout
//!
//! Layers from the top down; a module imports only modules on its own layer or below.
//!
//! - [`cli`]: parses the command line and prints results; nothing else. Its
//!   [`cli::settings`] is the table of settings and their layering.
//! - [`app`]: the wiring. [`app::pipeline`] starts the actors and drains them in order,
//!   [`app::run`] is the production pipeline, [`app::demo`] the self-contained one.
//! - [`ops`]: the operations listener (Prometheus `/metrics`, `/healthz`, `/readyz`, the
//!   status page), reading [`telemetry::Stats`] and [`health::Readiness`].
//! - [`source`]: where messages come from. [`source::Envelope`] carries raw bytes and the
//!   [`ack::AckHandle`] that answers the source once the effect is durable;
//!   [`source::intake`] decodes, rejects the invalid and hands events to their shards;
//!   [`source::in_process`] is the built-in source (demo, tests, benches);
//!   [`source::file`] reads `ingest`'s files into in-process messages;
//!   [`source::pubsub`] holds the `OrderSubscriber` / `PaymentSubscriber` actors.
//! - [`join`]: the `JoinShard` actor ([`join::shard`]), its decisions ([`join::state`]),
//!   early payments ([`join::pending`]), duplicates ([`join::dedup`]) and the shard
//!   function ([`join::router`]).
//! - [`writer`]: the `FactWriter` actor. Batches rows, bounds writes in flight, retries
//!   (with [`retry`]), and acks each message only after its row is durable; holds rows
//!   through a store outage behind the intake's gate ([`writer::gate`]) and dead-letters
//!   rows that fail on their own as `write_failed`.
//! - [`dlq`]: the `DeadLetter` actor (unmatched payments, invalid messages), [`dlq::topic`]
//!   (the DLQ topic on Pub/Sub) and [`dlq::replay`].
//! - [`pubsub`]: Pub/Sub client plumbing ([`pubsub::connect`]), `setup`
//!   ([`pubsub::admin`]), the subscription-to-store binding ([`pubsub::binding`]) and
//!   `produce` ([`pubsub::producer`]).
//! - [`store`]: the storage seam and its implementations (embedded SQLite, in-memory, and
//!   [`store::cassandra`] for Cassandra/ScyllaDB).
//! - Ground floor: [`model`] (the wire format), [`generator`] (mock data), [`config`] (the
//!   engine's settings), [`telemetry`] (counters, gauges, lease and ack health), [`health`] (readiness),
//!   [`ack`], [`retry`], [`shutdown`], [`clock`], [`rng`].

pub mod ack;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dlq;
pub mod generator;
pub mod health;
pub mod join;
pub mod model;
pub mod ops;
pub mod pubsub;
pub mod retry;
pub mod rng;
pub mod shutdown;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod writer;
