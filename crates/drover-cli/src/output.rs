//! Text and JSON output: `-o text` (tables for people) or `-o json` (one document for scripts).

use std::io::Write;

use drover_client::{SpecView, TaskView};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Prints a value as pretty JSON and a newline.
pub fn json<T: Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    let mut buf = serde_json::to_vec_pretty(v)?;
    buf.push(b'\n');
    write_out(&buf)
}

/// Prints a value as one compact JSON line (for streams of changes).
pub fn json_line<T: Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    let mut buf = serde_json::to_vec(v)?;
    buf.push(b'\n');
    write_out(&buf)
}

/// Prints text as is to stdout.
pub fn text(s: &str) -> anyhow::Result<()> {
    write_out(s.as_bytes())
}

/// Writes to stdout; a closed pipe surfaces as an `io::Error` (main exits quietly on it).
fn write_out(b: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b)?;
    out.flush()?;
    Ok(())
}

/// Writes text as is to stderr.
pub fn text_err(s: &str) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_all(s.as_bytes())?;
    err.flush()?;
    Ok(())
}

/// A table with a header row, columns padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for r in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(n) {
                if i + 1 == n {
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    let pad = width[i] - c.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `2025-01-02T03:04:05.123456Z` as `2025-01-02 03:04:05`.
pub fn short_time(t: &str) -> String {
    match t.get(..19) {
        Some(s) if t.len() > 19 => s.replacen('T', " ", 1),
        _ => t.to_string(),
    }
}

pub fn opt_time(t: &Option<String>) -> String {
    t.as_deref().map(short_time).unwrap_or_else(|| "-".into())
}

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into())
}

/// What a task runs, as a shell-like line (quoted where needed), cut to `max` characters.
pub fn command(t: &TaskView, max: usize) -> String {
    let s = match &t.spec {
        SpecView::Exec { argv, .. } => argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
        SpecView::Noop => "(noop)".into(),
        SpecView::Handler => match &t.payload {
            Some(p) => format!("{}({p})", t.kind),
            None => format!("{}(…)", t.kind),
        },
    };
    cut(&s, max)
}

/// Shortens to `max` characters with an ellipsis.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Single-quotes an argument when a shell would split or expand it; escapes control characters.
pub fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        return a.to_string();
    }
    if a.chars().any(char::is_control) {
        // $'...' form, so newlines and tabs stay visible on one line.
        let mut s = String::from("$'");
        for c in a.chars() {
            match c {
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\'' => s.push_str("\\'"),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('\'');
        return s;
    }
    format!("'{}'", a.replace('\'', r"'\''"))
}

/// `a=1,b=2`, or `-` for none.
pub fn map<V: std::fmt::Display>(m: &std::collections::BTreeMap<String, V>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(vec!["ID", "STATE", "CMD"]);
        t.row(vec!["1".into(), "queued".into(), "echo hi".into()]);
        t.row(vec!["22".into(), "ok".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "ID  STATE   CMD\n1   queued  echo hi\n22  ok      -\n"
        );
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(quote("echo"), "echo");
        assert_eq!(quote("two words"), "'two words'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("a\nb"), r"$'a\nb'");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }

    #[test]
    fn times_shorten() {
        assert_eq!(
            short_time("2025-01-02T03:04:05.123456Z"),
            "2025-01-02 03:04:05"
        );
        assert_eq!(short_time("weird"), "weird");
    }
}
