//! The grammars of the API's text fields as ECMA-262 patterns (the dialect of `/openapi.json`),
//! built from the same constants and names the validators use. Where a validator is a parser
//! (label selectors, event lists), a test checks that the pattern accepts exactly what the
//! parser does; cron expressions are checked against [`cron`] itself before croner parses them.

use std::sync::LazyLock;

use crate::duration::int_range_pattern;
use crate::limits;

/// What `char::is_whitespace` (and so `str::trim`) takes for blank.
pub const WS: &str = r"[\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// Names: queues, kinds, schedules, resources and labels (`rest::check_name`).
pub fn name() -> String {
    format!("^[A-Za-z0-9_.:/-]{{1,{}}}$", limits::MAX_NAME)
}

/// Token names (`auth::check_token_name`).
pub fn token_name() -> String {
    let rest = crate::auth::MAX_TOKEN_NAME - 1;
    format!("^[A-Za-z0-9_][A-Za-z0-9._-]{{0,{rest}}}$")
}

/// Secret environment variable names (`secret::is_env_name`).
pub fn env_name() -> String {
    format!("^[A-Za-z_][A-Za-z0-9_]{{0,{}}}$", limits::MAX_NAME - 1)
}

/// A UUID in every form a task id parses from: hyphenated, simple, braced, URN.
pub fn uuid_body() -> String {
    let h = |n: usize| format!("[0-9A-Fa-f]{{{n}}}");
    let hyphenated = format!("{}-{}-{}-{}-{}", h(8), h(4), h(4), h(4), h(12));
    format!(
        r"{hyphenated}|{}|\{{{hyphenated}\}}|urn:uuid:{hyphenated}",
        h(32)
    )
}

/// A task id.
pub fn task_id() -> String {
    format!("^(?:{})$", uuid_body())
}

/// One of `names`, exactly.
pub fn one_of(names: &[&str]) -> String {
    format!("^(?:{})$", names.join("|"))
}

/// A comma-separated list of `names`, blanks around each, empty items skipped (how the event
/// stream's `state` and `type` and a webhook's `events` are read).
pub fn comma_list(names: &[String]) -> String {
    let item = format!(
        "{WS}*(?:{})?{WS}*",
        names.join("|").replace('.', r"\.").replace('*', r"\*")
    );
    format!("^{item}(?:,{item})*$")
}

/// Label selectors (`drover_core::Selector`): `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
/// `k notin (a,b)`, `k`, `!k`, comma separated; blank means any worker.
pub fn selector() -> String {
    let n = "[A-Za-z0-9._/-]+";
    let set = format!(r"{WS}*\({WS}*{n}{WS}*(?:,{WS}*{n}{WS}*)*\)");
    let req =
        format!("!{WS}*{n}|{n}{WS}*!={WS}*{n}|{n}{WS}*==?{WS}*{n}|{n}(?:{WS}+(?:in|notin){set})?");
    format!("^{WS}*(?:(?:{req}){WS}*(?:,{WS}*(?:{req}){WS}*)*)?$")
}

/// Webhook URLs: http or https, a host name (labels of letters and digits with single hyphens
/// inside, the last starting with a letter, so no IP address and no IDNA label), an optional
/// port, a path and query of printable ASCII; no credentials, no fragment. (IP literals are
/// accepted too, when public.)
pub fn webhook_url() -> String {
    let label = "[A-Za-z0-9](?:-?[A-Za-z0-9])*";
    let top = "[A-Za-z](?:-?[A-Za-z0-9])*";
    let port = int_range_pattern(1, 65535);
    let rest = r"[!$&'()*+,\-./0-9:;=?@A-Z_a-z~]|%[0-9A-Fa-f]{2}";
    format!(r"^[Hh][Tt][Tt][Pp][Ss]?://(?:{label}\.)*{top}(?::(?:{port}))?(?:[/?](?:{rest})*)?$")
}

/// The compiled [`webhook_url`] pattern, which a URL naming its host by name must match.
pub fn webhook_url_regex() -> &'static regex::Regex {
    static RE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(&webhook_url()).expect("the URL pattern compiles"));
    &RE
}

/// Cron expressions: five fields (`min hour dom month dow`) or six (seconds first), one space
/// apart, each `*` or a list of numbers, ranges `a-b` (a ≤ b) and steps (`*/15`, `0-30/5`),
/// months and weekdays also by name (`JAN`, `MON-FRI`); or `@hourly`, `@daily`, `@weekly`,
/// `@monthly`, `@yearly`, `@annually`.
pub fn cron() -> String {
    let sixty = field(0, 59, &[]);
    let months = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let month: Vec<(&str, u64)> = months.iter().zip(1..).map(|(m, v)| (*m, v)).collect();
    let days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let dow: Vec<(&str, u64)> = days.iter().zip(0..).map(|(d, v)| (*d, v)).collect();
    let fields = [
        field(0, 23, &[]),
        field(1, 31, &[]),
        field(1, 12, &month),
        field(0, 7, &dow),
    ]
    .join(" ");
    format!("^(?:@(?:yearly|annually|monthly|weekly|daily|hourly)|(?:{sixty} )?{sixty} {fields})$")
}

/// The compiled [`cron`] pattern, which the schedule validator applies before croner.
pub fn cron_regex() -> &'static regex::Regex {
    static RE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(&cron()).expect("the cron pattern compiles"));
    &RE
}

/// One cron field over `lo..=hi`, with names for some values (`SUN` is also 7 at a range's end).
fn field(lo: u64, hi: u64, names: &[(&str, u64)]) -> String {
    let value = |v: u64| {
        let mut alts = vec![v.to_string()];
        alts.extend(
            names
                .iter()
                .filter(|(_, n)| *n == v)
                .map(|(s, _)| s.to_string()),
        );
        alts
    };
    let mut ranges = Vec::new();
    for start in lo..=hi {
        let mut ends = vec![int_range_pattern(start, hi)];
        ends.extend(
            names
                .iter()
                .filter(|(_, n)| *n >= start)
                .map(|(s, _)| s.to_string()),
        );
        if hi == 7 && !names.is_empty() {
            ends.push("SUN".into());
        }
        ranges.push(format!(
            "(?:{})-(?:{})",
            value(start).join("|"),
            ends.join("|")
        ));
    }
    let single = (lo..=hi).flat_map(value).collect::<Vec<_>>().join("|");
    let step = int_range_pattern(1, hi);
    let ranges = ranges.join("|");
    // `*` alone, or a list of stepped `*`, ranges (stepped or not) and values.
    let atom = format!(r"(?:\*|{ranges})/(?:{step})|{ranges}|{single}");
    format!(r"(?:\*|(?:{atom})(?:,(?:{atom}))*)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::tests::unanchored;
    use proptest::prelude::*;

    fn re(p: &str) -> regex::Regex {
        regex::Regex::new(p).unwrap()
    }

    fn selector_ok(s: &str) -> bool {
        s.parse::<drover_core::Selector>().is_ok()
    }

    #[test]
    fn selectors_match_the_parser() {
        let p = re(&selector());
        for s in [
            "",
            " ",
            "zone=a",
            "zone==a",
            "a!=b",
            "!spot",
            "! spot",
            "gpu",
            "region in (eu, us)",
            "env notin(dev)",
            "zone=a, tier != gold ,region in (eu, us),env notin (dev),gpu,!spot",
            "\u{2003}a=b\u{85}",
            "a,",
            ",a",
            "a=",
            "=b",
            "!a=b",
            "a in ()",
            "a in (b,)",
            "ain (b)",
            "a inx (b)",
            "a (b)",
            "a=b=c",
            "a==b==c",
            "a!=b!=c",
            "a in (b) c",
            "a in (b)(c)",
            "a,,b",
            "a b",
            "é",
        ] {
            assert_eq!(p.is_match(s), selector_ok(s), "{s:?}");
        }
    }

    #[test]
    fn cron_expressions_of_the_pattern_parse_and_the_pattern_refuses_what_croner_refuses() {
        let p = cron_regex();
        for ok in [
            "0 3 * * *",
            "*/10 * * * * *",
            "0 9-17/2 * * MON-FRI",
            "0 0 1,15 JAN-MAR,DEC *",
            "5 4 * * SAT-SUN",
            "0 0 * * 7",
            "@hourly",
        ] {
            assert!(p.is_match(ok), "{ok}");
            assert!(drover_core::schedule::parse_cron(ok).is_ok(), "{ok}");
        }
        for bad in [
            "61 * * * *",
            "5-1 * * * *",
            "*/0 * * * *",
            "* * * *",
            "0 0 L * *",
            "0 0 * * 1#2",
            "5/10 * * * *",
            "0 0 * * FRI-MON",
            " 0 0 * * *",
            "0  0 * * *",
            "0 0 * * mon",
            "* * * *,* *",
        ] {
            assert!(!p.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn names_and_lists_match_their_checks() {
        let name = re(&name());
        let token = re(&token_name());
        let env = re(&env_name());
        let long = "a".repeat(limits::MAX_NAME + 1);
        for s in [
            "a",
            "a.b:c/d-e_f",
            "",
            "a b",
            "é",
            "-x",
            ".x",
            long.as_str(),
        ] {
            assert_eq!(
                name.is_match(s),
                crate::rest::check_name("f", s).is_ok(),
                "{s}"
            );
            let t = crate::auth::check_token_name(s).is_ok();
            assert_eq!(token.is_match(s), t, "{s}");
            assert_eq!(env.is_match(s), crate::secret::is_env_name(s), "{s}");
        }
        let patterns = crate::events::event_patterns();
        let list = re(&comma_list(&patterns));
        for p in &patterns {
            assert!(crate::events::check_event_pattern(p).is_ok(), "{p}");
            assert!(list.is_match(p), "{p}");
        }
        for s in [
            "",
            " task.* , worker.lost",
            ",,",
            "task.queued,",
            "task.nope",
            "job.*",
            "**",
        ] {
            let parsed = crate::events::WebhookCreate {
                namespace: None,
                url: "https://example.com/".into(),
                events: vec![s.into()],
                secret: None,
            }
            .validate()
            .is_ok();
            assert_eq!(list.is_match(s), parsed, "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn selectors_of_the_pattern_parse(s in unanchored(&selector())) {
            prop_assert!(selector_ok(&s), "{:?}", s);
        }

        #[test]
        fn near_selectors_match_iff_they_parse(
            parts in proptest::collection::vec("[ !=,()a-c]|in|notin|\u{2003}|\t", 0..12),
        ) {
            let s: String = parts.concat();
            prop_assert_eq!(re(&selector()).is_match(&s), selector_ok(&s), "{:?}", s);
        }

        #[test]
        fn cron_expressions_of_the_pattern_parse(s in unanchored(&cron())) {
            prop_assert!(drover_core::schedule::parse_cron(&s).is_ok(), "{:?}", s);
        }

        #[test]
        fn names_of_the_patterns_pass_their_checks(
            n in unanchored(&name()),
            t in unanchored(&token_name()),
            e in unanchored(&env_name()),
        ) {
            prop_assert!(crate::rest::check_name("f", &n).is_ok());
            prop_assert!(crate::auth::check_token_name(&t).is_ok());
            prop_assert!(crate::secret::is_env_name(&e));
        }
    }
}
