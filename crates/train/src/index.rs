//! TREC-style index files: `spam PATH` or `ham PATH` per line, paths relative to
//! the index file's folder. The format of the TREC spam track and of the corpora
//! chaff is measured on.

use std::io;
use std::path::{Path, PathBuf};

/// One labelled message of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// True for spam, false for ham.
    pub spam: bool,
    /// The message file.
    pub path: PathBuf,
}

/// Reads an index file. Blank lines and `#` comments are skipped; any other line
/// that is not `spam PATH` or `ham PATH` is an error naming the line.
pub fn read(index: &Path) -> io::Result<Vec<Labelled>> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", index.display())))?;
    let base = index.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (label, rel) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let spam = match label.to_ascii_lowercase().as_str() {
            "spam" => true,
            "ham" => false,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}:{}: expected `spam PATH` or `ham PATH`",
                        index.display(),
                        n + 1
                    ),
                ));
            }
        };
        let rel = rel.trim();
        if rel.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:{}: missing path", index.display(), n + 1),
            ));
        }
        out.push(Labelled {
            spam,
            path: base.join(rel),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_relative_to_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index");
        std::fs::write(&index, "spam data/000/000\n\nham ../x\n# c\n").unwrap();
        let all = read(&index).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].spam && !all[1].spam);
        assert_eq!(all[0].path, dir.path().join("data/000/000"));
        std::fs::write(&index, "spam a\nmaybe b\n").unwrap();
        assert!(read(&index).unwrap_err().to_string().contains("index:2"));
    }
}
