//! The search indexes of the quarantine: by sender, by each recipient and by
//! score; time is the primary key's own order (ids begin with the time).
//!
//! An address is indexed twice, as itself and as `@domain`, both in lower case,
//! so the list filters by a mailbox or a whole domain with one range read: the
//! first page of one recipient's mail reads 50 index keys and 50 summaries,
//! however many entries the store holds.

use super::db::{BY_RCPT, BY_SCORE, BY_SENDER};
use super::entry::Summary;
use redb::WriteTransaction;
use std::collections::BTreeSet;

/// The index key of the null sender (`<>`).
pub const NULL_SENDER: &str = "<>";
/// Longest address indexed, in bytes (SMTP allows 256); longer ones are cut.
const MAX_KEY: usize = 320;

/// The keys an address is indexed under: itself and `@domain`, lowercased. An
/// empty sender is `<>`.
pub fn address_keys(addr: &str) -> Vec<String> {
    let a = addr.trim().trim_matches(['<', '>']).to_lowercase();
    if a.is_empty() {
        return vec![NULL_SENDER.to_string()];
    }
    let a = cut(&a);
    let mut keys = vec![a.clone()];
    if let Some((_, domain)) = a.rsplit_once('@')
        && !domain.is_empty()
    {
        keys.push(format!("@{domain}"));
    }
    keys
}

/// The key a filter looks up: an address, `@domain` (or a bare domain, read as
/// `@domain`), or `<>` for the null sender; lowercased.
pub fn filter_key(text: &str) -> String {
    let t = text.trim().to_lowercase();
    if t.is_empty() || t == NULL_SENDER {
        return NULL_SENDER.to_string();
    }
    let t = t.trim_matches(['<', '>']).to_string();
    let t = if t.contains('@') { t } else { format!("@{t}") };
    cut(&t)
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_KEY {
        return s.to_string();
    }
    let mut end = MAX_KEY;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A score as a key that sorts as the score does (negative scores too).
pub fn score_key(score: f64) -> u64 {
    let b = if score.is_nan() { 0.0f64 } else { score }.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

fn recipient_keys(s: &Summary) -> BTreeSet<String> {
    s.recipients.iter().flat_map(|r| address_keys(r)).collect()
}

/// Adds the index rows of an entry.
pub(super) fn insert(txn: &WriteTransaction, s: &Summary) -> Result<(), redb::Error> {
    let id = s.id.as_u64();
    let mut by_sender = txn.open_table(BY_SENDER)?;
    for k in address_keys(&s.sender) {
        by_sender.insert((k.as_str(), id), ())?;
    }
    let mut by_rcpt = txn.open_table(BY_RCPT)?;
    for k in recipient_keys(s) {
        by_rcpt.insert((k.as_str(), id), ())?;
    }
    txn.open_table(BY_SCORE)?
        .insert((score_key(s.score), id), ())?;
    Ok(())
}

/// Removes the index rows of an entry.
pub(super) fn remove(txn: &WriteTransaction, s: &Summary) -> Result<(), redb::Error> {
    let id = s.id.as_u64();
    let mut by_sender = txn.open_table(BY_SENDER)?;
    for k in address_keys(&s.sender) {
        by_sender.remove((k.as_str(), id))?;
    }
    let mut by_rcpt = txn.open_table(BY_RCPT)?;
    for k in recipient_keys(s) {
        by_rcpt.remove((k.as_str(), id))?;
    }
    txn.open_table(BY_SCORE)?.remove((score_key(s.score), id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_are_indexed_as_themselves_and_their_domain() {
        assert_eq!(
            address_keys("<Bob@Example.COM>"),
            ["bob@example.com", "@example.com"]
        );
        assert_eq!(address_keys(""), [NULL_SENDER]);
        assert_eq!(address_keys("postmaster"), ["postmaster"]);
        assert_eq!(filter_key("Example.com"), "@example.com");
        assert_eq!(filter_key("@example.com"), "@example.com");
        assert_eq!(filter_key("<Bob@example.com>"), "bob@example.com");
        assert_eq!(filter_key("<>"), NULL_SENDER);
        let long = format!("{}@example.com", "长".repeat(200));
        assert!(address_keys(&long)[0].len() <= MAX_KEY);
    }

    proptest! {
        #[test]
        fn score_keys_keep_the_order(a in -1e9f64..1e9, b in -1e9f64..1e9) {
            prop_assert_eq!(a.total_cmp(&b), score_key(a).cmp(&score_key(b)));
        }
    }
}
