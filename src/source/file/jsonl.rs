//! JSON lines: one message payload per line, the wire format of design §2. Pub/Sub's Cloud
//! Storage subscriptions write exactly this in their *text* format.
//!
//! Owns: splitting a stream into lines, with their numbers, under a length bound. Must
//! never: judge a line's content (the intake decodes and validates it), or hold more than
//! one line.

use super::{FileError, Raw};
use bytes::Bytes;
use std::io::{BufRead, Read};

/// Longest line kept: Pub/Sub's own limit on a message. A longer one is an invalid record
/// (its first bytes kept as the payload), and reading goes on after its newline.
pub const MAX_LINE: usize = 10 * 1024 * 1024;

/// Bytes of an over-long line kept as its payload in `invalid_messages`.
const KEPT_OF_LONG_LINE: usize = 1024;

#[derive(Default)]
pub struct Lines {
    line: u64,
}

impl Lines {
    pub fn new() -> Self {
        Lines { line: 0 }
    }

    /// The next non-blank line; `None` at the end of the input.
    pub fn next(&mut self, reader: &mut dyn BufRead) -> Result<Option<Raw>, FileError> {
        loop {
            let mut buf = Vec::new();
            let n = Read::take(&mut *reader, MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|source| FileError::Read {
                    line: self.line + 1,
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
                skip_rest_of_line(reader).map_err(|source| FileError::Read {
                    line: self.line,
                    source,
                })?;
                buf.truncate(KEPT_OF_LONG_LINE);
                return Ok(Some(Raw::Bad {
                    line: self.line,
                    payload: Bytes::from(buf),
                    error: format!("line longer than {MAX_LINE} bytes"),
                }));
            }
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Raw::Record {
                line: self.line,
                data: Bytes::from(buf),
                ts: None,
            }));
        }
    }
}

fn skip_rest_of_line(reader: &mut dyn BufRead) -> std::io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = available.len();
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Vec<Raw> {
        let mut lines = Lines::new();
        let mut reader = std::io::Cursor::new(text.to_vec());
        std::iter::from_fn(|| lines.next(&mut reader).unwrap()).collect()
    }

    #[test]
    fn numbers_lines_skipping_blank_ones_and_crlf() {
        let got = all(b"{\"a\":1}\r\n\n  \n{\"b\":2}");
        let want = [(1, "{\"a\":1}"), (4, "{\"b\":2}")];
        assert_eq!(got.len(), 2);
        for (raw, (line, data)) in got.iter().zip(want) {
            match raw {
                Raw::Record {
                    line: l, data: d, ..
                } => {
                    assert_eq!((*l, &d[..]), (line, data.as_bytes()))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_over_long_line_is_invalid_and_reading_goes_on() {
        let mut text = vec![b'x'; MAX_LINE + 10];
        text.extend_from_slice(b"\n{\"ok\":1}\n");
        let got = all(&text);
        assert!(
            matches!(&got[0], Raw::Bad { line: 1, payload, .. } if payload.len() == KEPT_OF_LONG_LINE)
        );
        assert!(matches!(&got[1], Raw::Record { line: 2, .. }));
    }
}
