//! All integration tests compile as one binary (one link, shared helpers).
mod cli;
mod crash;
mod emulator;
mod ops;
mod pipeline;
mod pubsub;
mod store_contract;
mod support;
