//! Where messages come from: files, directories, Maildirs, mbox files, standard
//! input and TREC index files.
//!
//! Inputs are enumerated lazily, in a stable order (directories sorted by name), so
//! that memory stays bounded however large the input is and output order is
//! reproducible. A message is named by its path, or `FILE#N` for the N-th message
//! of an mbox file. Reading a message's bytes is deferred to [`Message::load`] so
//! that worker threads, not the enumerating thread, pay for it.

pub use chaff_train::index;
mod mbox;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// A message's bytes, as far as they were read.
///
/// Readers stop one byte past the size limit they are given (`[limits]
/// max_message_size`), and read nothing of a file whose metadata already says it
/// is larger: the engine answers such a message by its size alone
/// ([`chaff::Engine::scan_sized`]).
#[derive(Debug)]
pub struct Input {
    /// The message, or (over the limit) its first bytes or none.
    pub bytes: Vec<u8>,
    /// The message's full size when known (from the bytes, or a file's metadata);
    /// `None` when reading stopped past the limit and the rest was not measured.
    pub size: Option<u64>,
}

impl Input {
    /// Is this the whole message?
    pub fn is_complete(&self) -> bool {
        self.size == Some(self.bytes.len() as u64)
    }
}

/// One message to scan, not yet read.
#[derive(Debug)]
pub struct Message {
    /// How output names it: the path, `FILE#N` for mbox, `-` for standard input.
    pub name: String,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// A regular file, opened (once) and sniffed: `head` is what was read of it.
    File {
        head: Vec<u8>,
        file: File,
        len: u64,
    },
    Bytes(Input),
    Failed(io::Error),
}

impl Message {
    /// A message that could not be read, carried on so it is reported in order.
    pub fn failed(name: String, error: io::Error) -> Message {
        Message {
            name,
            body: Body::Failed(error),
        }
    }

    /// The message's bytes, at most `limit + 1` of them (none when the file's
    /// metadata says it is over `limit`).
    pub fn load(self, limit: usize) -> (String, io::Result<Input>) {
        let input = match self.body {
            Body::File { head, file, len } => {
                if len > limit as u64 {
                    Ok(Input {
                        bytes: Vec::new(),
                        size: Some(len),
                    })
                } else {
                    read_bounded(head, file, limit, Some(len))
                }
            }
            Body::Bytes(b) => Ok(b),
            Body::Failed(e) => Err(e),
        };
        (self.name, input)
    }
}

/// `head` then the rest of `reader`, up to `limit + 1` bytes in all. `len`, a
/// regular file's size from its metadata, sizes the buffer up front: one read
/// fills it and one more sees the end, where a buffer grown as it goes took about
/// eight `read` calls for a 2 KB trec06c message (`strace -c`: 1,629 reads for 200
/// files). A file that grew since is still read to the limit, growing the buffer.
fn read_bounded(
    mut head: Vec<u8>,
    reader: impl Read,
    limit: usize,
    len: Option<u64>,
) -> io::Result<Input> {
    if let Some(len) = len {
        // At most the limit and the byte that tells a larger file.
        let want = usize::try_from(len.min(limit as u64))
            .unwrap_or(limit)
            .saturating_add(1);
        head.reserve_exact(want.saturating_sub(head.len()));
    }
    let cap = (limit as u64).saturating_add(1);
    let rest = cap.saturating_sub(head.len() as u64);
    reader.take(rest).read_to_end(&mut head)?;
    let size = (head.len() <= limit).then_some(head.len() as u64);
    Ok(Input { bytes: head, size })
}

/// Reads one message file, at most `limit + 1` bytes of it (none when its
/// metadata says it is larger than `limit`).
pub fn read_path(path: &Path, limit: usize) -> io::Result<Input> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > limit as u64 {
        return Ok(Input {
            bytes: Vec::new(),
            size: Some(meta.len()),
        });
    }
    let len = meta.is_file().then_some(meta.len());
    read_bounded(Vec::new(), file, limit, len)
}

/// Reads one whole message file of at most `limit` bytes; a larger one is an
/// error (read no further than `limit + 1` bytes), for readers that need every
/// byte (training).
pub fn read_whole(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let input = read_path(path, limit)?;
    if input.is_complete() {
        Ok(input.bytes)
    } else {
        Err(io::Error::other(format!(
            "larger than the limit of {limit} bytes"
        )))
    }
}

/// Enumerates the messages of every path in order. `-` is standard input (one
/// message, or an mbox when it starts with `From `). Every input is opened once
/// and sniffed from the bytes read; named pipes, character devices and standard
/// input are read as streams. A single message is read up to `limit + 1` bytes.
pub fn messages(paths: &[PathBuf], limit: usize) -> impl Iterator<Item = Message> + '_ {
    paths.iter().flat_map(move |p| expand(p, limit))
}

/// How output names a path: printable and one line, and never the same for two
/// different paths. Control characters are escaped (`\n`, `\t`, `\r`,
/// `\u{1b}`), bytes that are not UTF-8 are written `\xFF`, and a backslash is
/// doubled so that an escape is never confused with the same text in a name.
pub fn display_name(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    #[cfg(not(unix))]
    let lossy = path.to_string_lossy();
    #[cfg(not(unix))]
    let bytes = lossy.as_bytes();
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.extend(c.escape_unicode()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

fn expand(path: &Path, limit: usize) -> Box<dyn Iterator<Item = Message> + Send> {
    let name = display_name(path);
    if name == "-" {
        return stream(name, io::stdin(), limit);
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Box::new(std::iter::once(Message::failed(name, e))),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Box::new(std::iter::once(Message::failed(name, e))),
    };
    if meta.is_dir() {
        return Box::new(walk(path, limit));
    }
    if !meta.is_file() {
        return stream(name, file, limit);
    }
    let head = match sniff(&mut &file) {
        Ok(h) => h,
        Err(e) => return Box::new(std::iter::once(Message::failed(name, e))),
    };
    if mbox::looks_like_mbox(&head) {
        return Box::new(mbox::messages(
            name,
            BufReader::new(io::Cursor::new(head).chain(file)),
            limit,
        ));
    }
    Box::new(std::iter::once(Message {
        name,
        body: Body::File {
            head,
            file,
            len: meta.len(),
        },
    }))
}

/// A stream (standard input, a named pipe, a device): an mbox when it starts like
/// one, else one message read up to `limit + 1` bytes.
fn stream(
    name: String,
    mut reader: impl Read + Send + 'static,
    limit: usize,
) -> Box<dyn Iterator<Item = Message> + Send> {
    let head = match sniff(&mut reader) {
        Ok(h) => h,
        Err(e) => return Box::new(std::iter::once(Message::failed(name, e))),
    };
    if mbox::looks_like_mbox(&head) {
        return Box::new(mbox::messages(
            name,
            BufReader::new(io::Cursor::new(head).chain(reader)),
            limit,
        ));
    }
    let message = match read_bounded(head, reader, limit, None) {
        Ok(input) => Message {
            name,
            body: Body::Bytes(input),
        },
        Err(e) => Message::failed(name, e),
    };
    Box::new(std::iter::once(message))
}

/// The first bytes of an input (as many as it takes to tell an mbox), kept to be
/// read again from memory: the input is never reopened or rewound.
fn sniff(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(8);
    reader.take(b"From ".len() as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Every file under a directory, recursively and sorted. Maildir `tmp/` folders
/// (messages still being written) and dot-files are skipped; mbox files found in
/// the tree are split. Symbolic links are followed, to files and to folders; a
/// link back to a folder being walked is skipped (its messages are reached
/// anyway), and a broken link is reported as a message that cannot be read.
fn walk(dir: &Path, limit: usize) -> impl Iterator<Item = Message> + use<> {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(name.starts_with('.')
                    || (e.file_type().is_dir() && name == "tmp" && is_maildir(e.path().parent())))
        })
        .flat_map(move |entry| -> Box<dyn Iterator<Item = Message> + Send> {
            match entry {
                Ok(e) if e.file_type().is_file() => expand(e.path(), limit),
                Ok(_) => Box::new(std::iter::empty()),
                Err(e) if e.loop_ancestor().is_some() => Box::new(std::iter::empty()),
                Err(e) => {
                    let name = e.path().map_or_else(String::new, display_name);
                    Box::new(std::iter::once(Message::failed(name, e.into())))
                }
            }
        })
}

fn is_maildir(dir: Option<&Path>) -> bool {
    dir.is_some_and(|d| d.join("cur").is_dir() && d.join("new").is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn directories_maildirs_and_mbox() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["md/cur", "md/new", "md/tmp", "plain"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        fs::write(root.join("md/cur/1"), "Subject: a\n\nx\n").unwrap();
        fs::write(root.join("md/new/2"), "Subject: b\n\nx\n").unwrap();
        fs::write(root.join("md/tmp/3"), "partial").unwrap();
        fs::write(root.join("plain/m.eml"), "Subject: c\n\nx\n").unwrap();
        fs::write(
            root.join("box.mbox"),
            "From a@b Sat Jan  1 00:00:00 2000\nSubject: d\n\nx\n\nFrom c@d Sat Jan  1 00:00:00 2000\nSubject: e\n\ny\n",
        )
        .unwrap();
        let names: Vec<String> = messages(&[root.to_path_buf()], 1 << 20)
            .map(|m| {
                m.name
                    .strip_prefix(&root.display().to_string())
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "/box.mbox#1",
                "/box.mbox#2",
                "/md/cur/1",
                "/md/new/2",
                "/plain/m.eml"
            ]
        );
    }

    /// Issue 14 (6): an mbox message is kept up to the limit and one byte, with
    /// its full size; within the limit, the split is mail-parser's.
    #[test]
    fn mbox_messages_are_bounded_and_split_as_before() {
        let long_line = "x".repeat(5000);
        let text = format!(
            "junk before\nFrom a@b Sat Jan  1 00:00:00 2000\nSubject: 1\n\none\n\
             From c@d Sat Jan  1 00:00:00 2000 {long_line}\nSubject: 2\n\n{long_line}\n{long_line}\n\
             From e@f Sat Jan  1 00:00:00 2000\nSubject: 3\n\n>From here\n>>From there\n>no\nlast"
        );
        let limit = 100;
        let ours: Vec<_> = mbox::messages("box".into(), text.as_bytes(), limit)
            .map(|m| m.load(limit))
            .collect();
        let names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["box#1", "box#2", "box#3"]);
        let theirs: Vec<Vec<u8>> =
            mail_parser::mailbox::mbox::MessageIterator::new(text.as_bytes())
                .map(|m| m.unwrap().unwrap_contents())
                .collect();
        assert_eq!(theirs.len(), 3);
        for (i, ((_, input), want)) in ours.iter().zip(&theirs).enumerate() {
            let input = input.as_ref().unwrap();
            assert_eq!(input.size, Some(want.len() as u64), "message {i}");
            let kept = want.len().min(limit + 1);
            assert_eq!(input.bytes, want[..kept], "message {i}");
        }
        assert!(ours[0].1.as_ref().unwrap().is_complete());
        assert!(!ours[1].1.as_ref().unwrap().is_complete());
        assert!(String::from_utf8_lossy(&theirs[2]).contains("\nFrom here\n>From there\n>no\n"));
        // A single message keeps the file's name.
        let one: Vec<_> = mbox::messages("one".into(), &b"From a\nSubject: x\n\ny\n"[..], 10)
            .map(|m| m.name)
            .collect();
        assert_eq!(one, ["one"]);
    }

    /// Issue 14 (low): a symlink to a message (or to a folder of messages) in a
    /// directory is followed, not skipped; a link that loops back is not walked
    /// twice, and a broken link is reported.
    #[cfg(unix)]
    #[test]
    fn symlinks_in_directories_are_followed() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let root = dir.path().join("box");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/real.eml"), "Subject: a\n\nx\n").unwrap();
        fs::write(elsewhere.path().join("target.eml"), "Subject: b\n\nx\n").unwrap();
        fs::create_dir(elsewhere.path().join("more")).unwrap();
        fs::write(elsewhere.path().join("more/m.eml"), "Subject: c\n\nx\n").unwrap();
        symlink(elsewhere.path().join("target.eml"), root.join("link.eml")).unwrap();
        symlink(elsewhere.path().join("more"), root.join("linked-dir")).unwrap();
        // Loops: to the walked folder itself and to its parent.
        symlink(&root, root.join("sub/loop")).unwrap();
        symlink("..", root.join("sub/up")).unwrap();
        let prefix = root.display().to_string();
        let names: Vec<String> = messages(std::slice::from_ref(&root), 1 << 20)
            .map(|m| {
                let (name, input) = m.load(1 << 20);
                assert!(input.is_ok(), "{name}: {input:?}");
                name.strip_prefix(&prefix).unwrap().to_string()
            })
            .collect();
        assert_eq!(names, ["/link.eml", "/linked-dir/m.eml", "/sub/real.eml"]);

        symlink(root.join("missing"), root.join("broken.eml")).unwrap();
        let failed: Vec<String> = messages(std::slice::from_ref(&root), 1 << 20)
            .filter_map(|m| {
                let (name, input) = m.load(1 << 20);
                input.is_err().then_some(name)
            })
            .collect();
        assert_eq!(failed, [format!("{prefix}/broken.eml")]);
    }

    #[test]
    fn missing_paths_are_reported_not_dropped() {
        let all: Vec<_> = messages(&[PathBuf::from("/nonexistent/chaff")], 1 << 20).collect();
        assert_eq!(all.len(), 1);
        assert!(all.into_iter().next().unwrap().load(1 << 20).1.is_err());
    }
}
