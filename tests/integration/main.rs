//! All integration tests compile as one binary (one link, shared helpers).
mod app;
mod cassandra_cli;
mod cassandra_dlq;
mod cassandra_node;
mod cassandra_pubsub;
mod cli;
mod compose;
mod config;
mod config_table;
mod crash;
mod emulator;
mod ops;
mod pipeline;
mod pubsub;
mod start_checks;
mod store_contract;
mod support;
