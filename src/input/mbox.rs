//! mbox files, split into messages as they are read (never loaded whole).
//!
//! Each message is kept up to the size limit and one byte (the rest is counted,
//! not stored), and a line is read at most that many bytes at a time, so an mbox
//! costs bounded memory whatever it holds. Splitting follows mboxrd, as
//! mail-parser's reader does: a message starts at a line beginning `From `, the
//! lines before the first one are skipped, and one `>` is removed from a line
//! beginning `>…>From `.

use super::{Body, Input, Message};
use std::io::{self, BufRead, Read};

/// Does this start like an mbox file (`From ` separator line)?
pub fn looks_like_mbox(head: &[u8]) -> bool {
    head.starts_with(b"From ")
}

/// The messages of an mbox stream, named `NAME#1`, `NAME#2`, … — or just `NAME`
/// when the file holds a single message (one message per file with a `From `
/// line, as many archives and the TREC corpora store mail). Each is kept up to
/// `limit + 1` bytes with its full size. A read error ends the stream with one
/// failed message so that it is reported.
pub fn messages<R: BufRead>(
    name: String,
    reader: R,
    limit: usize,
) -> impl Iterator<Item = Message> {
    let mut inner = Splitter {
        reader,
        keep: limit.saturating_add(1),
        current: None,
        at_line_start: true,
        in_separator: false,
        line: Vec::new(),
    }
    .peekable();
    let mut n = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        n += 1;
        let next = inner.next()?;
        let single = n == 1 && inner.peek().is_none();
        let label = if single {
            name.clone()
        } else {
            format!("{name}#{n}")
        };
        match next {
            Ok(input) => Some(Message {
                name: label,
                body: Body::Bytes(input),
            }),
            Err(e) => {
                done = true;
                Some(Message::failed(label, e))
            }
        }
    })
}

struct Splitter<R> {
    reader: R,
    /// Bytes kept per message, and (at least 64) read per line at a time: the
    /// limit and one.
    keep: usize,
    /// The message being read: its bytes (up to `keep`) and its full size.
    current: Option<Input>,
    /// The next bytes read start a line.
    at_line_start: bool,
    /// The rest of the current line belongs to a `From ` separator line.
    in_separator: bool,
    line: Vec<u8>,
}

impl<R: BufRead> Splitter<R> {
    fn push(&mut self, bytes: &[u8]) {
        if let Some(m) = &mut self.current {
            let room = self.keep.saturating_sub(m.bytes.len());
            m.bytes.extend_from_slice(&bytes[..bytes.len().min(room)]);
            m.size = Some(m.size.unwrap_or(0) + bytes.len() as u64);
        }
    }
}

impl<R: BufRead> Iterator for Splitter<R> {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            let read = (&mut self.reader)
                .take(self.keep.max(64) as u64)
                .read_until(b'\n', &mut line);
            let n = match read {
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            if n == 0 {
                return self.current.take().map(Ok);
            }
            let start = self.at_line_start;
            self.at_line_start = line.ends_with(b"\n");
            if start && line.starts_with(b"From ") {
                self.in_separator = !self.at_line_start;
                let next = Input {
                    bytes: Vec::new(),
                    size: Some(0),
                };
                let done = self.current.replace(next);
                self.line = line;
                if let Some(done) = done {
                    return Some(Ok(done));
                }
                continue;
            }
            if !start {
                if !self.in_separator {
                    self.push(&line);
                }
                self.in_separator &= !self.at_line_start;
            } else {
                self.in_separator = false;
                let i = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
                if i > 0 && line[i..].starts_with(b"From ") {
                    self.push(&line[1..]);
                } else {
                    self.push(&line);
                }
            }
            self.line = line;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(raw: &[u8], limit: usize) -> Vec<Input> {
        messages("m".into(), raw, limit)
            .map(|m| match m.body {
                Body::Bytes(input) => input,
                _ => panic!("{}: not bytes", m.name),
            })
            .collect()
    }

    proptest! {
        // Any bytes: no panic, every message kept to the limit and one byte, and
        // its counted size at least what was kept.
        #[test]
        fn any_input_splits_within_bounds(raw in proptest::collection::vec(any::<u8>(), 0..2000), limit in 1usize..300) {
            for m in split(&raw, limit) {
                prop_assert!(m.bytes.len() <= limit + 1);
                prop_assert!(m.size.unwrap_or(0) >= m.bytes.len() as u64);
            }
        }

        // Messages whose lines never start with `From ` come back whole, one each,
        // with their exact sizes, when under the limit.
        #[test]
        fn separated_messages_come_back_as_written(
            bodies in proptest::collection::vec("[a-zA-Z0-9 :\r\n]{0,200}", 1..6)
        ) {
            let bodies: Vec<String> = bodies
                .into_iter()
                .map(|b| b.replace("\nFrom ", "\n>From "))
                .map(|b| if b.starts_with("From ") { format!("x{b}") } else { b })
                .map(|b| if b.is_empty() || b.ends_with('\n') { b } else { format!("{b}\n") })
                .collect();
            let mut raw = String::new();
            for b in &bodies {
                raw.push_str("From sender@example.com Mon Jan  1 00:00:00 2024\n");
                raw.push_str(b);
            }
            let got = split(raw.as_bytes(), 10_000);
            prop_assert_eq!(got.len(), bodies.len());
            for (m, b) in got.iter().zip(&bodies) {
                let want = b.replace("\n>From ", "\nFrom ");
                prop_assert_eq!(&m.bytes, want.as_bytes());
                prop_assert_eq!(m.size, Some(want.len() as u64));
            }
        }
    }
}
