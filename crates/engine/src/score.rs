//! Score: turn confirmed keyword occurrences into a score and the list of
//! hits that explains it.
//!
//! One mention of 代开 is a signal; the fortieth adds little. Each repeat of a
//! keyword counts `repeat_decay` times the one before, so the total for a keyword
//! is bounded by `weight / (1 - decay)`. Hits in the subject count
//! `subject_multiplier` times. Each category's total is capped, so a message full of
//! one kind of word cannot reach the reject threshold on that alone.

use crate::config::ScoringConfig;
use crate::keywords::KeywordSet;
use crate::verdict::{Hit, Location, TextSource};

/// Occurrences shown per hit, at most.
pub const MAX_LOCATIONS: usize = 3;

/// A confirmed occurrence of a keyword, located in the decoded text.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Index into [`KeywordSet::keywords`].
    pub keyword: u32,
    /// Where it is.
    pub location: Location,
    /// The fraction of the keyword's weight this occurrence counts with (1, or
    /// less at the end of a compound: [`crate::segment::COMPOUND_END_STRENGTH`]).
    pub strength: f64,
}

/// What `subject` and `body` occurrences of a keyword of `weight` add before the
/// category cap: the first occurrence its weight, each repeat `repeat_decay` times
/// the one before, subject occurrences (counted first) `subject_multiplier` times.
/// The one rule both the scorer and the trainer count with.
pub fn points(weight: f64, subject: usize, body: usize, cfg: &ScoringConfig) -> f64 {
    let occurrences = (0..subject + body).map(|i| (i < subject, 1.0));
    points_of(weight, occurrences, cfg)
}

/// [`points`] for occurrences of differing strength, given in counting order
/// as (in the subject, strength): each counts its strength times what a whole
/// occurrence would.
fn points_of(
    weight: f64,
    occurrences: impl Iterator<Item = (bool, f64)>,
    cfg: &ScoringConfig,
) -> f64 {
    let mut factor = 1.0;
    let mut sum = 0.0;
    for (subject, strength) in occurrences {
        let place = if subject { cfg.subject_multiplier } else { 1.0 };
        sum += weight * factor * place * strength;
        factor *= cfg.repeat_decay;
    }
    sum
}

/// A keyword's occurrences in counting order: subject first, then the stronger
/// first (so a weak occurrence never takes a strong one's place in the decay).
fn in_counting_order(list: &mut [&Found]) {
    list.sort_by(|a, b| {
        (b.location.source == TextSource::Subject)
            .cmp(&(a.location.source == TextSource::Subject))
            .then_with(|| b.strength.total_cmp(&a.strength))
    });
}

/// The points of one keyword's occurrences (see [`in_counting_order`]).
fn points_found(weight: f64, list: &mut [&Found], cfg: &ScoringConfig) -> f64 {
    in_counting_order(list);
    let occurrences = list
        .iter()
        .map(|f| (f.location.source == TextSource::Subject, f.strength));
    points_of(weight, occurrences, cfg)
}

/// The keyword features of a message for a learner: per keyword found, its
/// [`points`] at weight 1, so that a trained weight times the feature is what the
/// scorer adds (before the category cap).
pub fn keyword_counts(found: &[Found], cfg: &ScoringConfig) -> Vec<(u32, f32)> {
    per_keyword(found)
        .into_iter()
        .map(|(k, mut list)| (k, points_found(1.0, &mut list, cfg) as f32))
        .collect()
}

/// The occurrences of each keyword, keywords in order of first occurrence.
fn per_keyword(found: &[Found]) -> Vec<(u32, Vec<&Found>)> {
    let mut per: Vec<(u32, Vec<&Found>)> = Vec::new();
    for f in found {
        match per.iter_mut().find(|(k, _)| *k == f.keyword) {
            Some((_, list)) => list.push(f),
            None => per.push((f.keyword, vec![f])),
        }
    }
    per
}

/// The score of a message and the hits behind it, strongest first.
pub fn score(found: &[Found], keywords: &KeywordSet, cfg: &ScoringConfig) -> (f64, Vec<Hit>) {
    // Per keyword: occurrences in the subject first (they weigh more), then body.
    let per = per_keyword(found);
    let mut hits: Vec<(usize, Hit)> = Vec::with_capacity(per.len());
    for (k, mut list) in per {
        let Some(keyword) = keywords.keywords.get(k as usize) else {
            continue;
        };
        let contribution = points_found(keyword.weight, &mut list, cfg);
        hits.push((
            keyword.category,
            Hit {
                keyword: keyword.text.clone(),
                category: keywords
                    .categories
                    .get(keyword.category)
                    .cloned()
                    .unwrap_or_default(),
                weight: keyword.weight,
                count: list.len() as u32,
                contribution,
                locations: list
                    .iter()
                    .take(MAX_LOCATIONS)
                    .map(|f| f.location.clone())
                    .collect(),
            },
        ));
    }
    // Category caps: scale the category's hits down so they sum to the cap.
    let mut total = 0.0;
    for cat in 0..keywords.categories.len() {
        let cap = cfg.cap(&keywords.categories[cat]);
        let (pos, neg) =
            hits.iter()
                .filter(|(c, _)| *c == cat)
                .fold((0.0, 0.0), |(p, n), (_, h)| {
                    if h.contribution > 0.0 {
                        (p + h.contribution, n)
                    } else {
                        (p, n + h.contribution)
                    }
                });
        let scale_pos = if pos > cap { cap / pos } else { 1.0 };
        let scale_neg = if -neg > cap { cap / -neg } else { 1.0 };
        for (_, h) in hits.iter_mut().filter(|(c, _)| *c == cat) {
            h.contribution *= if h.contribution > 0.0 {
                scale_pos
            } else {
                scale_neg
            };
        }
        total += pos * scale_pos + neg * scale_neg;
    }
    let mut hits: Vec<Hit> = hits.into_iter().map(|(_, h)| h).collect();
    hits.sort_by(|a, b| {
        b.contribution
            .abs()
            .total_cmp(&a.contribution.abs())
            .then_with(|| a.keyword.cmp(&b.keyword))
    });
    (total, hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set() -> KeywordSet {
        let mut s = KeywordSet::default();
        s.add_list("money", "代开 4\n发财 2\n", Path::new("m"))
            .unwrap();
        s.add_list("ham", "会议 -3\n", Path::new("h")).unwrap();
        s
    }

    fn at(keyword: u32, source: TextSource) -> Found {
        Found {
            keyword,
            location: Location {
                source,
                part: 0,
                offset: 0,
                len: 0,
                excerpt: String::new(),
            },
            strength: 1.0,
        }
    }

    #[test]
    fn repeats_diminish() {
        let cfg = ScoringConfig::default();
        let found = vec![at(0, TextSource::Text); 3];
        let (total, hits) = score(&found, &set(), &cfg);
        assert_eq!(total, 4.0 + 2.0 + 1.0);
        assert_eq!(hits[0].count, 3);
    }

    #[test]
    fn subject_weighs_more() {
        let cfg = ScoringConfig::default();
        let (total, _) = score(&[at(1, TextSource::Subject)], &set(), &cfg);
        assert_eq!(total, 3.0);
    }

    #[test]
    fn categories_are_capped_and_negative_weights_subtract() {
        let mut cfg = ScoringConfig::default();
        cfg.category_caps.insert("money".into(), 5.0);
        let found = vec![
            at(0, TextSource::Text),
            at(1, TextSource::Text),
            at(2, TextSource::Text),
        ];
        let (total, hits) = score(&found, &set(), &cfg);
        assert!((total - (5.0 - 3.0)).abs() < 1e-9, "{total}");
        let money: f64 = hits
            .iter()
            .filter(|h| h.category == "money")
            .map(|h| h.contribution)
            .sum();
        assert!((money - 5.0).abs() < 1e-9);
        assert_eq!(hits[0].keyword, "代开");
    }

    #[test]
    fn trainer_counts_as_the_scorer_scores() {
        // Repeats beyond any small cap still count, whatever the decay.
        let cfg = ScoringConfig {
            repeat_decay: 1.0,
            ..ScoringConfig::default()
        };
        let mut found = vec![at(0, TextSource::Text); 100];
        found.push(at(0, TextSource::Subject));
        let (total, _) = score(
            &found,
            &set(),
            &ScoringConfig {
                default_category_cap: f64::MAX,
                ..cfg.clone()
            },
        );
        let counts = keyword_counts(&found, &cfg);
        assert_eq!(counts, vec![(0, 101.5)]);
        assert_eq!(total, 4.0 * 101.5);
    }

    #[test]
    fn nothing_found_scores_zero() {
        assert_eq!(score(&[], &set(), &ScoringConfig::default()), (0.0, vec![]));
    }
}
