//! Routing: which `JoinShard` owns an `order_id`.
//!
//! Owns: the shard function, the one rule that keeps every event of an order on one shard
//! (and so in arrival order). Must never: depend on anything but the id and the shard count.

/// The shard that owns `order_id` among `shards`. The id is mixed first (Fibonacci hashing)
/// so that sequential ids, the common case, spread evenly.
pub fn shard_of(order_id: i64, shards: usize) -> usize {
    let mixed = (order_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    #[test]
    fn sequential_ids_spread_over_shards() {
        let mut counts = [0usize; 4];
        for id in 1..=10_000 {
            counts[shard_of(id, 4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (2_000..3_000).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(shard_of(42, 1), 0);
        assert_eq!(shard_of(-5, 3), shard_of(-5, 3));
    }
}
