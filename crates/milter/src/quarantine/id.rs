//! Entry ids: short, unique, sortable by time and printable.
//!
//! An id is 64 bits: the entry's time in milliseconds since the UNIX epoch in the
//! top 42 (enough until the year 2109), and 22 random bits below, so ids made in
//! the same millisecond by two processes sharing the store almost never collide
//! (and the writer moves on to the next free id when they do). Printed as 13
//! lowercase Crockford base32 characters (`01j9x3k5v7m2q`): no padding, no
//! punctuation, and the text sorts as the number does, so "newest first" is one
//! reverse walk of the primary table.

use std::fmt;
use std::str::FromStr;

/// Bits below the time.
const RANDOM_BITS: u32 = 22;
/// Characters of the printed form.
pub const ID_LEN: usize = 13;
/// Crockford's base32 alphabet (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// One quarantine entry's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(u64);

impl EntryId {
    /// The id for an entry made at `time_ms` with `salt`'s low bits as its
    /// random part.
    pub fn new(time_ms: u64, salt: u64) -> EntryId {
        EntryId((time_ms << RANDOM_BITS) | (salt & ((1 << RANDOM_BITS) - 1)))
    }

    /// The lowest id of entries made at or after `time_ms`.
    pub fn first_at(time_ms: u64) -> EntryId {
        EntryId(time_ms.saturating_mul(1 << RANDOM_BITS))
    }

    /// The entry's time, in milliseconds since the UNIX epoch.
    pub fn time_ms(self) -> u64 {
        self.0 >> RANDOM_BITS
    }

    /// The entry's time, in seconds since the UNIX epoch.
    pub fn time_secs(self) -> u64 {
        self.time_ms() / 1000
    }

    /// The id as stored (the primary key).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// An id read back from the store.
    pub fn from_u64(v: u64) -> EntryId {
        EntryId(v)
    }

    /// The next id up (the same millisecond unless the random part wraps).
    pub fn next(self) -> EntryId {
        EntryId(self.0.wrapping_add(1))
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; ID_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (ID_LEN - 1 - i);
            // The first character holds the top 4 bits (65 bits printed).
            *c = ALPHABET[((self.0 >> shift) & 31) as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Text that is not an entry id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a quarantine id (13 characters such as 01j9x3k5v7m2q)")]
pub struct BadId(pub String);

impl FromStr for EntryId {
    type Err = BadId;

    /// Reads the printed form, without regard to case; as Crockford allows, `i`
    /// and `l` read as 1 and `o` as 0.
    fn from_str(s: &str) -> Result<EntryId, BadId> {
        let bad = || BadId(s.chars().take(40).collect());
        let t = s.trim();
        if t.len() != ID_LEN {
            return Err(bad());
        }
        let mut v: u64 = 0;
        for (i, b) in t.bytes().enumerate() {
            let b = match b.to_ascii_lowercase() {
                b'i' | b'l' => b'1',
                b'o' => b'0',
                b => b,
            };
            let digit = ALPHABET.iter().position(|&a| a == b).ok_or_else(bad)? as u64;
            // The first character carries only 4 bits.
            if i == 0 && digit > 15 {
                return Err(bad());
            }
            v = (v << 5) | digit;
        }
        Ok(EntryId(v))
    }
}

impl serde::Serialize for EntryId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EntryId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EntryId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_print_short_and_read_back() {
        let id = EntryId::new(1_700_000_000_123, 0x2a_5a5a);
        let text = id.to_string();
        assert_eq!(text.len(), ID_LEN);
        assert!(text.bytes().all(|b| ALPHABET.contains(&b)), "{text}");
        assert_eq!(text.parse::<EntryId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<EntryId>(), Ok(id));
        assert_eq!(id.time_ms(), 1_700_000_000_123);
        assert_eq!(id.time_secs(), 1_700_000_000);
        assert_eq!(EntryId::from_u64(u64::MAX).to_string(), "fzzzzzzzzzzzz");
        assert_eq!(EntryId::from_u64(0).to_string(), "0000000000000");
        // Crockford's readings of look-alike letters.
        assert_eq!(
            "0000000000o1l".parse::<EntryId>(),
            Ok(EntryId::from_u64(33))
        );
        for bad in [
            "",
            "0000000000000x",
            "g000000000000",
            "000000000000u",
            "00000000 0000",
            "短",
        ] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_id_of_a_time_is_below_every_id_of_that_time() {
        let t = 1_700_000_000_000;
        assert!(EntryId::first_at(t) <= EntryId::new(t, 0));
        assert!(EntryId::first_at(t + 1) > EntryId::new(t, u64::MAX));
        assert_eq!(EntryId::new(t, 5).next(), EntryId::new(t, 6));
    }

    proptest! {
        #[test]
        fn text_order_is_number_order(a in any::<u64>(), b in any::<u64>()) {
            let (x, y) = (EntryId::from_u64(a), EntryId::from_u64(b));
            prop_assert_eq!(x.cmp(&y), x.to_string().cmp(&y.to_string()));
            prop_assert_eq!(x.to_string().parse::<EntryId>(), Ok(x));
        }

        #[test]
        fn any_text_reads_or_is_refused_without_panic(s in ".{0,20}") {
            let _ = s.parse::<EntryId>();
        }
    }
}
