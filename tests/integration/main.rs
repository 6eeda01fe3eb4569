//! All integration tests compile as one binary (one link, shared helpers).
mod store_contract;
