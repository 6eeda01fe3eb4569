//! `ecom-stream produce orders|payments`: mock data like the original Python producers,
//! published to `orders_data` / `payments_data` (design §2, §5).
//!
//! Owns: which records a run publishes (reproducible by seed: the record for an id depends
//! only on the seed, the id and the pass, never on the order of publishing) and the
//! publishing loop (rate limit, bounded confirmations in flight, progress). Must never:
//! report a message as published before Pub/Sub confirmed it.
//!
//! With `--ids A..=B` and `--count N` (default: one per id), message `i` is for the `i % len`th
//! id of a seeded permutation of the range, in pass `i / len`. A payment's id is
//! `1,000,000 + order_id` in the first pass (as in `demo`), plus `PASS_STRIDE` per further
//! pass, so republishing with the same seed repeats the same payments.

use super::connect::{self, Batching, ClientError, ConnectError};
use super::PubSubConfig;
use crate::generator::MockData;
use crate::model::PAYMENT_ID_OFFSET;
use crate::model::{Order, Payment, StreamKind};
use crate::rng::SplitMix64;
use futures_util::stream::{FuturesUnordered, StreamExt};
use google_cloud_pubsub::model::Message;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Added to a payment id per pass over the id range beyond the first.
pub const PASS_STRIDE: i64 = 1_000_000_000_000;
/// The largest id a range may hold, so that payment ids stay clear of the next pass.
pub const MAX_ID: i64 = PASS_STRIDE - PAYMENT_ID_OFFSET - 1;
/// Confirmations awaited at once: bounds the producer's memory at full speed.
const MAX_IN_FLIGHT: usize = 20_000;

/// An inclusive range of ids, written `A..=B` (or `A..B`, exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub first: i64,
    pub last: i64,
}

impl IdRange {
    pub fn len(&self) -> u64 {
        (self.last - self.first + 1) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::str::FromStr for IdRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a range of ids (examples: 1..=80, 1..81)");
        let (first, last) = if let Some((a, b)) = s.split_once("..=") {
            (a, b.parse::<i64>().map_err(|_| bad())?)
        } else if let Some((a, b)) = s.split_once("..") {
            let end = b.parse::<i64>().map_err(|_| bad())?;
            (a, end.checked_sub(1).ok_or_else(bad)?)
        } else {
            return Err(bad());
        };
        let first: i64 = first.parse().map_err(|_| bad())?;
        if first < 1 || last < first || last > MAX_ID {
            return Err(format!(
                "{s:?} must be a non-empty range of ids between 1 and {MAX_ID}"
            ));
        }
        Ok(IdRange { first, last })
    }
}

/// What one `produce` run publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceOptions {
    pub topic: StreamKind,
    pub ids: IdRange,
    /// Messages in all; default one per id.
    pub count: Option<u64>,
    /// Messages per second; default as fast as Pub/Sub confirms.
    pub rate: Option<f64>,
    pub seed: u64,
}

/// Passes over the id range a run may make before payment ids would overflow.
pub const MAX_PASSES: u64 = ((i64::MAX - PAYMENT_ID_OFFSET - MAX_ID) / PASS_STRIDE) as u64;

impl ProduceOptions {
    pub fn total(&self) -> u64 {
        self.count.unwrap_or_else(|| self.ids.len())
    }

    /// Bounds that keep every generated id and every due time representable.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        if self.count == Some(0) {
            return Err(ConfigError {
                setting: "--count",
                problem: "must be at least 1".into(),
            });
        }
        if self.total().div_ceil(self.ids.len()) > MAX_PASSES {
            return Err(ConfigError {
                setting: "--count",
                problem: format!(
                    "more than {MAX_PASSES} passes over --ids would overflow payment ids; widen --ids"
                ),
            });
        }
        if self
            .rate
            .is_some_and(|r| !(r.is_finite() && (0.001..=1e9).contains(&r)))
        {
            return Err(ConfigError {
                setting: "--rate",
                problem: "must be between 0.001 and 1e9 messages per second".into(),
            });
        }
        Ok(())
    }
}

/// A seeded permutation of `0..len` without storing it: `i ↦ (a·i + b) mod len` with `a`
/// coprime to `len` visits every index exactly once.
#[derive(Debug, Clone, Copy)]
struct Permutation {
    len: u64,
    a: u64,
    b: u64,
}

impl Permutation {
    fn new(len: u64, rng: &mut SplitMix64) -> Self {
        fn gcd(mut x: u64, mut y: u64) -> u64 {
            while y != 0 {
                (x, y) = (y, x % y);
            }
            x
        }
        let mut a = 1 + rng.below(len.max(1));
        while gcd(a, len) != 1 {
            a = 1 + rng.below(len);
        }
        Permutation {
            len,
            a,
            b: rng.below(len.max(1)),
        }
    }

    fn at(&self, i: u64) -> u64 {
        ((u128::from(self.a) * u128::from(i) + u128::from(self.b)) % u128::from(self.len)) as u64
    }
}

/// The records of a run, in publishing order.
pub fn records(opts: &ProduceOptions) -> impl Iterator<Item = Record> + '_ {
    let len = opts.ids.len();
    let mut rng = SplitMix64::new(opts.seed ^ 0x5052_4f44_5543_4552);
    let perm = Permutation::new(len, &mut rng);
    (0..opts.total()).map(move |i| {
        let pass = (i / len) as i64;
        let id = opts.ids.first + perm.at(i % len) as i64;
        match opts.topic {
            StreamKind::Orders => Record::Order(order(opts.seed, id, pass)),
            StreamKind::Payments => Record::Payment(payment(opts.seed, id, pass)),
        }
    })
}

/// One generated record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Order(Order),
    Payment(Payment),
}

/// The order a run with `seed` publishes for `order_id` in `pass`.
pub fn order(seed: u64, order_id: i64, pass: i64) -> Order {
    MockData::new(record_seed(seed, StreamKind::Orders, order_id, pass)).order(order_id)
}

/// The payment a run with `seed` publishes for `order_id` in `pass`.
pub fn payment(seed: u64, order_id: i64, pass: i64) -> Payment {
    let payment_id = PAYMENT_ID_OFFSET + order_id + pass * PASS_STRIDE;
    MockData::new(record_seed(seed, StreamKind::Payments, order_id, pass))
        .payment(payment_id, order_id)
}

fn record_seed(seed: u64, topic: StreamKind, id: i64, pass: i64) -> u64 {
    let mut r = SplitMix64::new(
        seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (pass as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ topic as u64,
    );
    r.next_u64()
}

/// What a run published.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProduceReport {
    pub published: u64,
    pub elapsed_s: f64,
    pub per_second: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("publishing to {topic} failed after {published} confirmed messages{hint}")]
    Publish {
        topic: String,
        published: u64,
        /// What to do about it, when known (a missing topic: run `setup`).
        hint: &'static str,
        #[source]
        source: ClientError,
    },
}

impl ProduceError {
    /// Whether producing again may succeed; the confirmed messages are published either way.
    pub fn is_retriable(&self) -> bool {
        match self {
            ProduceError::Connect(_) => false,
            ProduceError::Publish { source, .. } => source.is_retriable(),
        }
    }
}

/// Publishes the run's records and waits for every confirmation. `progress` draws a bar
/// with the achieved rate on stderr (hidden when stderr is not a terminal).
pub async fn produce(
    config: &PubSubConfig,
    opts: &ProduceOptions,
    progress: bool,
) -> Result<ProduceReport, ProduceError> {
    let topic = config.topic_of(opts.topic).to_string();
    let publisher = connect::publisher(config, &topic, Batching::for_load()).await?;
    let total = opts.total();
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {per_sec} (eta {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("{} → {topic}", opts.topic));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut published = 0u64;
    let fail = |published: u64, e: google_cloud_pubsub::error::PublishError| {
        let source = ClientError::publish(e);
        let not_found = source.code() == Some(google_cloud_gax::error::rpc::Code::NotFound)
            || source.to_string().contains("NOT_FOUND");
        let hint = if not_found {
            " (has `ecom-stream setup` been run for this project?)"
        } else {
            ""
        };
        ProduceError::Publish {
            topic: topic.clone(),
            published,
            hint,
            source,
        }
    };
    for (i, record) in records(opts).enumerate() {
        if let Some(rate) = opts.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        // Serializing a struct of strings and numbers cannot fail.
        let data = serde_json::to_vec(&record).unwrap_or_default();
        in_flight.push(publisher.publish(Message::new().set_data(data)));
        while in_flight.len() >= MAX_IN_FLIGHT {
            match in_flight.next().await {
                Some(Ok(_)) => {
                    published += 1;
                    bar.inc(1);
                }
                Some(Err(e)) => return Err(fail(published, e)),
                None => break,
            }
        }
        // Collect confirmations that are already in, so the bar moves at low rates too.
        while let Some(Some(done)) = futures_util::FutureExt::now_or_never(in_flight.next()) {
            match done {
                Ok(_) => {
                    published += 1;
                    bar.inc(1);
                }
                Err(e) => return Err(fail(published, e)),
            }
        }
    }
    while let Some(done) = in_flight.next().await {
        match done {
            Ok(_) => {
                published += 1;
                bar.inc(1);
            }
            Err(e) => return Err(fail(published, e)),
        }
    }
    bar.finish_and_clear();
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(ProduceReport {
        published,
        elapsed_s,
        per_second: published as f64 / elapsed_s.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ranges_parse_and_bad_ones_say_why() {
        assert_eq!("1..=80".parse(), Ok(IdRange { first: 1, last: 80 }));
        assert_eq!("1..81".parse(), Ok(IdRange { first: 1, last: 80 }));
        assert!("80".parse::<IdRange>().is_err());
        assert!("0..=5".parse::<IdRange>().is_err());
        assert!("5..=1".parse::<IdRange>().is_err());
        assert!("a..=b".parse::<IdRange>().is_err());
        assert!("1..-9223372036854775808".parse::<IdRange>().is_err());
    }

    #[test]
    fn one_pass_covers_every_id_once_and_repeats_by_seed() {
        let opts = ProduceOptions {
            topic: StreamKind::Payments,
            ids: IdRange {
                first: 1,
                last: 500,
            },
            count: None,
            rate: None,
            seed: 7,
        };
        let ids: Vec<i64> = records(&opts)
            .map(|r| match r {
                Record::Payment(p) => p.order_id,
                Record::Order(o) => o.order_id,
            })
            .collect();
        assert_eq!(ids.len(), 500);
        assert_eq!(ids.iter().copied().collect::<HashSet<_>>().len(), 500);
        assert_ne!(ids[..10], (1..=10).collect::<Vec<_>>()[..], "shuffled");
        assert!(records(&opts).eq(records(&opts)));
        // A record depends on its id, not on where it falls.
        let p = payment(7, 42, 0);
        assert!(records(&opts).any(|r| r == Record::Payment(p.clone())));
        assert_eq!(p.payment_id, PAYMENT_ID_OFFSET + 42);
    }

    #[test]
    fn counts_and_rates_that_would_overflow_are_refused() {
        let mut opts = ProduceOptions {
            topic: StreamKind::Payments,
            ids: IdRange { first: 1, last: 1 },
            count: Some(MAX_PASSES + 1),
            rate: None,
            seed: 1,
        };
        assert_eq!(opts.validate().map_err(|e| e.setting), Err("--count"));
        opts.count = Some(MAX_PASSES);
        assert_eq!(opts.validate(), Ok(()));
        opts.rate = Some(1e-20);
        assert_eq!(opts.validate().map_err(|e| e.setting), Err("--rate"));
    }

    #[test]
    fn further_passes_make_new_payment_ids() {
        let opts = ProduceOptions {
            topic: StreamKind::Payments,
            ids: IdRange { first: 1, last: 3 },
            count: Some(7),
            rate: None,
            seed: 1,
        };
        let ids: HashSet<i64> = records(&opts)
            .map(|r| match r {
                Record::Payment(p) => p.payment_id,
                Record::Order(o) => o.order_id,
            })
            .collect();
        assert_eq!(ids.len(), 7);
    }
}
