//! Just enough of PromQL to check the dashboard and the alert rules without
//! Prometheus: the metric names an expression reads, whether its brackets balance,
//! and whether a text is a Prometheus duration. A hand-written lexer, not a parser:
//! it skips string literals, label matchers `{...}`, ranges `[...]`, Grafana
//! `$variables`, numbers and comments, and takes every other identifier that is not
//! a keyword, an aggregation operator or a function call for a metric name.

/// Keywords that are never metric names (PromQL matches them case-insensitively),
/// aggregation operators included: they may be followed by `by (...)` rather than
/// by their `(`.
const KEYWORDS: [&str; 24] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "start",
    "end",
];

/// Keywords followed by a list of label names in parentheses (optional for the
/// `group_*` modifiers).
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` reads, in order of appearance (repeats kept).
pub fn metric_names(expr: &str) -> Result<Vec<String>, String> {
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        at = match byte {
            b'#' => line_end(bytes, at),
            b'"' | b'\'' | b'`' => string_end(bytes, at)?,
            b'{' => block_end(bytes, at, b'}')?,
            b'[' => block_end(bytes, at, b']')?,
            b'$' => variable_end(bytes, at),
            b'0'..=b'9' => number_end(bytes, at),
            b'.' if bytes.get(at + 1).is_some_and(u8::is_ascii_digit) => number_end(bytes, at),
            _ if starts_identifier(byte) => {
                let end = identifier_end(bytes, at);
                let word = &expr[at..end];
                let lower = word.to_ascii_lowercase();
                let next = skip_spaces(bytes, end);
                let opens = bytes.get(next) == Some(&b'(');
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if opens {
                        block_end(bytes, next, b')')?
                    } else {
                        end
                    }
                } else {
                    if !opens && !KEYWORDS.contains(&lower.as_str()) {
                        names.push(word.to_owned());
                    }
                    end
                }
            }
            _ => at + 1,
        };
    }
    Ok(names)
}

/// Whether every `(`, `[` and `{` of `expr` closes, in order, outside strings and
/// comments.
pub fn balanced(expr: &str) -> Result<(), String> {
    let bytes = expr.as_bytes();
    let mut open = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'#' => at = line_end(bytes, at),
            b'"' | b'\'' | b'`' => at = string_end(bytes, at)?,
            byte @ (b'(' | b'[' | b'{') => {
                open.push((byte, at));
                at += 1;
            }
            byte @ (b')' | b']' | b'}') => {
                let expected = match open.pop() {
                    Some((b'(', _)) => b')',
                    Some((b'[', _)) => b']',
                    Some(_) => b'}',
                    None => return Err(format!("`{}` at {at} closes nothing", byte as char)),
                };
                if byte != expected {
                    return Err(format!(
                        "`{}` at {at} where `{}` was expected",
                        byte as char, expected as char
                    ));
                }
                at += 1;
            }
            _ => at += 1,
        }
    }
    match open.pop() {
        Some((byte, at)) => Err(format!("`{}` at {at} is never closed", byte as char)),
        None => Ok(()),
    }
}

/// Whether `text` is a Prometheus duration: `0`, or numbers with units from
/// `y w d h m s ms`, each unit at most once and in that order (`1h30m`).
pub fn is_duration(text: &str) -> bool {
    const UNITS: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    if text == "0" {
        return true;
    }
    let mut rest = text;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        // "ms" before "m", so that `5ms` is not read as minutes.
        let unit = (next_unit..UNITS.len())
            .filter(|&u| rest.starts_with(UNITS[u]))
            .max_by_key(|&u| UNITS[u].len());
        let Some(unit) = unit else {
            return false;
        };
        rest = &rest[UNITS[unit].len()..];
        next_unit = unit + 1;
    }
    !text.is_empty()
}

fn starts_identifier(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b':'
}

fn identifier_end(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while at < bytes.len() && (starts_identifier(bytes[at]) || bytes[at].is_ascii_digit()) {
        at += 1;
    }
    at
}

fn skip_spaces(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while at < bytes.len() && bytes[at].is_ascii_whitespace() {
        at += 1;
    }
    at
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |offset| from + offset + 1)
}

/// Past the string literal opening at `from`: `"` and `'` take backslash escapes,
/// a backtick string does not.
fn string_end(bytes: &[u8], from: usize) -> Result<usize, String> {
    let quote = bytes[from];
    let mut at = from + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if quote != b'`' => at += 2,
            byte if byte == quote => return Ok(at + 1),
            _ => at += 1,
        }
    }
    Err(format!("the string opened at {from} is never closed"))
}

/// Past the `close` that ends the block opening at `from`, skipping strings inside
/// it (a matcher's value may hold any bracket).
fn block_end(bytes: &[u8], from: usize, close: u8) -> Result<usize, String> {
    let mut at = from + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'"' | b'\'' | b'`' => at = string_end(bytes, at)?,
            byte if byte == close => return Ok(at + 1),
            _ => at += 1,
        }
    }
    Err(format!(
        "`{}` at {from} is never closed",
        bytes[from] as char
    ))
}

/// Past a Grafana variable: `$name`, `$__name` or `${name}`.
fn variable_end(bytes: &[u8], from: usize) -> usize {
    if bytes.get(from + 1) == Some(&b'{') {
        return bytes[from..]
            .iter()
            .position(|&b| b == b'}')
            .map_or(bytes.len(), |offset| from + offset + 1);
    }
    identifier_end(bytes, from + 1)
}

/// Past a number or a duration: `86400`, `0.9`, `1e3`, `1e-3`, `0x1f`, `5m`.
fn number_end(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while at < bytes.len() {
        match bytes[at] {
            b'e' | b'E' if matches!(bytes.get(at + 1), Some(b'+' | b'-')) => at += 2,
            byte if byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'_' => at += 1,
            _ => break,
        }
    }
    at
}
