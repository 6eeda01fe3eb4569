//! CSV with a header row whose columns are the facts table's (design §3): each row becomes
//! the wire JSON of design §2, so the intake validates it like any message.
//!
//! Owns: the header check (every column the stream needs, and the timestamp column if one
//! is named), the row-to-JSON conversion, and the rule for half rows: a row whose columns
//! for this stream are all empty but `order_id` (an order without its payment, in a CSV
//! export of the facts table read as payments) is skipped. Extra columns are ignored, so
//! one export serves as both an orders and a payments file. A row with more or fewer fields
//! than the header is invalid (an unquoted comma would shift every later cell into the
//! wrong column), recorded at its line. Must never: judge values
//! beyond their type (the intake validates), or hold more than one row, and that row no
//! longer than [`MAX_RECORD`] bytes.

use super::{timestamp, FileError, Raw};
use crate::model::StreamKind;
use bytes::Bytes;
use serde_json::{Map, Number, Value};
use std::io::{BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Longest CSV record read, the same bound as a JSON line's. Unlike a line, a record cannot
/// be skipped: where it ends depends on its quotes, and an unclosed quote would make the
/// rest of the file one record. So a longer one fails the file, naming its line.
pub const MAX_RECORD: usize = super::jsonl::MAX_LINE;

/// How a column's text becomes a JSON value.
#[derive(Clone, Copy)]
enum Cell {
    Int,
    Float,
    Text,
}

const ORDER_COLUMNS: [(&str, Cell); 8] = [
    ("order_id", Cell::Int),
    ("customer_id", Cell::Int),
    ("item", Cell::Text),
    ("quantity", Cell::Int),
    ("price", Cell::Float),
    ("shipping_address", Cell::Text),
    ("order_status", Cell::Text),
    ("creation_date", Cell::Text),
];

const PAYMENT_COLUMNS: [(&str, Cell); 6] = [
    ("payment_id", Cell::Int),
    ("order_id", Cell::Int),
    ("payment_method", Cell::Text),
    ("card_last_four", Cell::Text),
    ("payment_status", Cell::Text),
    ("payment_datetime", Cell::Text),
];

fn columns(stream: StreamKind) -> &'static [(&'static str, Cell)] {
    match stream {
        StreamKind::Orders => &ORDER_COLUMNS,
        StreamKind::Payments => &PAYMENT_COLUMNS,
    }
}

pub struct Rows {
    reader: csv::Reader<Capped>,
    /// Bytes the reader took since the current record began (give or take the csv
    /// reader's own buffer): what [`Capped`] bounds.
    taken: Arc<AtomicU64>,
    /// For each column the stream needs: its name, kind and index in the header.
    wanted: Vec<(&'static str, Cell, usize)>,
    /// The timestamp column's index, when `--timestamp-field` names one.
    ts_column: Option<(String, usize)>,
    /// Fields in the header: every row must have as many.
    fields: usize,
    record: csv::ByteRecord,
}

impl Rows {
    /// Reads the header; fails if it lacks a column the stream (or the timestamp) needs.
    pub fn new(
        input: Box<dyn BufRead + Send>,
        stream: StreamKind,
        timestamp_field: Option<&str>,
    ) -> Result<Rows, FileError> {
        let taken = Arc::new(AtomicU64::new(0));
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(Capped {
                inner: input,
                taken: taken.clone(),
            });
        let header = match reader.byte_headers() {
            Ok(header) => header.clone(),
            Err(e) => return Err(csv_error(e, 1)),
        };
        let index = |name: &str| {
            header
                .iter()
                .position(|h| String::from_utf8_lossy(h).trim() == name)
        };
        let mut missing = Vec::new();
        let mut wanted = Vec::new();
        for (name, cell) in columns(stream) {
            match index(name) {
                Some(i) => wanted.push((*name, *cell, i)),
                None => missing.push(*name),
            }
        }
        let ts_column = match timestamp_field {
            Some(name) => match index(name) {
                Some(i) => Some((name.to_string(), i)),
                None => {
                    missing.push(name);
                    None
                }
            },
            None => None,
        };
        if !missing.is_empty() {
            return Err(FileError::Shape(format!(
                "the CSV header lacks the {stream} column(s) {}",
                missing.join(", ")
            )));
        }
        Ok(Rows {
            reader,
            taken,
            wanted,
            ts_column,
            fields: header.len(),
            record: csv::ByteRecord::new(),
        })
    }

    /// The next row as wire JSON; `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Raw>, FileError> {
        self.taken.store(0, Ordering::Relaxed);
        // Where this record begins: an error is named by it, not by where reading stopped.
        let line = self.reader.position().line();
        let more = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| csv_error(e, line))?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        Ok(Some(self.convert(line)))
    }

    fn convert(&self, line: u64) -> Raw {
        let bad = |error: String| Raw::Bad {
            line,
            payload: Bytes::from(record_text(&self.record)),
            error,
        };
        let cell = |i: usize| -> Result<&str, String> {
            std::str::from_utf8(self.record.get(i).unwrap_or_default())
                .map_err(|e| format!("column {} is not UTF-8: {e}", i + 1))
        };
        // The reader is flexible so that such a row is recorded here, not a failure of the file.
        if self.record.len() != self.fields {
            return bad(format!(
                "{} fields where the header has {} (an unquoted comma?)",
                self.record.len(),
                self.fields
            ));
        }
        let mut object = Map::new();
        let mut all_empty = true;
        for (name, kind, i) in &self.wanted {
            let text = match cell(*i) {
                Ok(t) => t,
                Err(e) => return bad(e),
            };
            if *name != "order_id" && !text.is_empty() {
                all_empty = false;
            }
            if let Some(value) = to_json(text, *kind) {
                object.insert((*name).to_string(), value);
            }
        }
        if all_empty {
            return Raw::Skipped;
        }
        let ts = match &self.ts_column {
            None => None,
            Some((name, i)) => match cell(*i).and_then(timestamp::from_text) {
                Ok(us) => Some(us),
                Err(e) => return bad(format!("timestamp field `{name}`: {e}")),
            },
        };
        // A map of strings and numbers always serialises.
        let data = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
        Raw::Record {
            line,
            data: Bytes::from(data),
            ts,
        }
    }
}

/// The record as a CSV line again (quoted where it needs to be, no line end), for the
/// `payload` of an invalid record: the fields alone, run together, would not say which was
/// which.
fn record_text(record: &csv::ByteRecord) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to memory cannot fail; should it, the fields run together still say something.
    if writer.write_byte_record(record).is_err() {
        return record.as_slice().to_vec();
    }
    let mut line = writer.into_inner().unwrap_or_default();
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    line
}

/// A cell as JSON. Numbers that do not parse stay text, so that the intake's validation
/// names the field and the type; an empty numeric cell is left out ("missing field").
fn to_json(text: &str, kind: Cell) -> Option<Value> {
    let trimmed = text.trim();
    match kind {
        Cell::Text => Some(Value::String(text.to_string())),
        _ if trimmed.is_empty() => None,
        Cell::Int => Some(
            trimmed
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(text.to_string())),
        ),
        Cell::Float => Some(
            trimmed
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(text.to_string())),
        ),
    }
}

/// The file as the csv reader sees it: refuses to hand over more than [`MAX_RECORD`] bytes
/// for one record, so a record (and the memory it takes) stays bounded.
struct Capped {
    inner: Box<dyn BufRead + Send>,
    taken: Arc<AtomicU64>,
}

/// What [`Capped`] says when a record is too long; [`csv_error`] turns it into the file's error.
#[derive(Debug, thiserror::Error)]
#[error("a CSV record longer than {MAX_RECORD} bytes (an unclosed quote?)")]
struct RecordTooLong;

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.taken.load(Ordering::Relaxed) > MAX_RECORD as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                RecordTooLong,
            ));
        }
        let n = self.inner.read(buf)?;
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn csv_error(e: csv::Error, line: u64) -> FileError {
    match e.into_kind() {
        csv::ErrorKind::Io(source)
            if source
                .get_ref()
                .is_some_and(|inner| inner.is::<RecordTooLong>()) =>
        {
            FileError::Shape(format!("line {line}: {RecordTooLong}"))
        }
        csv::ErrorKind::Io(source) => FileError::Read { line, source },
        other => FileError::Shape(format!("line {line}: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, stream: StreamKind, ts: Option<&str>) -> Result<Vec<Raw>, FileError> {
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.to_string()));
        let mut rows = Rows::new(input, stream, ts)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next_row()? {
            out.push(r);
        }
        Ok(out)
    }

    const FACTS: &str = "order_id,customer_id,item,quantity,price,shipping_address,order_status,creation_date,payment_id,payment_method,card_last_four,payment_status,payment_datetime\n\
        7,3,Laptop,2,999.5,\"1 Main St, Springfield\",Shipped,2024-05-01 13:45:10,1000007,PayPal,0042,Completed,2024-05-01 13:50:00\n\
        8,4,Mouse,1,9.5,x,Pending,2024-05-02 10:00:00,,,,,\n";

    #[test]
    fn a_facts_export_reads_as_orders_and_as_payments() {
        let orders = rows(FACTS, StreamKind::Orders, None).unwrap();
        assert_eq!(orders.len(), 2);
        let Raw::Record {
            line: 2,
            data,
            ts: None,
        } = &orders[0]
        else {
            panic!("{orders:?}")
        };
        let order: crate::model::Order = serde_json::from_slice(data).unwrap();
        assert_eq!(order.shipping_address, "1 Main St, Springfield");
        assert_eq!((order.quantity, order.price), (2, 999.5));
        let payments = rows(FACTS, StreamKind::Payments, None).unwrap();
        // Order 8 has no payment yet: its row is skipped as a payment.
        assert_eq!(payments.len(), 2);
        assert!(matches!(payments[1], Raw::Skipped));
        let Raw::Record { data, .. } = &payments[0] else {
            panic!()
        };
        let payment: crate::model::Payment = serde_json::from_slice(data).unwrap();
        assert_eq!(
            (payment.payment_id, &*payment.card_last_four),
            (1_000_007, "0042")
        );
    }

    #[test]
    fn a_row_with_more_or_fewer_fields_than_the_header_is_invalid_at_its_line() {
        let text =
            "payment_id,order_id,payment_method,card_last_four,payment_status,payment_datetime\n\
            5,1,PayPal,1234,Completed,2024\n\
            garbage\n\
            6,2,Pay,Pal,1234,Completed,2024\n\
            ,3,,,,\n";
        let got = rows(text, StreamKind::Payments, None).unwrap();
        assert!(matches!(&got[0], Raw::Record { line: 2, .. }), "{got:?}");
        assert!(
            matches!(&got[1], Raw::Bad { line: 3, error, .. } if error.contains("1 fields where the header has 6")),
            "{got:?}"
        );
        assert!(
            matches!(&got[2], Raw::Bad { line: 4, error, payload } if error.contains("7 fields") && &payload[..] == b"6,2,Pay,Pal,1234,Completed,2024"),
            "{got:?}"
        );
        // The right number of fields, all empty but order_id: a half row, skipped.
        assert!(matches!(&got[3], Raw::Skipped), "{got:?}");
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn a_header_without_the_streams_columns_is_refused() {
        let err = rows("order_id,item\n1,x\n", StreamKind::Orders, None).unwrap_err();
        assert!(err.to_string().contains("customer_id"), "{err}");
        let err = rows(FACTS, StreamKind::Orders, Some("ts")).unwrap_err();
        assert!(err.to_string().contains("ts"), "{err}");
    }

    #[test]
    fn an_endless_record_fails_the_file_naming_its_line() {
        // An unclosed quote on line 3 makes the rest of the input one record.
        let mut text = String::from("order_id,customer_id,item,quantity,price,shipping_address,order_status,creation_date\n\
            1,2,x,1,1.5,a,b,c\n\
            2,2,\"never closed,1,1.5,a,b,c\n");
        text.push_str(&"y".repeat(MAX_RECORD + 100_000));
        let err = rows(&text, StreamKind::Orders, None).unwrap_err();
        assert!(!err.is_retriable(), "{err}");
        let message = err.to_string();
        assert!(message.contains("longer than"), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn bad_cells_stay_text_for_the_intake_and_bad_timestamps_are_invalid() {
        let text = "payment_id,order_id,payment_method,card_last_four,payment_status,payment_datetime,ts\n\
            abc,1,PayPal,1234,Completed,2024,2024-05-01T00:00:00Z\n\
            5,1,PayPal,1234,Completed,2024,not-a-time\n";
        let got = rows(text, StreamKind::Payments, Some("ts")).unwrap();
        let Raw::Record {
            data, ts: Some(_), ..
        } = &got[0]
        else {
            panic!("{got:?}")
        };
        assert!(crate::model::decode(StreamKind::Payments, data).is_err());
        assert!(
            matches!(&got[1], Raw::Bad { line: 3, error, .. } if error.contains("timestamp field `ts`"))
        );
    }
}
