//! Two `dlq replay` runs on the same store at once (design §4.9): each resolved entry is
//! counted by exactly one of them, and the DLQ ends empty.
//!
//! Owns: the replay race, in-process on the real embedded store (two connections, as two
//! processes would have) and as two real `dlq replay --every` processes. Must never: lean on
//! timing to make the runs overlap (the in-process test holds both at a barrier instead).

use crate::cli::{command, data_dir, int, Running};
use async_trait::async_trait;
use ecom_stream::dlq::replay::{replay_once, ReplayReport};
use ecom_stream::model::{Order, Payment};
use ecom_stream::store::embedded::{EmbeddedOptions, EmbeddedStore};
use ecom_stream::store::{
    DeadLetterStore, DlqEntry, FactSink, FactWrite, InvalidMessage, OrderLookup, Page,
    ReplayedEntry, StoreError,
};
use ecom_stream::telemetry::Stats;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

/// More than two of replay's pages (1000 entries each), so the race spans page turns.
const ENTRIES: i64 = 2_500;

/// Payment `10_000 + id` of order `id`, for orders `1..=ENTRIES`.
fn payment(order_id: i64) -> Payment {
    Payment {
        payment_id: 10_000 + order_id,
        order_id,
        payment_method: "card".into(),
        card_last_four: "4242".into(),
        payment_status: "Completed".into(),
        payment_datetime: "2024-01-01T00:00:00Z".into(),
    }
}

/// A store whose every order exists and whose DLQ holds one payment for each: a replay
/// pass must resolve all of them.
async fn fill(dir: &Path) {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open");
    let orders: Vec<FactWrite> = (1..=ENTRIES)
        .map(|id| FactWrite::Order {
            order: Order {
                order_id: id,
                customer_id: id,
                item: "book".into(),
                quantity: 1,
                price: 9.5,
                shipping_address: "1 Main St".into(),
                order_status: "Shipped".into(),
                creation_date: "2024-01-01T00:00:00Z".into(),
            },
            ts: 1,
        })
        .collect();
    store.write_facts(&orders).await.expect("orders");
    let dead: Vec<DlqEntry> = (1..=ENTRIES)
        .map(|id| DlqEntry {
            payment: payment(id),
            reason: "order_not_found".into(),
            first_seen: 1,
            attempts: 0,
            event_ts: 2,
        })
        .collect();
    store.put_dead_letters(&dead).await.expect("dead letters");
}

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open")
}

/// An embedded store whose DLQ deletes wait at a barrier shared with another replay: both
/// passes have read and written the same page before either deletes it, which is the race
/// two `dlq replay` processes run into.
struct Racing {
    inner: EmbeddedStore,
    barrier: Arc<Barrier>,
}

#[async_trait]
impl FactSink for Racing {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
        self.inner.write_facts(writes).await
    }
}

#[async_trait]
impl OrderLookup for Racing {
    async fn known_orders(&self, ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
        self.inner.known_orders(ids).await
    }
}

#[async_trait]
impl DeadLetterStore for Racing {
    async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError> {
        self.inner.put_dead_letters(entries).await
    }
    async fn scan_dead_letters(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<DlqEntry, i64>, StoreError> {
        self.inner.scan_dead_letters(after, limit).await
    }
    async fn delete_dead_letters(
        &self,
        resolved: &[ReplayedEntry],
    ) -> Result<Vec<i64>, StoreError> {
        // Both passes scan the same pages in the same order, so they meet here once per
        // page. The timeout only turns a broken assumption into a failure below, not a hang.
        let met = tokio::time::timeout(Duration::from_secs(30), self.barrier.wait()).await;
        assert!(met.is_ok(), "the other replay never reached its delete");
        self.inner.delete_dead_letters(resolved).await
    }
    async fn bump_dead_letter_attempts(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.inner.bump_dead_letter_attempts(ids).await
    }
    async fn put_invalid(&self, entries: &[InvalidMessage]) -> Result<(), StoreError> {
        self.inner.put_invalid(entries).await
    }
    async fn scan_invalid(
        &self,
        after: Option<(ecom_stream::model::StreamKind, String)>,
        limit: usize,
    ) -> Result<Page<InvalidMessage, (ecom_stream::model::StreamKind, String)>, StoreError> {
        self.inner.scan_invalid(after, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replays_racing_on_the_same_entries_count_each_entry_once() {
    let dir = data_dir();
    fill(dir.path()).await;
    let barrier = Arc::new(Barrier::new(2));
    let a = Racing {
        inner: open(dir.path()),
        barrier: barrier.clone(),
    };
    let b = Racing {
        inner: open(dir.path()),
        barrier,
    };
    let (stats_a, stats_b) = (Stats::default(), Stats::default());
    let (ra, rb) = tokio::join!(replay_once(&a, &stats_a), replay_once(&b, &stats_b));
    let (ra, rb): (ReplayReport, ReplayReport) = (ra.expect("replay a"), rb.expect("replay b"));
    // Both saw every entry with its order...
    assert_eq!((ra.scanned, rb.scanned), (ENTRIES as u64, ENTRIES as u64));
    // ...and between them resolved each exactly once.
    assert_eq!(
        ra.replayed + rb.replayed,
        ENTRIES as u64,
        "a: {ra:?}, b: {rb:?}"
    );
    assert_eq!(
        stats_a.snapshot().replayed + stats_b.snapshot().replayed,
        ENTRIES as u64
    );
    let store = open(dir.path());
    let left = store.scan_dead_letters(None, 10).await.expect("scan");
    assert!(left.items.is_empty(), "{:?}", left.items);
    for id in 1..=ENTRIES {
        let row = ecom_stream::store::FactReader::fact(&store, id)
            .await
            .expect("fact")
            .unwrap_or_else(|| panic!("no row for order {id}"));
        assert_eq!(row.payment_id, Some(10_000 + id), "{row:?}");
    }
}

/// As a user runs it: two `dlq replay --every` processes on one data dir. Whether their
/// passes overlap is up to the scheduler; whatever it does, the replayed counts they print
/// must add up to the entries there were.
#[test]
fn two_replay_every_processes_report_each_entry_once() {
    let dir = data_dir();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(fill(dir.path()));
    let spawn = || {
        Running::spawn(command(
            dir.path(),
            &["--log", "warn", "dlq", "replay", "--every", "50ms"],
        ))
    };
    let mut replays = [spawn(), spawn()];
    // Done when the DLQ is empty and each process has printed a pass that found it so
    // (scanned 0): no pass of either can still be deleting.
    let finished = |out: &str| {
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|pass| int(&pass, "scanned") == 0)
    };
    loop {
        let done = replays.iter().all(|r| finished(&r.stdout_so_far()));
        if done {
            break;
        }
        for r in &mut replays {
            assert!(
                r.try_wait().is_none(),
                "replay --every ended by itself: {}",
                r.output_so_far()
            );
            r.check_not_hung("a pass that finds the DLQ empty");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut total = 0;
    for mut r in replays {
        r.signal("INT");
        let done = r.wait().ok();
        total += done
            .json_lines()
            .iter()
            .map(|pass| int(pass, "replayed"))
            .sum::<i64>();
    }
    assert_eq!(total, ENTRIES);
    let left = runtime.block_on(async {
        open(dir.path())
            .scan_dead_letters(None, 10)
            .await
            .expect("scan")
    });
    assert!(left.items.is_empty(), "{:?}", left.items);
}
