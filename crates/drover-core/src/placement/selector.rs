//! Label selectors: `k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (absent),
//! comma separated at top level (commas inside parentheses belong to the set).
//!
//! Semantics follow Kubernetes: `k!=v` and `k notin (..)` also match a worker without `k`.
//! `Display` prints the canonical text, and parsing it gives back an equal selector.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One condition on a worker's labels.
#[derive(Clone, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Requirement {
    /// `k=v`
    Eq(String, String),
    /// `k!=v` (also true when `k` is absent)
    NotEq(String, String),
    /// `k in (a,b)`
    In(String, Vec<String>),
    /// `k notin (a,b)` (also true when `k` is absent)
    NotIn(String, Vec<String>),
    /// `k`
    Exists(String),
    /// `!k`
    Absent(String),
}

impl Requirement {
    pub fn key(&self) -> &str {
        match self {
            Requirement::Eq(k, _)
            | Requirement::NotEq(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::Absent(k) => k,
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(self.key());
        match self {
            Requirement::Eq(_, v) => got == Some(v),
            Requirement::NotEq(_, v) => got != Some(v),
            Requirement::In(_, set) => got.is_some_and(|g| set.contains(g)),
            Requirement::NotIn(_, set) => !got.is_some_and(|g| set.contains(g)),
            Requirement::Exists(_) => got.is_some(),
            Requirement::Absent(_) => got.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Eq(k, v) => write!(f, "{k}={v}"),
            Requirement::NotEq(k, v) => write!(f, "{k}!={v}"),
            Requirement::In(k, set) => write!(f, "{k} in ({})", set.join(",")),
            Requirement::NotIn(k, set) => write!(f, "{k} notin ({})", set.join(",")),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::Absent(k) => write!(f, "!{k}"),
        }
    }
}

/// All requirements must hold. The empty selector matches every worker.
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash, PartialOrd, Ord)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    /// The first requirement `labels` fails, by index.
    pub fn first_failure(&self, labels: &BTreeMap<String, String>) -> Option<usize> {
        self.0.iter().position(|r| !r.matches(labels))
    }

    /// Equality requirements from today's `TaskDef::label_selector`.
    pub fn from_equalities(m: &BTreeMap<String, String>) -> Self {
        Selector(
            m.iter()
                .map(|(k, v)| Requirement::Eq(k.clone(), v.clone()))
                .collect(),
        )
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            r.fmt(f)?;
        }
        Ok(())
    }
}

/// Why a selector did not parse: which requirement, and what is wrong with it.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("label selector: requirement {index} `{text}`: {message}")]
pub struct SelectorError {
    /// 1-based position of the requirement in the list.
    pub index: usize,
    pub text: String,
    pub message: String,
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut reqs = Vec::new();
        let s = s.trim();
        if s.is_empty() {
            return Ok(Selector::default());
        }
        for (i, part) in split_top_level(s).into_iter().enumerate() {
            let err = |message: String| SelectorError {
                index: i + 1,
                text: part.trim().to_string(),
                message,
            };
            reqs.push(parse_requirement(part.trim()).map_err(err)?);
        }
        Ok(Selector(reqs))
    }
}

impl FromStr for Requirement {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_requirement(s.trim()).map_err(|message| SelectorError {
            index: 1,
            text: s.trim().to_string(),
            message,
        })
    }
}

/// Splits on commas outside parentheses. Unbalanced parentheses are left for the
/// requirement parser to report.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
                depth = 0;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

fn check_name(what: &str, s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(format!("empty {what}"));
    }
    if let Some(c) = s.chars().find(|&c| !is_name_char(c)) {
        return Err(format!(
            "{what} '{s}' has the character '{c}' (allowed: letters, digits, '.', '_', '-', '/')"
        ));
    }
    Ok(s.to_string())
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .ok_or_else(|| format!("expected '(' to open the set, found '{rest}'"))?;
    let inner = inner
        .strip_suffix(')')
        .ok_or_else(|| "missing ')' to close the set".to_string())?;
    if inner.contains('(') || inner.contains(')') {
        return Err("nested parentheses in a set".into());
    }
    let mut out = Vec::new();
    for v in inner.split(',').map(str::trim) {
        let v = check_name("set value", v)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn parse_requirement(s: &str) -> Result<Requirement, String> {
    if s.is_empty() {
        return Err("empty requirement (two commas in a row, or a trailing comma?)".into());
    }
    if let Some(k) = s.strip_prefix('!') {
        if k.contains('=') {
            return Err("'!' before a key means \"absent\"; for inequality write k!=v".into());
        }
        return Ok(Requirement::Absent(check_name("key", k.trim())?));
    }
    if let Some((k, v)) = s.split_once("!=") {
        return Ok(Requirement::NotEq(
            check_name("key", k.trim())?,
            check_name("value", v.trim())?,
        ));
    }
    if let Some((k, v)) = s.split_once('=') {
        let v = v.strip_prefix('=').unwrap_or(v);
        return Ok(Requirement::Eq(
            check_name("key", k.trim())?,
            check_name("value", v.trim())?,
        ));
    }
    // `k in (..)`, `k notin (..)` or a bare key.
    let key_end = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
    let (k, rest) = (&s[..key_end], s[key_end..].trim_start());
    if rest.is_empty() {
        return Ok(Requirement::Exists(check_name("key", k)?));
    }
    let k = check_name("key", k)?;
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(k, parse_set(set)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(Requirement::In(k, parse_set(set)?));
    }
    Err(format!(
        "expected one of `{k}=v`, `{k}!=v`, `{k} in (a,b)`, `{k} notin (a,b)`, `{k}` or `!{k}` after the key, found '{rest}'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_form_and_round_trips() {
        let s: Selector = "zone=a, tier != gold ,region in (eu, us),env notin (dev),gpu,!spot"
            .parse()
            .unwrap();
        assert_eq!(
            s.0,
            vec![
                Requirement::Eq("zone".into(), "a".into()),
                Requirement::NotEq("tier".into(), "gold".into()),
                Requirement::In("region".into(), vec!["eu".into(), "us".into()]),
                Requirement::NotIn("env".into(), vec!["dev".into()]),
                Requirement::Exists("gpu".into()),
                Requirement::Absent("spot".into()),
            ]
        );
        let text = s.to_string();
        assert_eq!(
            text,
            "zone=a,tier!=gold,region in (eu,us),env notin (dev),gpu,!spot"
        );
        assert_eq!(text.parse::<Selector>().unwrap(), s);
        assert_eq!("".parse::<Selector>().unwrap(), Selector::default());
    }

    #[test]
    fn matches_like_kubernetes() {
        let w = labels(&[("zone", "a"), ("gpu", "1")]);
        let m = |s: &str| s.parse::<Selector>().unwrap().matches(&w);
        assert!(m("zone=a"));
        assert!(!m("zone=b"));
        assert!(m("zone!=b"));
        assert!(m("tier!=gold"), "!= matches an absent key");
        assert!(m("zone in (a,b)"));
        assert!(!m("tier in (a,b)"));
        assert!(m("tier notin (a)"), "notin matches an absent key");
        assert!(!m("zone notin (a)"));
        assert!(m("gpu"));
        assert!(!m("spot"));
        assert!(m("!spot"));
        assert!(!m("!gpu"));
        assert!(m("zone=a,gpu,!spot"));
    }

    #[test]
    fn errors_name_the_requirement_and_the_problem() {
        let e = "zone=a,region in (eu,us".parse::<Selector>().unwrap_err();
        assert_eq!(e.index, 2);
        assert!(e.to_string().contains("missing ')'"), "{e}");
        let e = "zone=a,,x".parse::<Selector>().unwrap_err();
        assert!(e.message.contains("empty requirement"), "{e}");
        let e = "zone=".parse::<Selector>().unwrap_err();
        assert!(e.message.contains("empty value"), "{e}");
        let e = "zone within (a)".parse::<Selector>().unwrap_err();
        assert!(e.message.contains("expected one of"), "{e}");
        let e = "zo ne=a".parse::<Selector>().unwrap_err();
        assert!(e.message.contains("' '"), "{e}");
        let e = "!a=b".parse::<Selector>().unwrap_err();
        assert!(e.message.contains("absent"), "{e}");
    }
}
