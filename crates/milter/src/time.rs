//! Points in time as people and programs write them, for the `--since` and
//! `--until` of `chaff quarantine list` and the `since` and `until` of the admin
//! API: one reader, so the two accept the same forms.
//!
//! Accepted:
//! - a duration back from now, with its unit: `90s`, `30m`, `12h`, `7d`, `2w`;
//! - seconds since the UNIX epoch: `1700000000`;
//! - RFC 3339: `2026-11-29T08:00:00Z`, `2026-11-29T16:00:00+08:00`, with or
//!   without fractional seconds (dropped);
//! - a UTC date or date and time: `2026-11-29`, `2026-11-29 08:00`,
//!   `2026-11-29 08:00:00`.
//!
//! Times before 1970 are refused; leap seconds (`:60`) are read as the next
//! second.

/// Days since the epoch of a proleptic Gregorian date (Howard Hinnant's
/// days-from-civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in month `m` of year `y`.
fn month_days(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `+HH:MM` or `-HH:MM` as seconds east of UTC.
fn offset_secs(s: &str) -> Option<i64> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Reads a date, `YYYY-MM-DD`, optionally followed by ` ` or `T` and
/// `HH:MM[:SS[.frac]]`, optionally followed by `Z`, ` UTC` or an RFC 3339 offset;
/// seconds since the epoch.
pub fn parse_date(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = match s.find([' ', 'T', 't']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim())),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || m.len() > 2 || day.len() > 2 {
        return None;
    }
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(y) || !digits(m) || !digits(day) {
        return None;
    }
    let (y, m, day): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, day.parse().ok()?);
    if y < 1970 || !(1..=12).contains(&m) || day < 1 || day > month_days(y, m) {
        return None;
    }
    let mut secs = 0i64;
    if let Some(t) = time {
        // The zone: `Z`, `UTC`, or an offset after the time.
        let (clock, offset) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(c) = t.strip_suffix("UTC") {
            (c.trim_end(), 0)
        } else if let Some(i) = t.rfind(['+', '-']) {
            (&t[..i], offset_secs(&t[i..])?)
        } else {
            (t, 0)
        };
        let clock = clock
            .split_once('.')
            .map_or(clock, |(c, frac)| if digits(frac) { c } else { "" });
        let parts: Vec<&str> = clock.split(':').collect();
        if parts.iter().any(|p| p.len() != 2 || !digits(p)) {
            return None;
        }
        let n = |p: &str| p.parse::<i64>().ok();
        let (h, mi, se) = match parts.as_slice() {
            [h, m] => (n(h)?, n(m)?, 0),
            [h, m, s] => (n(h)?, n(m)?, n(s)?),
            _ => return None,
        };
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..=60).contains(&se) {
            return None;
        }
        secs = h * 3600 + mi * 60 + se - offset;
    }
    u64::try_from(days_from_civil(y, m, day) * 86_400 + secs).ok()
}

/// A point in time (seconds since the epoch) in any of the module's forms,
/// durations counted back from `now`.
pub fn parse_point(s: &str, now: u64) -> Result<u64, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map_err(|_| format!("`{s}` is too large for a time in seconds"));
    }
    if t.ends_with(|c: char| c.is_ascii_alphabetic())
        && t[..t.len() - 1].bytes().all(|b| b.is_ascii_digit())
    {
        return chaff::config::parse_duration(t).map(|d| now.saturating_sub(d.as_secs()));
    }
    parse_date(t).ok_or_else(|| {
        format!(
            "`{s}` is not a time: write a duration back from now (`7d`, `12h`), seconds since \
             1970, an RFC 3339 time (`2026-11-29T08:00:00Z`) or a UTC date (`2026-11-29 08:00`)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dates_read() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2023-11-14 22:13:20"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20.123Z"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-15T06:13:20+08:00"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14T17:13:20-05:00"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14 22:13:20 UTC"), Some(1_700_000_000));
        assert_eq!(parse_date("2000-02-29 00:00"), Some(951_782_400));
        for bad in [
            "2023-13-01",
            "2023-11",
            "yesterday",
            "2023-11-14 25:00",
            "1969-12-31",
            "2023-02-29",
            "2023-04-31",
            "2023-11-14T22:13:20+8",
            "2023-11-14T22:13:20+08:00x",
            "2023-11-14T22:1",
            "2023-11-14T22:13:20.x",
            "+2023-11-14",
            "2023-1a-01",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn points_read_in_every_form() {
        let now = 1_700_000_000;
        assert_eq!(parse_point("1h", now), Ok(now - 3600));
        assert_eq!(parse_point("7d", now), Ok(now - 7 * 86_400));
        assert_eq!(parse_point("1699999999", now), Ok(1_699_999_999));
        assert_eq!(parse_point("0", now), Ok(0));
        assert_eq!(parse_point("2023-11-14T22:13:20Z", now), Ok(1_700_000_000));
        assert!(parse_point("soon", now).unwrap_err().contains("not a time"));
        assert!(parse_point("0d", now).is_err());
        assert!(parse_point("99999999999999999999", now).is_err());
        // Long ago: clamped at the epoch, not wrapped.
        assert_eq!(parse_point("100000w", 5), Ok(0));
    }

    proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_panic(s in "\\PC{0,40}") {
            let _ = parse_point(&s, 1_700_000_000);
        }

        #[test]
        fn rfc3339_of_any_time_reads_back(t in 0u64..4_102_444_800) {
            let text = crate::accounts::format_time(t);
            // `YYYY-MM-DD HH:MM:SS UTC`
            prop_assert_eq!(parse_point(&text, 0), Ok(t));
            let rfc = text.trim_end_matches(" UTC").replacen(' ', "T", 1) + "Z";
            prop_assert_eq!(parse_point(&rfc, 0), Ok(t));
        }
    }
}
