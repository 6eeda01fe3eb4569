//! All integration tests compile as one binary (one link, shared helpers).
mod cli;
mod crash;
mod ops;
mod pipeline;
mod store_contract;
mod support;
