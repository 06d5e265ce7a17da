//! How the English (Latin-script) keyword weights were fitted, and how well
//! keyword-only scoring does on mail the weights were not fitted on.
//!
//! ```text
//! cargo run --release -p chaff-train --example keyword_folds -- \
//!     [--config chaff.toml] [--folds 5] [--seed 1] INDEX...
//! ```
//!
//! Each INDEX is one corpus (e.g. trec06c-dev and trec07p-dev). Every message is
//! read once, as the engine reads it (decode, normalise, match, segment). Then:
//!
//! * **Out of sample**: each corpus is cut into K stratified, seeded folds; for
//!   each fold, the Latin keywords' weights are fitted ([`fit`]) on the other
//!   folds of every corpus, and the fold is scored with them (keyword points
//!   only, the scorer's own rule: `chaff::score::score`); the held-out scores are
//!   pooled per corpus. Chinese keywords keep their list weights throughout.
//! * **The lists as they stand** (what `chaff eval` gives) and **refitted on all
//!   the data** (in sample), for comparison.
//! * The weights fitted on all the data, one `keyword weight` line each, with the
//!   counts behind them: what the lists in `crates/engine/keywords/` hold.
//!
//! The rule ([`fit`]), for each Latin-script keyword: its smoothed log-odds of
//! occurring (as a word) in spam rather than ham on the corpus where it occurs
//! most (for English words, the English corpus), rounded to 0.1 and clipped to
//! [`MIN_LISTED`]..=6, so that any four distinct English phrases of the adult,
//! free and money lists reach the quarantine threshold; except that a keyword
//! that is a ham sign (log-odds below 0) on another corpus where it occurs in at
//! least [`MIN_SUPPORT`] messages gets the token weight 0.2, like the Chinese
//! words common in ham (English `sex` and `movie`, FAQ words that Chinese mail
//! mostly uses in other senses). Which phrases are listed is chosen by hand
//! (well-known English spam phrases that occur in the dev spam); the weights are
//! the rule's.

use chaff::score::{Found, score};
use chaff::{Config, Engine};
use chaff_train::eval::{Confusion, recall_at_fpr, roc_auc};
use chaff_train::folds::assign;
use chaff_train::index;
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

/// Messages a keyword must occur in, in a corpus, for that corpus's log-odds to
/// count.
const MIN_SUPPORT: u64 = 10;

/// The least weight an English keyword is listed with: a quarter of the default
/// quarantine threshold, so that any four distinct listed phrases of the spam
/// categories put a message in quarantine.
const MIN_LISTED: f64 = 9.0 / 4.0;

/// The weight of a keyword that is a ham sign where it is common: never negative
/// (a spammer could lower his score with it), but next to nothing.
const TOKEN_WEIGHT: f64 = 0.2;

struct Message {
    spam: bool,
    corpus: usize,
    found: Vec<Found>,
    words: BTreeSet<u32>,
}

/// Per corpus and keyword: `(spam messages, ham messages)` with it, and the
/// corpus's `(spam, ham)` totals.
struct Counts {
    docs: Vec<Vec<(u64, u64)>>,
    totals: Vec<(u64, u64)>,
}

fn count<'a>(
    messages: impl Iterator<Item = &'a Message>,
    corpora: usize,
    keywords: usize,
) -> Counts {
    let mut c = Counts {
        docs: vec![vec![(0, 0); keywords]; corpora],
        totals: vec![(0, 0); corpora],
    };
    for m in messages {
        let t = &mut c.totals[m.corpus];
        if m.spam {
            t.0 += 1
        } else {
            t.1 += 1
        }
        for &w in &m.words {
            let d = &mut c.docs[m.corpus][w as usize];
            if m.spam { d.0 += 1 } else { d.1 += 1 }
        }
    }
    c
}

fn log_odds((s, h): (u64, u64), (ns, nh): (u64, u64)) -> f64 {
    let ps = (s as f64 + 0.5) / (ns as f64 + 1.0);
    let ph = (h as f64 + 0.5) / (nh as f64 + 1.0);
    (ps / ph).ln()
}

/// The weight of keyword `k` from the counts (see the module docs).
fn fit(c: &Counts, k: usize) -> f64 {
    let support = |i: usize| c.docs[i][k].0 + c.docs[i][k].1;
    let most = (0..c.totals.len()).max_by_key(|&i| support(i)).unwrap_or(0);
    // A ham sign in another corpus where it is common (an English word Chinese
    // mail uses in other senses): the token weight Chinese ham words get.
    let ham_elsewhere = (0..c.totals.len()).any(|i| {
        i != most && support(i) >= MIN_SUPPORT && log_odds(c.docs[i][k], c.totals[i]) < 0.0
    });
    if ham_elsewhere {
        return TOKEN_WEIGHT;
    }
    let lo = log_odds(c.docs[most][k], c.totals[most]);
    ((lo * 10.0).round() / 10.0).clamp(MIN_LISTED, 6.0)
}

struct Figures {
    recall: f64,
    fpr: f64,
    ham_flagged: u64,
    auc: f64,
    r01: f64,
    r1: f64,
}

fn figures(scored: &[(f64, bool)], threshold: f64) -> Figures {
    let mut c = Confusion::default();
    scored
        .iter()
        .for_each(|&(s, spam)| c.add(spam, s >= threshold));
    Figures {
        recall: c.spam_recall(),
        fpr: c.ham_fpr(),
        ham_flagged: c.fp,
        auc: roc_auc(scored),
        r01: recall_at_fpr(scored, 0.001),
        r1: recall_at_fpr(scored, 0.01),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut config, mut folds, mut seed) = (Config::default(), 5usize, 1u64);
    let mut indexes = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => {
                config = Config::load(&PathBuf::from(args.next().ok_or("--config FILE")?))?
            }
            "--folds" => folds = args.next().ok_or("--folds K")?.parse()?,
            "--seed" => seed = args.next().ok_or("--seed N")?.parse()?,
            _ => indexes.push(PathBuf::from(a)),
        }
    }
    if indexes.is_empty() {
        return Err("usage: keyword_folds [--config FILE] [--folds K] [--seed N] INDEX...".into());
    }
    let engine = Engine::new(&config)?;
    engine.wait_ready();
    let kw = engine.keywords().clone();
    let latin: Vec<bool> = kw.keywords.iter().map(|k| !k.is_cjk()).collect();
    let mut messages: Vec<Message> = Vec::new();
    for (corpus, idx) in indexes.iter().enumerate() {
        let labelled = index::read(idx)?;
        let read: Vec<Message> = labelled
            .par_iter()
            .map(|l| {
                let found = std::fs::read(&l.path)
                    .map(|raw| engine.find(&engine.decode(&raw)))
                    .unwrap_or_default();
                let words = found.iter().map(|f| f.keyword).collect();
                Message {
                    spam: l.spam,
                    corpus,
                    found,
                    words,
                }
            })
            .collect();
        messages.extend(read);
    }
    let corpora = indexes.len();
    let n = kw.keywords.len();
    // Folds per corpus, stratified.
    let mut fold = vec![0usize; messages.len()];
    for corpus in 0..corpora {
        let members: Vec<usize> = (0..messages.len())
            .filter(|&i| messages[i].corpus == corpus)
            .collect();
        let labels: Vec<bool> = members.iter().map(|&i| messages[i].spam).collect();
        for (j, f) in assign(&labels, folds, seed).into_iter().enumerate() {
            fold[members[j]] = f;
        }
    }
    let weighted = |weights: &[f64]| {
        let mut set = kw.clone();
        for (k, w) in set.keywords.iter_mut().zip(weights) {
            k.weight = *w;
        }
        set
    };
    let list: Vec<f64> = kw.keywords.iter().map(|k| k.weight).collect();
    let refit = |c: &Counts| -> Vec<f64> {
        (0..n)
            .map(|k| if latin[k] { fit(c, k) } else { list[k] })
            .collect()
    };
    let q = config.thresholds_for(false).quarantine;
    let mut out = std::io::stdout().lock();
    let score_all = |set: &chaff::keywords::KeywordSet, which: &dyn Fn(usize) -> bool| {
        let mut per: Vec<Vec<(f64, bool)>> = vec![Vec::new(); corpora];
        for (i, m) in messages.iter().enumerate() {
            if which(i) {
                per[m.corpus].push((score(&m.found, set, &config.scoring).0, m.spam));
            }
        }
        per
    };
    // Out of sample.
    let mut oos: Vec<Vec<(f64, bool)>> = vec![Vec::new(); corpora];
    for f in 0..folds {
        let counts = count(
            messages
                .iter()
                .enumerate()
                .filter(|(i, _)| fold[*i] != f)
                .map(|(_, m)| m),
            corpora,
            n,
        );
        let set = weighted(&refit(&counts));
        for (c, s) in score_all(&set, &|i| fold[i] == f).into_iter().enumerate() {
            oos[c].extend(s);
        }
    }
    let all = count(messages.iter(), corpora, n);
    let fitted = refit(&all);
    let as_listed = score_all(&kw, &|_| true);
    let in_sample = score_all(&weighted(&fitted), &|_| true);
    writeln!(
        out,
        "# keyword-only scoring, quarantine threshold {q}; {folds} folds, seed {seed}"
    )?;
    writeln!(
        out,
        "# corpus\tweights\trecall\tham FPR (ham)\tAUC\trecall@0.1%FPR\trecall@1%FPR"
    )?;
    for c in 0..corpora {
        for (name, scored) in [
            ("lists as they stand", &as_listed[c]),
            ("refitted, in sample", &in_sample[c]),
            ("refitted, out of sample", &oos[c]),
        ] {
            let f = figures(scored, q);
            writeln!(
                out,
                "{}\t{name}\t{:.2} %\t{:.3} % ({})\t{:.4}\t{:.2} %\t{:.2} %",
                indexes[c].display(),
                100.0 * f.recall,
                100.0 * f.fpr,
                f.ham_flagged,
                f.auc,
                100.0 * f.r01,
                100.0 * f.r1
            )?;
        }
    }
    writeln!(
        out,
        "# Latin keywords fitted on all the data: keyword, list weight -> fitted, then (spam, ham) messages per corpus"
    )?;
    for k in (0..n).filter(|&k| latin[k]) {
        let counts: Vec<String> = (0..corpora)
            .map(|c| format!("{}/{}", all.docs[c][k].0, all.docs[c][k].1))
            .collect();
        writeln!(
            out,
            "{}\t{}\t{} -> {}\t{}",
            kw.categories[kw.keywords[k].category],
            kw.keywords[k].text,
            list[k],
            fitted[k],
            counts.join("\t")
        )?;
    }
    Ok(())
}
