//! mbox files, split into messages as they are read (never loaded whole).

use super::Message;
use mail_parser::mailbox::mbox::MessageIterator;
use std::io::BufRead;

/// Does this start like an mbox file (`From ` separator line)?
pub fn looks_like_mbox(head: &[u8]) -> bool {
    head.starts_with(b"From ")
}

/// The messages of an mbox stream, named `NAME#1`, `NAME#2`, … — or just `NAME`
/// when the file holds a single message (one message per file with a `From `
/// line, as many archives and the TREC corpora store mail). A read error ends the
/// stream with one failed message so that it is reported.
pub fn messages<R: BufRead>(name: String, reader: R) -> impl Iterator<Item = Message> {
    let mut inner = MessageIterator::new(reader).peekable();
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
            Ok(m) => Some(Message::bytes(label, m.unwrap_contents())),
            Err(e) => {
                done = true;
                Some(Message::failed(label, e))
            }
        }
    })
}
