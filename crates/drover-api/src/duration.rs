//! Durations on the wire: a whole number and one unit (`500ms`, `30s`, `10m`, `12h`, `7d`), at
//! most [`limits::MAX_DURATION_MS`]. One grammar for REST fields and CLI flags, strict enough to
//! be stated exactly in `/openapi.json` ([`pattern`]).

use crate::limits;

/// The units and their milliseconds.
pub const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Parses a duration such as `"30s"`, `"250ms"` or `"7d"` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let shown: String = s.chars().take(40).collect();
    let syntax = || {
        format!(
            "'{shown}' is not a duration: write a whole number and a unit (ms, s, m, h, d), \
             e.g. \"30s\", \"500ms\", \"2m\""
        )
    };
    if s.starts_with('-') {
        return Err(format!(
            "'{shown}' is negative; durations are positive, e.g. \"30s\""
        ));
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    if digits == 0 || (digits > 1 && number.starts_with('0')) {
        return Err(syntax());
    }
    let (_, per) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(syntax)?;
    let too_long = || format!("'{shown}' is too long; at most 365 days");
    let n: u64 = number.parse().map_err(|_| too_long())?;
    match n.checked_mul(*per) {
        Some(ms) if ms <= limits::MAX_DURATION_MS => Ok(ms),
        _ => Err(too_long()),
    }
}

/// The ECMA-262 pattern of the durations [`parse_duration_ms`] accepts that are at least
/// `min_ms`: for each unit, the numbers in range.
pub fn pattern(min_ms: u64) -> String {
    let alternatives: Vec<String> = UNITS
        .iter()
        .filter_map(|(unit, per)| {
            let lo = min_ms.div_ceil(*per);
            let hi = limits::MAX_DURATION_MS / per;
            (lo <= hi).then(|| format!("(?:{}){unit}", int_range_pattern(lo, hi)))
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// A regular expression (no anchors) matching exactly the decimal numbers `lo..=hi`, written
/// without leading zeros.
pub fn int_range_pattern(lo: u64, hi: u64) -> String {
    let mut alternatives = Vec::new();
    let (lo_len, hi_len) = (lo.to_string().len(), hi.to_string().len());
    for len in lo_len..=hi_len {
        let first = if len == 1 {
            0
        } else {
            10u64.pow(len as u32 - 1)
        };
        let last = 10u64.saturating_pow(len as u32).saturating_sub(1);
        let (a, b) = (lo.max(first), hi.min(last));
        if a <= b {
            same_length(
                &a.to_string(),
                &b.to_string(),
                &mut alternatives,
                String::new(),
            );
        }
    }
    alternatives.join("|")
}

/// The numbers `a..=b` (as many digits each) after `prefix`, as alternatives.
fn same_length(a: &str, b: &str, out: &mut Vec<String>, prefix: String) {
    if a.is_empty() {
        out.push(prefix);
        return;
    }
    let (a0, b0) = (a.as_bytes()[0] - b'0', b.as_bytes()[0] - b'0');
    let (a_rest, b_rest) = (&a[1..], &b[1..]);
    if a0 == b0 {
        return same_length(a_rest, b_rest, out, format!("{prefix}{a0}"));
    }
    let any = |n: usize| match n {
        0 => String::new(),
        1 => "[0-9]".to_string(),
        n => format!("[0-9]{{{n}}}"),
    };
    let digit = |lo: u8, hi: u8| match hi - lo {
        0 => lo.to_string(),
        1 => format!("[{lo}{hi}]"),
        _ => format!("[{lo}-{hi}]"),
    };
    // The first digit of `a` with any tail, unless the tail of `a` is all zeros (then it joins
    // the middle); the same for `b` with a tail of nines.
    let low = if a_rest.bytes().all(|c| c == b'0') {
        a0
    } else {
        let nines = "9".repeat(a_rest.len());
        same_length(a_rest, &nines, out, format!("{prefix}{a0}"));
        a0 + 1
    };
    let high = if b_rest.bytes().all(|c| c == b'9') {
        b0
    } else {
        b0 - 1
    };
    if low <= high {
        out.push(format!("{prefix}{}{}", digit(low, high), any(a_rest.len())));
    }
    if high < b0 {
        let zeros = "0".repeat(b_rest.len());
        same_length(&zeros, b_rest, out, format!("{prefix}{b0}"));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Strings of an anchored pattern (proptest generates from the pattern without anchors).
    pub(crate) fn unanchored(p: &str) -> proptest::string::RegexGeneratorStrategy<String> {
        proptest::string::string_regex(&p[1..p.len() - 1]).unwrap()
    }

    fn full(p: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{p})$")).unwrap()
    }

    #[test]
    fn parses_one_number_and_one_unit() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        assert_eq!(parse_duration_ms("365d"), Ok(limits::MAX_DURATION_MS));
        for bad in [
            "",
            "s",
            "1",
            "-1s",
            "1m30s",
            "1 s",
            " 1s",
            "1s ",
            "05s",
            "1.5s",
            "1S",
            "366d",
            "8761h",
            "1hour",
            "99999999999999999999d",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_pattern_of_a_duration_is_the_parser() {
        let p = regex::Regex::new(&pattern(0)).unwrap();
        let every = regex::Regex::new(&pattern(1000)).unwrap();
        for s in [
            "0ms", "0s", "999ms", "1s", "365d", "8760h", "366d", "01s", "1m30s", "x",
        ] {
            let ok = parse_duration_ms(s).is_ok();
            assert_eq!(p.is_match(s), ok, "{s}");
            assert_eq!(
                every.is_match(s),
                ok && parse_duration_ms(s).unwrap() >= 1000,
                "{s}"
            );
        }
    }

    proptest! {
        #[test]
        fn a_range_pattern_matches_exactly_its_range(
            lo in 0u64..2_000_000, span in 0u64..2_000_000, n in 0u64..5_000_000,
        ) {
            let hi = lo + span;
            let r = full(&int_range_pattern(lo, hi));
            prop_assert_eq!(r.is_match(&n.to_string()), (lo..=hi).contains(&n));
            prop_assert!(r.is_match(&lo.to_string()) && r.is_match(&hi.to_string()));
            let leading_zero = format!("0{n}");
            prop_assert!(!r.is_match(&leading_zero));
        }

        #[test]
        fn a_duration_matches_its_pattern_iff_it_parses(
            n in prop_oneof![0u64..100_000, any::<u64>()],
            unit in "(ms|s|m|h|d|x|)",
            min in prop_oneof![Just(0u64), Just(1), Just(1000)],
        ) {
            let s = format!("{n}{unit}");
            let parsed = parse_duration_ms(&s).ok().filter(|ms| *ms >= min);
            prop_assert_eq!(regex::Regex::new(&pattern(min)).unwrap().is_match(&s), parsed.is_some());
        }

        #[test]
        fn strings_of_the_pattern_parse(s in unanchored(&pattern(1))) {
            prop_assert!(parse_duration_ms(&s).is_ok_and(|ms| ms >= 1), "{}", s);
        }
    }
}
