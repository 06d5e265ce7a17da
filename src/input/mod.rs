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

/// One message to scan, not yet read.
#[derive(Debug)]
pub struct Message {
    /// How output names it: the path, `FILE#N` for mbox, `-` for standard input.
    pub name: String,
    body: Body,
}

#[derive(Debug)]
enum Body {
    File(PathBuf),
    Bytes(Vec<u8>),
    Failed(io::Error),
}

impl Message {
    /// A message in its own file, read later.
    pub fn file(path: PathBuf) -> Message {
        Message {
            name: path.display().to_string(),
            body: Body::File(path),
        }
    }

    /// A message already in memory.
    pub fn bytes(name: String, bytes: Vec<u8>) -> Message {
        Message {
            name,
            body: Body::Bytes(bytes),
        }
    }

    /// A message that could not be read, carried on so it is reported in order.
    pub fn failed(name: String, error: io::Error) -> Message {
        Message {
            name,
            body: Body::Failed(error),
        }
    }

    /// The message's bytes.
    pub fn load(self) -> (String, io::Result<Vec<u8>>) {
        let bytes = match self.body {
            Body::File(path) => std::fs::read(&path),
            Body::Bytes(b) => Ok(b),
            Body::Failed(e) => Err(e),
        };
        (self.name, bytes)
    }
}

/// Enumerates the messages of every path in order. `-` is standard input (one
/// message, or an mbox when it starts with `From `).
pub fn messages(paths: &[PathBuf]) -> impl Iterator<Item = Message> + '_ {
    paths.iter().flat_map(|p| expand(p))
}

fn expand(path: &Path) -> Box<dyn Iterator<Item = Message> + Send> {
    let name = path.display().to_string();
    if name == "-" {
        let mut bytes = Vec::new();
        return match io::stdin().lock().read_to_end(&mut bytes) {
            Ok(_) if mbox::looks_like_mbox(&bytes) => {
                Box::new(mbox::messages(name, io::Cursor::new(bytes)))
            }
            Ok(_) => Box::new(std::iter::once(Message::bytes(name, bytes))),
            Err(e) => Box::new(std::iter::once(Message::failed(name, e))),
        };
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Box::new(std::iter::once(Message::failed(name, e))),
    };
    if meta.is_dir() {
        return Box::new(walk(path));
    }
    match is_mbox_file(path) {
        Ok(true) => match File::open(path) {
            Ok(f) => Box::new(mbox::messages(name, BufReader::new(f))),
            Err(e) => Box::new(std::iter::once(Message::failed(name, e))),
        },
        Ok(false) => Box::new(std::iter::once(Message::file(path.to_path_buf()))),
        Err(e) => Box::new(std::iter::once(Message::failed(name, e))),
    }
}

/// Every file under a directory, recursively and sorted. Maildir `tmp/` folders
/// (messages still being written) and dot-files are skipped; mbox files found in
/// the tree are split.
fn walk(dir: &Path) -> impl Iterator<Item = Message> + use<> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(name.starts_with('.')
                    || (e.file_type().is_dir() && name == "tmp" && is_maildir(e.path().parent())))
        })
        .flat_map(|entry| -> Box<dyn Iterator<Item = Message> + Send> {
            match entry {
                Ok(e) if e.file_type().is_file() => expand(e.path()),
                Ok(_) => Box::new(std::iter::empty()),
                Err(e) => {
                    let name = e
                        .path()
                        .map_or_else(String::new, |p| p.display().to_string());
                    Box::new(std::iter::once(Message::failed(name, e.into())))
                }
            }
        })
}

fn is_maildir(dir: Option<&Path>) -> bool {
    dir.is_some_and(|d| d.join("cur").is_dir() && d.join("new").is_dir())
}

fn is_mbox_file(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 5];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(mbox::looks_like_mbox(&head[..n]))
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
        let names: Vec<String> = messages(&[root.to_path_buf()])
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

    #[test]
    fn missing_paths_are_reported_not_dropped() {
        let all: Vec<_> = messages(&[PathBuf::from("/nonexistent/chaff")]).collect();
        assert_eq!(all.len(), 1);
        assert!(all.into_iter().next().unwrap().load().1.is_err());
    }
}
