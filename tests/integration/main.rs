//! All integration tests compile as one binary (one link, shared helpers).
mod cassandra_cli;
mod cli;
mod compose;
mod crash;
mod pipeline;
mod store_contract;
mod support;
