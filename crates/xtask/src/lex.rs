//! A light lexer: enough of Rust's comments and literals to see code structure. Braces, `fn`
//! or `std::fs` inside a string or comment must not count; nothing finer is needed.

/// `src` with every comment and string/char literal replaced by spaces (newlines kept), so
/// byte offsets and line numbers stay those of `src`.
pub fn code_only(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < chars.len() {
        match literal_end(&chars, i) {
            Some(end) => {
                for &c in &chars[i..end] {
                    let blank = if c == '\n' {
                        "\n"
                    } else {
                        &"    "[..c.len_utf8()]
                    };
                    out.push_str(blank);
                }
                i = end;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// If a comment or literal starts at `i`, the index just past it.
fn literal_end(s: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| s.get(k).copied();
    let after_ident = i > 0 && at(i - 1).is_some_and(is_ident);
    match (at(i)?, at(i + 1)) {
        ('/', Some('/')) => Some(find(s, i, |c| c == '\n').unwrap_or(s.len())),
        ('/', Some('*')) => Some(block_comment_end(s, i)),
        ('"', _) => Some(quoted_end(s, i + 1, '"')),
        ('b', Some('"')) if !after_ident => Some(quoted_end(s, i + 2, '"')),
        ('b', Some('\'')) if !after_ident => Some(quoted_end(s, i + 2, '\'')),
        ('r', Some('"' | '#')) if !after_ident => raw_end(s, i + 1),
        ('b', Some('r')) if !after_ident && matches!(at(i + 2), Some('"' | '#')) => {
            raw_end(s, i + 2)
        }
        // `'x'` and `'\n'` are chars; `'a` (no closing quote right after) is a lifetime.
        ('\'', Some('\\')) => Some(quoted_end(s, i + 1, '\'')),
        ('\'', Some(_)) if at(i + 2) == Some('\'') => Some(i + 3),
        _ => None,
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn find(s: &[char], from: usize, pred: impl Fn(char) -> bool) -> Option<usize> {
    (from..s.len()).find(|&k| pred(s[k]))
}

/// Block comments nest in Rust.
fn block_comment_end(s: &[char], start: usize) -> usize {
    let (mut depth, mut k) = (0, start);
    while k + 1 < s.len() {
        match (s[k], s[k + 1]) {
            ('/', '*') => (depth, k) = (depth + 1, k + 2),
            ('*', '/') => {
                (depth, k) = (depth - 1, k + 2);
                if depth == 0 {
                    return k;
                }
            }
            _ => k += 1,
        }
    }
    s.len()
}

/// From just after the opening quote to just past the closing `close`, skipping escapes.
fn quoted_end(s: &[char], mut k: usize, close: char) -> usize {
    while k < s.len() {
        match s[k] {
            '\\' => k += 2,
            c if c == close => return k + 1,
            _ => k += 1,
        }
    }
    s.len()
}

/// `r#"…"#` starting at the first `#` or `"` (index `k`); `None` if it is not a raw string.
fn raw_end(s: &[char], mut k: usize) -> Option<usize> {
    let hashes = (k..s.len()).take_while(|&j| s[j] == '#').count();
    k += hashes;
    if s.get(k).copied() != Some('"') {
        return None;
    }
    k += 1;
    while k < s.len() {
        let closes = s[k] == '"' && (1..=hashes).all(|h| s.get(k + h).copied() == Some('#'));
        if closes {
            return Some(k + 1 + hashes);
        }
        k += 1;
    }
    Some(s.len())
}

#[cfg(test)]
mod tests {
    use super::code_only;

    #[test]
    fn blanks_literals_and_comments_but_keeps_lines() {
        let src = "let a = \"{ \\\" }\"; // }\nlet b = '{'; /* { /* } */ } */ let c = r#\"}\"#;\n";
        let code = code_only(src);
        assert_eq!(code.len(), src.len());
        assert_eq!(code.lines().count(), 2);
        assert!(!code.contains('{') && !code.contains('}'), "{code}");
        assert!(code.contains("let c ="));
    }

    #[test]
    fn lifetimes_are_code() {
        let code = code_only("fn f<'a>(x: &'a str) -> &'a str { x }");
        assert_eq!(code, "fn f<'a>(x: &'a str) -> &'a str { x }");
    }

    #[test]
    fn escaped_chars_and_byte_strings() {
        let code = code_only("let q = '\\''; let b = b\"}\"; let br = br\"{\"; x");
        assert!(!code.contains('{') && !code.contains('}'), "{code}");
        assert!(code.ends_with(" x"));
    }
}
