//! How the default keyword weights were chosen: for every keyword, in how many
//! spam and ham messages of a labelled corpus it occurs *as a word* (after
//! decoding, normalisation and segmentation, exactly as the engine sees it), and
//! the smoothed log-odds weight that follows.
//!
//! ```text
//! cargo run --release --example keyword_stats -- [--config chaff.toml] INDEX...
//! ```
//!
//! Output, one keyword per line, strongest spam signal first:
//! `category keyword spam_docs ham_docs spam% ham% log_odds`.

use chaff::{Config, Engine};
use chaff_train::index;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut config = Config::default();
    let mut indexes = Vec::new();
    while let Some(a) = args.next() {
        if a == "--config" {
            let p = PathBuf::from(args.next().ok_or("--config needs a file")?);
            config = Config::load(&p)?;
        } else {
            indexes.push(PathBuf::from(a));
        }
    }
    if indexes.is_empty() {
        return Err("usage: keyword_stats [--config FILE] INDEX...".into());
    }
    let engine = Engine::new(&config)?;
    let mut labelled = Vec::new();
    for i in &indexes {
        labelled.extend(index::read(i)?);
    }
    let n = engine.keywords().keywords.len();
    let (mut spam_docs, mut ham_docs) = (vec![0u64; n], vec![0u64; n]);
    let (mut spams, mut hams) = (0u64, 0u64);
    // One thread: 32,400 messages take a couple of seconds.
    for item in labelled {
        let words: BTreeSet<u32> = std::fs::read(&item.path)
            .map(|raw| {
                engine
                    .find(&engine.decode(&raw))
                    .iter()
                    .map(|f| f.keyword)
                    .collect()
            })
            .unwrap_or_default();
        let docs = if item.spam {
            spams += 1;
            &mut spam_docs
        } else {
            hams += 1;
            &mut ham_docs
        };
        for w in words {
            docs[w as usize] += 1;
        }
    }
    let kw = engine.keywords();
    let mut rows: Vec<(f64, String)> = (0..n)
        .map(|i| {
            let (s, h) = (spam_docs[i] as f64, ham_docs[i] as f64);
            let ps = (s + 0.5) / (spams as f64 + 1.0);
            let ph = (h + 0.5) / (hams as f64 + 1.0);
            let lo = (ps / ph).ln();
            let k = &kw.keywords[i];
            let row = format!(
                "{}\t{}\t{}\t{}\t{:.2}%\t{:.2}%\t{:+.2}",
                kw.categories[k.category],
                k.text,
                s,
                h,
                100.0 * s / spams.max(1) as f64,
                100.0 * h / hams.max(1) as f64,
                lo
            );
            (lo, row)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("# {spams} spam, {hams} ham");
    for (_, row) in rows {
        println!("{row}");
    }
    Ok(())
}
