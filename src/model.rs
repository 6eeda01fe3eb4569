//! The wire format of design §2: orders and payments as the Python producers send them,
//! and the validation that turns any other payload into a typed [`InvalidPayload`].
//!
//! Owns: decoding bytes into [`Event`]s. Must never: panic on input, or accept a value the
//! design calls impossible (negative quantity or price, non-positive id, non-finite price).

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};

/// Payment ids are the order id they pay for plus this, so they never collide with orders.
pub const PAYMENT_ID_OFFSET: i64 = 1_000_000;

/// Which of the two input streams a message belongs to (the orders or the payments topic):
/// decides how it is decoded. Also the `source` column of `invalid_messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Orders,
    Payments,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Orders => "orders",
            StreamKind::Payments => "payments",
        }
    }
}

impl std::str::FromStr for StreamKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "orders" => Ok(StreamKind::Orders),
            "payments" => Ok(StreamKind::Payments),
            other => Err(format!(
                "unknown source {other:?} (expected orders or payments)"
            )),
        }
    }
}

impl std::fmt::Display for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text field of an order or a payment: UTF-8, shared, cheap to clone. A decoded
/// message's fields are slices of the payload it came in ([`decode`]), so decoding copies
/// no text and a row handed to a store's blocking call is cloned by reference counts, not
/// by copying its strings (four allocations per message each, before: issue 21).
///
/// Its bytes are UTF-8 by construction: it is made only from a `String`, a `&str`, or a
/// `&str` inside a payload.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(Bytes);

impl Text {
    /// The part of `payload` that `s` borrows from it, shared, or `s` copied when it was
    /// unescaped into a string of its own.
    fn within(payload: &Bytes, s: Cow<'_, str>) -> Text {
        match s {
            Cow::Borrowed(b) if !b.is_empty() => Text(payload.slice_ref(b.as_bytes())),
            other => Text::from(other.into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        // Never fails: the bytes are UTF-8 by construction (see the type's doc).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// A copy that owns its bytes. A decoded text is a slice of its payload, which for
    /// Pub/Sub is a slice of the client's receive buffer, holding other messages too:
    /// whatever is kept for long (a held payment, a row held through a store outage) keeps
    /// a copy instead, so that it does not keep that whole buffer alive.
    pub fn detached(&self) -> Text {
        Text(Bytes::copy_from_slice(&self.0))
    }

    /// The UTF-8 bytes, without the check [`as_str`](Self::as_str) makes: what hashing and
    /// binding to a store need.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Hashed exactly as the `str` it holds (its bytes, then 0xff), so that a content hash does
/// not depend on how the text is stored, without re-checking the UTF-8 per hash.
impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

/// An order as published on `orders_data`. Unknown JSON fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: i64,
    pub customer_id: i64,
    pub item: Text,
    pub quantity: i64,
    pub price: f64,
    pub shipping_address: Text,
    pub order_status: Text,
    pub creation_date: Text,
}

/// A payment as published on `payments_data`. Unknown JSON fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: i64,
    pub order_id: i64,
    pub payment_method: Text,
    pub card_last_four: Text,
    pub payment_status: Text,
    pub payment_datetime: Text,
}

impl Order {
    /// Makes every text field own its bytes (see [`Text::detached`]).
    pub fn detach(&mut self) {
        for text in [
            &mut self.item,
            &mut self.shipping_address,
            &mut self.order_status,
            &mut self.creation_date,
        ] {
            *text = text.detached();
        }
    }
}

impl Payment {
    /// Makes every text field own its bytes (see [`Text::detached`]).
    pub fn detach(&mut self) {
        for text in [
            &mut self.payment_method,
            &mut self.card_last_four,
            &mut self.payment_status,
            &mut self.payment_datetime,
        ] {
            *text = text.detached();
        }
    }
}

/// An order on the wire, its text borrowed from the payload where it has no escapes.
#[derive(Deserialize)]
struct WireOrder<'a> {
    order_id: i64,
    customer_id: i64,
    #[serde(borrow)]
    item: Cow<'a, str>,
    quantity: i64,
    price: f64,
    #[serde(borrow)]
    shipping_address: Cow<'a, str>,
    #[serde(borrow)]
    order_status: Cow<'a, str>,
    #[serde(borrow)]
    creation_date: Cow<'a, str>,
}

/// A payment on the wire (see [`WireOrder`]).
#[derive(Deserialize)]
struct WirePayment<'a> {
    payment_id: i64,
    order_id: i64,
    #[serde(borrow)]
    payment_method: Cow<'a, str>,
    #[serde(borrow)]
    card_last_four: Cow<'a, str>,
    #[serde(borrow)]
    payment_status: Cow<'a, str>,
    #[serde(borrow)]
    payment_datetime: Cow<'a, str>,
}

/// A decoded, valid message.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Order(Order),
    Payment(Payment),
}

impl Event {
    /// The join key: every event is routed and ordered by it.
    pub fn order_id(&self) -> i64 {
        match self {
            Event::Order(o) => o.order_id,
            Event::Payment(p) => p.order_id,
        }
    }

    /// A hash of the whole content, used by the dedup window to tell an exact duplicate
    /// (same content, any delivery) from an update (same id, new content).
    pub fn content_hash(&self) -> u64 {
        // FxHasher, not SipHash: no key, since nothing here needs protection from chosen
        // collisions (a collision between two versions of one id is as unlikely either
        // way), and SipHash cost a fifth of the join's own work (docs/profile.md).
        let mut h = rustc_hash::FxHasher::default();
        match self {
            Event::Order(o) => {
                0u8.hash(&mut h);
                o.order_id.hash(&mut h);
                o.customer_id.hash(&mut h);
                o.item.hash(&mut h);
                o.quantity.hash(&mut h);
                o.price.to_bits().hash(&mut h);
                o.shipping_address.hash(&mut h);
                o.order_status.hash(&mut h);
                o.creation_date.hash(&mut h);
            }
            Event::Payment(p) => {
                1u8.hash(&mut h);
                p.hash(&mut h);
            }
        }
        h.finish()
    }
}

/// Why a payload was rejected. The text goes to the `error` column and DLQ attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPayload(pub String);

/// Longest `error` text kept: it travels as a Pub/Sub attribute, which must stay short.
const MAX_ERROR_LEN: usize = 200;

impl InvalidPayload {
    fn new(msg: impl Into<String>) -> Self {
        let mut msg: String = msg.into();
        if msg.len() > MAX_ERROR_LEN {
            let mut cut = MAX_ERROR_LEN;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        InvalidPayload(msg)
    }
}

/// Decodes and validates one message of `topic`. The event's text fields are slices of
/// `data` (see [`Text`]): nothing is copied but what JSON escapes changed.
pub fn decode(topic: StreamKind, data: &Bytes) -> Result<Event, InvalidPayload> {
    if data.is_empty() {
        return Err(InvalidPayload::new("empty payload"));
    }
    match topic {
        StreamKind::Orders => {
            let wire: WireOrder<'_> = serde_json::from_slice(data)
                .map_err(|e| InvalidPayload::new(format!("invalid order: {e}")))?;
            let order = Order {
                order_id: wire.order_id,
                customer_id: wire.customer_id,
                item: Text::within(data, wire.item),
                quantity: wire.quantity,
                price: wire.price,
                shipping_address: Text::within(data, wire.shipping_address),
                order_status: Text::within(data, wire.order_status),
                creation_date: Text::within(data, wire.creation_date),
            };
            validate_order(&order)?;
            Ok(Event::Order(order))
        }
        StreamKind::Payments => {
            let wire: WirePayment<'_> = serde_json::from_slice(data)
                .map_err(|e| InvalidPayload::new(format!("invalid payment: {e}")))?;
            let payment = Payment {
                payment_id: wire.payment_id,
                order_id: wire.order_id,
                payment_method: Text::within(data, wire.payment_method),
                card_last_four: Text::within(data, wire.card_last_four),
                payment_status: Text::within(data, wire.payment_status),
                payment_datetime: Text::within(data, wire.payment_datetime),
            };
            validate_payment(&payment)?;
            Ok(Event::Payment(payment))
        }
    }
}

fn positive(name: &str, v: i64) -> Result<(), InvalidPayload> {
    if v <= 0 {
        return Err(InvalidPayload::new(format!(
            "{name} must be positive, got {v}"
        )));
    }
    Ok(())
}

fn validate_order(o: &Order) -> Result<(), InvalidPayload> {
    positive("order_id", o.order_id)?;
    positive("customer_id", o.customer_id)?;
    if o.quantity < 0 {
        return Err(InvalidPayload::new(format!(
            "quantity must not be negative, got {}",
            o.quantity
        )));
    }
    if !o.price.is_finite() || o.price < 0.0 {
        return Err(InvalidPayload::new(format!(
            "price must be a non-negative number, got {}",
            o.price
        )));
    }
    Ok(())
}

fn validate_payment(p: &Payment) -> Result<(), InvalidPayload> {
    positive("payment_id", p.payment_id)?;
    positive("order_id", p.order_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"order_id":7,"customer_id":3,"item":"Laptop","quantity":2,"price":999.5,"shipping_address":"1 Main St","order_status":"Shipped","creation_date":"2024-05-01 13:45:10","extra":"ignored"}"#;
    const PAYMENT: &str = r#"{"payment_id":70,"order_id":7,"payment_method":"Credit Card","card_last_four":"1234","payment_status":"Completed","payment_datetime":"2024-05-01T13:50:00Z"}"#;

    #[test]
    fn decodes_valid_messages_and_ignores_unknown_fields() {
        let Ok(Event::Order(o)) = decode(StreamKind::Orders, &Bytes::from_static(ORDER.as_bytes()))
        else {
            panic!("order should decode");
        };
        assert_eq!(o.order_id, 7);
        assert_eq!(o.price, 999.5);
        let Ok(Event::Payment(p)) = decode(
            StreamKind::Payments,
            &Bytes::from_static(PAYMENT.as_bytes()),
        ) else {
            panic!("payment should decode");
        };
        assert_eq!((p.payment_id, p.order_id), (70, 7));
    }

    #[test]
    fn rejects_bad_payloads_with_a_reason() {
        let cases: &[(StreamKind, &[u8], &str)] = &[
            (StreamKind::Orders, b"", "empty payload"),
            (StreamKind::Orders, b"not json", "invalid order"),
            (StreamKind::Orders, b"\xff\xfe\x00", "invalid order"),
            (StreamKind::Orders, br#"{"order_id":1}"#, "missing field"),
            (StreamKind::Payments, br#"[1,2,3]"#, "invalid payment"),
            (
                StreamKind::Orders,
                br#"{"order_id":"7","customer_id":3,"item":"x","quantity":1,"price":1.0,"shipping_address":"a","order_status":"s","creation_date":"d"}"#,
                "invalid type",
            ),
            (
                StreamKind::Orders,
                br#"{"order_id":7,"customer_id":3,"item":"x","quantity":-1,"price":1.0,"shipping_address":"a","order_status":"s","creation_date":"d"}"#,
                "quantity must not be negative",
            ),
            (
                StreamKind::Orders,
                br#"{"order_id":7,"customer_id":3,"item":"x","quantity":1,"price":-0.5,"shipping_address":"a","order_status":"s","creation_date":"d"}"#,
                "price must be",
            ),
            (
                StreamKind::Payments,
                br#"{"payment_id":0,"order_id":7,"payment_method":"m","card_last_four":"1","payment_status":"s","payment_datetime":"d"}"#,
                "payment_id must be positive",
            ),
            (
                StreamKind::Payments,
                br#"{"payment_id":1,"order_id":7.5,"payment_method":"m","card_last_four":"1","payment_status":"s","payment_datetime":"d"}"#,
                "invalid type",
            ),
        ];
        for (topic, data, expected) in cases {
            let err = decode(*topic, &Bytes::copy_from_slice(data)).expect_err("must be invalid");
            assert!(
                err.0.contains(expected),
                "{:?}: {err} should contain {expected}",
                String::from_utf8_lossy(data)
            );
            assert!(err.0.len() <= MAX_ERROR_LEN);
        }
    }

    #[test]
    fn huge_garbage_is_rejected_with_a_short_error() {
        let garbage: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let err = decode(StreamKind::Payments, &Bytes::from(garbage)).expect_err("garbage");
        assert!(err.0.len() <= MAX_ERROR_LEN);
    }

    #[test]
    fn text_hashes_as_the_str_it_holds() {
        let hash = |h: &dyn Fn(&mut rustc_hash::FxHasher)| {
            let mut state = rustc_hash::FxHasher::default();
            h(&mut state);
            state.finish()
        };
        let text = Text::from("Laptop");
        assert_eq!(hash(&|s| text.hash(s)), hash(&|s| "Laptop".hash(s)));
    }

    #[test]
    fn content_hash_separates_updates_from_duplicates() {
        let Ok(a) = decode(StreamKind::Orders, &Bytes::from_static(ORDER.as_bytes())) else {
            panic!()
        };
        let b = decode(
            StreamKind::Orders,
            &Bytes::from(ORDER.replace("Shipped", "Delivered")),
        )
        .expect("valid");
        assert_eq!(a.content_hash(), a.clone().content_hash());
        assert_ne!(a.content_hash(), b.content_hash());
    }
}
