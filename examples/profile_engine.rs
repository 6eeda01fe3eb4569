//! Pushes a fixed message set through the engine once, exactly as `benches/engine.rs` does:
//! the target `scripts/profile-engine` runs under callgrind, where a fixed amount of work
//! makes instruction counts comparable between runs and between changes.
//!
//! Usage: `cargo run --release --example profile_engine -- [orders] [shards]`
//! (defaults: 20,000 orders, so 40,000 messages; 2 shards).

#[path = "../benches/support/mod.rs"]
mod support;

fn main() {
    let mut args = std::env::args().skip(1);
    let orders: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let shards: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let msgs = support::messages(orders);
    let n = msgs.len();
    let elapsed = support::run_pipeline(msgs, shards);
    println!("{n} messages, {shards} shards: {elapsed:?}");
}
