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
