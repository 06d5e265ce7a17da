//! Weighted keyword lists, one file per category (`keywords/free.txt`, …).
//!
//! The format is what a mail admin can edit by hand: one keyword per line,
//! optionally followed by whitespace and a weight; `#` starts a comment. The file
//! name (without `.txt`) is the category, so a new category is a new file. The
//! default lists are compiled into the binary; directories named in the config
//! extend or replace them at run time.

use crate::error::Error;
use crate::normalise::normalise;
use crate::text::is_han;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where keyword lists come from.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordSources {
    /// Start from the lists compiled into the binary.
    pub embedded: bool,
    /// Directories of `CATEGORY.txt` files, read in order; a keyword listed again
    /// replaces its earlier weight.
    pub dirs: Vec<PathBuf>,
}

impl Default for KeywordSources {
    fn default() -> Self {
        KeywordSources {
            embedded: true,
            dirs: Vec::new(),
        }
    }
}

/// The lists compiled into the binary: `(category, file text)`.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("free", include_str!("../keywords/free.txt")),
    ("adult", include_str!("../keywords/adult.txt")),
    ("money", include_str!("../keywords/money.txt")),
    ("ads", include_str!("../keywords/ads.txt")),
];

/// Weight of a keyword listed without one.
pub const DEFAULT_WEIGHT: f64 = 1.0;

/// One keyword of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyword {
    /// As written in the list.
    pub text: String,
    /// After normalisation: what is searched for.
    pub normalised: String,
    /// Index into [`KeywordSet::categories`].
    pub category: usize,
    /// Score added by one occurrence.
    pub weight: f64,
}

impl Keyword {
    /// True when the keyword has Chinese characters: those hits are checked by
    /// word segmentation.
    pub fn is_cjk(&self) -> bool {
        self.normalised.chars().any(is_han)
    }
}

/// All keywords of all categories, deduplicated by normalised form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeywordSet {
    /// Category names, in the order first seen.
    pub categories: Vec<String>,
    /// The keywords.
    pub keywords: Vec<Keyword>,
}

impl KeywordSet {
    /// The embedded default lists.
    pub fn embedded() -> KeywordSet {
        let mut set = KeywordSet::default();
        for (category, text) in EMBEDDED {
            // The embedded lists are tested (see the tests below): they parse.
            if let Err(e) = set.add_list(category, text, Path::new(category)) {
                unreachable!("embedded keyword list is invalid: {e}");
            }
        }
        set
    }

    /// Builds the set a configuration asks for: the embedded lists (unless turned
    /// off), then every `*.txt` file of each directory, in name order.
    pub fn load(sources: &KeywordSources) -> Result<KeywordSet, Error> {
        let mut set = if sources.embedded {
            KeywordSet::embedded()
        } else {
            KeywordSet::default()
        };
        for dir in &sources.dirs {
            let io = |source| Error::Io {
                path: dir.clone(),
                source,
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .collect();
            files.sort();
            for file in files {
                let bytes = std::fs::read(&file).map_err(|source| Error::Io {
                    path: file.clone(),
                    source,
                })?;
                let text = list_text(&bytes, &file)?;
                let category = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                set.add_list(&category, text, &file)?;
            }
        }
        Ok(set)
    }

    /// Adds one list. A keyword already present (same normalised form) takes the
    /// new category and weight: later lists override earlier ones.
    pub fn add_list(&mut self, category: &str, text: &str, file: &Path) -> Result<(), Error> {
        let cat = match self.categories.iter().position(|c| c == category) {
            Some(i) => i,
            None => {
                self.categories.push(category.to_string());
                self.categories.len() - 1
            }
        };
        let mut index: HashMap<String, usize> = self
            .keywords
            .iter()
            .enumerate()
            .map(|(i, k)| (k.normalised.clone(), i))
            .collect();
        for (n, raw) in text.lines().enumerate() {
            let bad = |message: String| Error::Keywords {
                file: file.to_path_buf(),
                line: n + 1,
                message,
            };
            let line = raw.split_once('#').map_or(raw, |(l, _)| l).trim();
            if line.is_empty() {
                continue;
            }
            let (word, weight) = match line.rsplit_once(char::is_whitespace) {
                Some((w, num)) if looks_numeric(num) => {
                    let weight: f64 = num
                        .parse()
                        .map_err(|_| bad(format!("`{}` is not a weight", shown(num))))?;
                    if !weight.is_finite() || weight.abs() > MAX_WEIGHT {
                        return Err(bad(format!(
                            "weight {} is out of range (-1000 to 1000)",
                            shown(num)
                        )));
                    }
                    (w.trim(), weight)
                }
                _ => (line, DEFAULT_WEIGHT),
            };
            let normalised = normalise(word).trim().to_string();
            if normalised.is_empty() {
                return Err(bad(format!("`{word}` is empty after normalisation")));
            }
            let keyword = Keyword {
                text: word.to_string(),
                normalised: normalised.clone(),
                category: cat,
                weight,
            };
            match index.get(&normalised) {
                Some(&i) => self.keywords[i] = keyword,
                None => {
                    index.insert(normalised, self.keywords.len());
                    self.keywords.push(keyword);
                }
            }
        }
        Ok(())
    }
}

/// Largest weight a keyword may have, either sign.
pub const MAX_WEIGHT: f64 = 1000.0;

/// Most characters of a bad weight quoted in an error.
const MAX_SHOWN: usize = 32;

/// `s` as quoted in an error: as written, cut after [`MAX_SHOWN`] characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A list file's text, or an error naming the line with the first byte that is
/// not UTF-8.
pub(crate) fn list_text<'a>(bytes: &'a [u8], file: &Path) -> Result<&'a str, Error> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        Error::Keywords {
            file: file.to_path_buf(),
            line: good.iter().filter(|&&b| b == b'\n').count() + 1,
            message: format!(
                "not valid UTF-8 (byte {} of the line)",
                e.valid_up_to() - line_start + 1
            ),
        }
    })
}

fn looks_numeric(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_lists_hold_the_faq_keywords() {
        let set = KeywordSet::embedded();
        assert_eq!(set.categories, ["free", "adult", "money", "ads"]);
        for word in ["免费", "优惠", "色情", "伟哥", "赚钱", "代开", "sex"] {
            assert!(
                set.keywords.iter().any(|k| k.text == word),
                "{word} missing"
            );
        }
    }

    #[test]
    fn list_format() {
        let mut set = KeywordSet::default();
        set.add_list(
            "test",
            "# comment\n\n免費 2.5\nFREE\nmake money 3 # trailing comment\n",
            Path::new("t.txt"),
        )
        .unwrap();
        let k: Vec<_> = set
            .keywords
            .iter()
            .map(|k| (k.normalised.as_str(), k.weight))
            .collect();
        assert_eq!(k, [("免费", 2.5), ("free", 1.0), ("make money", 3.0)]);
    }

    #[test]
    fn later_lists_override() {
        let mut set = KeywordSet::embedded();
        set.add_list("money", "代开 9", Path::new("x")).unwrap();
        let k = set.keywords.iter().find(|k| k.text == "代开").unwrap();
        assert_eq!(k.weight, 9.0);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let mut set = KeywordSet::default();
        let e = set
            .add_list("x", "ok\nbad 1e999\n", Path::new("kw/x.txt"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "kw/x.txt:2: weight 1e999 is out of range (-1000 to 1000)"
        );
        // The weight as written, not 309 digits.
        let e = set
            .add_list(
                "x",
                "ok
bad 1e308
",
                Path::new("kw/x.txt"),
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "kw/x.txt:2: weight 1e308 is out of range (-1000 to 1000)"
        );
        // A long one is cut.
        let long = format!("bad {}", "9".repeat(400));
        let e = set
            .add_list("x", &long, Path::new("kw/x.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 120 && e.contains("…"), "{e}");
        let e = set
            .add_list("x", "ok\n\u{200B}  2\n", Path::new("kw/x.txt"))
            .unwrap_err();
        assert!(e.to_string().starts_with("kw/x.txt:2:"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let e = list_text(b"ok\nfine 2\nbad \xff\xfe 3\n", Path::new("kw/x.txt")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "kw/x.txt:3: not valid UTF-8 (byte 5 of the line)"
        );
        assert_eq!(
            list_text("免费 2\n".as_bytes(), Path::new("x")).unwrap(),
            "免费 2\n"
        );
    }
}
