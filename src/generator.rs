//! Mock orders and payments like the original Python producers made, reproducible by seed.
//!
//! Owns: the content of generated messages. Must never: depend on the clock or on anything
//! but its seed, so that `--seed` reruns (and the crash-and-rerun test) produce the same
//! messages.

use crate::model::{Order, Payment};
use crate::rng::SplitMix64;

const ITEMS: &[&str] = &[
    "Laptop",
    "Phone",
    "Headphones",
    "Monitor",
    "Keyboard",
    "Mouse",
    "Tablet",
    "Camera",
    "Speaker",
    "Charger",
];
const ORDER_STATUSES: &[&str] = &["Pending", "Processing", "Shipped", "Delivered"];
const PAYMENT_METHODS: &[&str] = &["Credit Card", "Debit Card", "PayPal", "Bank Transfer"];
const PAYMENT_STATUSES: &[&str] = &["Completed", "Pending", "Failed"];
const STREETS: &[&str] = &[
    "Main St", "Oak Ave", "Pine Rd", "Maple Dr", "Cedar Ln", "Elm St",
];
const CITIES: &[&str] = &[
    "Springfield",
    "Riverton",
    "Lakeside",
    "Fairview",
    "Greenville",
];
/// Days in each month of 2024 (a leap year), the year the generated dates fall in.
const MONTH_DAYS: [u64; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// A seeded source of mock records.
#[derive(Debug, Clone)]
pub struct MockData {
    rng: SplitMix64,
}

impl MockData {
    pub fn new(seed: u64) -> Self {
        MockData {
            rng: SplitMix64::new(seed),
        }
    }

    pub fn rng(&mut self) -> &mut SplitMix64 {
        &mut self.rng
    }

    pub fn order(&mut self, order_id: i64) -> Order {
        let r = &mut self.rng;
        let cents = 500 + r.below(200_000) as i64;
        Order {
            order_id,
            customer_id: 1 + r.below(10_000) as i64,
            item: r.pick(ITEMS).to_string().into(),
            quantity: 1 + r.below(5) as i64,
            price: cents as f64 / 100.0,
            shipping_address: format!(
                "{} {}, {}",
                1 + r.below(999),
                r.pick(STREETS),
                r.pick(CITIES)
            )
            .into(),
            order_status: r.pick(ORDER_STATUSES).to_string().into(),
            creation_date: self.datetime().into(),
        }
    }

    pub fn payment(&mut self, payment_id: i64, order_id: i64) -> Payment {
        let r = &mut self.rng;
        Payment {
            payment_id,
            order_id,
            payment_method: r.pick(PAYMENT_METHODS).to_string().into(),
            card_last_four: format!("{:04}", r.below(10_000)).into(),
            payment_status: r.pick(PAYMENT_STATUSES).to_string().into(),
            payment_datetime: self.datetime().into(),
        }
    }

    /// A date-time in 2024, formatted as the producers send it: `2024-05-01 13:45:10`.
    fn datetime(&mut self) -> String {
        let r = &mut self.rng;
        let mut day = r.below(366);
        let mut month = 0;
        while day >= MONTH_DAYS[month] {
            day -= MONTH_DAYS[month];
            month += 1;
        }
        let secs = r.below(86_400);
        format!(
            "2024-{:02}-{:02} {:02}:{:02}:{:02}",
            month + 1,
            day + 1,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_records_and_valid_dates() {
        let (mut a, mut b) = (MockData::new(3), MockData::new(3));
        for id in 1..200 {
            let o = a.order(id);
            assert_eq!(o, b.order(id));
            assert!(o.price >= 5.0 && o.quantity >= 1);
            assert_eq!(a.payment(id, id), b.payment(id, id));
            let d = &o.creation_date;
            assert_eq!(d.len(), 19, "{d}");
            let month: u32 = d[5..7].parse().expect("month");
            let day: u32 = d[8..10].parse().expect("day");
            assert!((1..=12).contains(&month) && (1..=31).contains(&day), "{d}");
        }
    }
}
