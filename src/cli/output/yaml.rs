//! `--output yaml` as AWS CLI v2 prints it: its `YAMLFormatter` dumps the result with
//! ruamel.yaml's safe dumper (`YAML(typ='safe')`, `default_flow_style = False`), whose
//! emitter is libyaml's (ruamel.yaml.clib's `CEmitter`) and whose resolver is YAML 1.2's.
//! This module is that emitter, rule for rule, for JSON values:
//! - block style: mappings `Key: value`, two-space indents; a list under a key starts at
//!   the key's column (`- item`); empty lists and maps are flow (`[]`, `{}`);
//! - members sorted by name (the safe representer sorts dicts);
//! - a string is plain unless libyaml's scalar analysis forbids it (indicators, leading
//!   or trailing spaces, line breaks) or, read back plain, it would be another type under
//!   YAML 1.2 (`'true'`, `'12'`, `'2026-12-05T21:00:00Z'`, `''`): then single-quoted, or
//!   double-quoted with escapes when it holds characters libyaml will not print as is
//!   (tabs, control characters, characters past U+FFFF);
//! - plain and quoted scalars fold at spaces past column 80, as libyaml does;
//! - a plain scalar as the whole document is followed by the `...` end marker.
//!
//! `tests/cli_output.rs` compares it byte for byte with ruamel.yaml as the AWS CLI calls it.

use serde_json::{Map, Value};

use super::scalar::py_float;

/// libyaml's `best_indent` and `best_width`.
const INDENT: usize = 2;
const WIDTH: usize = 80;
/// libyaml's longest simple key, in bytes; a longer key is written `? key` / `: value`.
const SIMPLE_KEY_MAX: usize = 128;

/// The YAML document for `value`, as AWS CLI v2's `--output yaml` prints it; an empty
/// object prints nothing (operations without an answer), as its JSON does.
pub fn render(value: &Value) -> String {
    if value.as_object().is_some_and(Map::is_empty) {
        return String::new();
    }
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        whitespace: true,
        indention: true,
        open_ended: false,
        indent: None,
    };
    e.node(value, Context::Root);
    // Document end, then stream end.
    e.indent = None;
    e.write_indent();
    if e.open_ended {
        e.indicator("...", true, false, false);
        e.write_indent();
    }
    e.out
}

/// Where a node sits, as libyaml's `emit_node(root, sequence, mapping, simple_key)`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Root,
    SequenceItem,
    /// A mapping's value, or a key written as `? key`.
    Mapping,
    SimpleKey,
}

/// The state libyaml's emitter keeps while writing.
struct Emitter {
    out: String,
    column: usize,
    /// The last character written is whitespace (or nothing was written).
    whitespace: bool,
    /// Only indentation has been written on this line so far.
    indention: bool,
    /// A plain scalar was the whole document: it needs the `...` end marker.
    open_ended: bool,
    /// libyaml's `indent` (-1 as `None`).
    indent: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

impl Emitter {
    fn node(&mut self, value: &Value, ctx: Context) {
        match value {
            Value::Array(items) if !items.is_empty() => self.block_sequence(items, ctx),
            Value::Object(map) if !map.is_empty() => self.block_mapping(map),
            Value::Array(_) => self.flow_empty("[", "]"),
            Value::Object(_) => self.flow_empty("{", "}"),
            Value::String(s) => self.string(s, ctx),
            Value::Null => self.plain_scalar("null", ctx),
            Value::Bool(b) => self.plain_scalar(if *b { "true" } else { "false" }, ctx),
            Value::Number(n) => {
                let text = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => i.to_string(),
                    (_, Some(u), _) => u.to_string(),
                    (_, _, Some(f)) => yaml_float(f),
                    _ => n.to_string(),
                };
                self.plain_scalar(&text, ctx)
            }
        }
    }

    /// `increase_indent(flow, indentless)`; returns what to restore.
    fn increase_indent(&mut self, flow: bool, indentless: bool) -> Option<usize> {
        let saved = self.indent;
        self.indent = match self.indent {
            None => Some(if flow { INDENT } else { 0 }),
            Some(i) if !indentless => Some(i + INDENT),
            Some(i) => Some(i),
        };
        saved
    }

    fn block_sequence(&mut self, items: &[Value], ctx: Context) {
        let indentless = ctx == Context::Mapping && !self.indention;
        let saved = self.increase_indent(false, indentless);
        for item in items {
            self.write_indent();
            self.indicator("-", true, false, true);
            self.node(item, Context::SequenceItem);
        }
        self.indent = saved;
    }

    fn block_mapping(&mut self, map: &Map<String, Value>) {
        let saved = self.increase_indent(false, false);
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in members {
            self.write_indent();
            let analysis = Analysis::of(key);
            if !analysis.multiline && key.len() <= SIMPLE_KEY_MAX {
                self.string(key, Context::SimpleKey);
                self.indicator(":", false, false, false);
            } else {
                self.indicator("?", true, false, true);
                self.string(key, Context::Mapping);
                self.write_indent();
                self.indicator(":", true, false, true);
            }
            self.node(value, Context::Mapping);
        }
        self.indent = saved;
    }

    fn flow_empty(&mut self, open: &str, close: &str) {
        self.indicator(open, true, true, false);
        self.indicator(close, false, false, false);
    }

    /// A null, boolean or number: always plain (its text reads back as its type).
    fn plain_scalar(&mut self, text: &str, ctx: Context) {
        let saved = self.increase_indent(true, false);
        self.write_plain(text, ctx != Context::SimpleKey, ctx == Context::Root);
        self.indent = saved;
    }

    fn string(&mut self, s: &str, ctx: Context) {
        let analysis = Analysis::of(s);
        let simple_key = ctx == Context::SimpleKey;
        let mut style = Style::Plain;
        if !analysis.block_plain_allowed || !resolves_to_str(s) {
            style = Style::Single;
        }
        if s.is_empty() && simple_key {
            style = Style::Single;
        }
        if style == Style::Single && !analysis.single_quoted_allowed {
            style = Style::Double;
        }
        let saved = self.increase_indent(true, false);
        let breaks = !simple_key;
        match style {
            Style::Plain => self.write_plain(s, breaks, ctx == Context::Root),
            Style::Single => self.write_single_quoted(s, breaks),
            Style::Double => self.write_double_quoted(s, breaks),
        }
        self.indent = saved;
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn indicator(&mut self, text: &str, need_whitespace: bool, whitespace: bool, indention: bool) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in text.chars() {
            self.put(c);
        }
        self.whitespace = whitespace;
        self.indention = self.indention && indention;
        self.open_ended = false;
    }

    fn write_plain(&mut self, s: &str, allow_breaks: bool, root: bool) {
        if !self.whitespace && !s.is_empty() {
            self.put(' ');
        }
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks && !spaces && self.column > WIDTH && chars.get(i + 1) != Some(&' ')
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                // Line breaks never reach a plain scalar (the analysis forbids it).
                self.put(c);
                self.indention = false;
                spaces = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
        if root {
            self.open_ended = true;
        }
    }

    fn write_single_quoted(&mut self, s: &str, allow_breaks: bool) {
        self.indicator("'", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > WIDTH
                    && i != 0
                    && i + 1 != chars.len()
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                if c == '\n' {
                    self.put_break();
                } else {
                    self.out.push(c);
                    self.column = 0;
                }
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        if breaks {
            self.write_indent();
        }
        self.indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, s: &str, allow_breaks: bool) {
        self.indicator("\"", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !is_printable(c) || c == '\u{feff}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                let short = match c {
                    '\0' => Some('0'),
                    '\u{07}' => Some('a'),
                    '\u{08}' => Some('b'),
                    '\t' => Some('t'),
                    '\n' => Some('n'),
                    '\u{0b}' => Some('v'),
                    '\u{0c}' => Some('f'),
                    '\r' => Some('r'),
                    '\u{1b}' => Some('e'),
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '\u{85}' => Some('N'),
                    '\u{a0}' => Some('_'),
                    '\u{2028}' => Some('L'),
                    '\u{2029}' => Some('P'),
                    _ => None,
                };
                match short {
                    Some(e) => self.put(e),
                    None => {
                        let v = c as u32;
                        let escaped = if v <= 0xff {
                            format!("x{v:02X}")
                        } else if v <= 0xffff {
                            format!("u{v:04X}")
                        } else {
                            format!("U{v:08X}")
                        };
                        for e in escaped.chars() {
                            self.put(e);
                        }
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > WIDTH && i != 0 && i + 1 != chars.len()
                {
                    self.write_indent();
                    if chars.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }
}

/// Python's `repr(float).lower()`, as ruamel's safe representer writes a float.
fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        py_float(f).to_lowercase()
    }
}

/// libyaml's `IS_BREAK`.
fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// libyaml's `IS_BLANKZ` (the end of the string counts as one).
fn is_blankz(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => matches!(c, '\0' | ' ' | '\t') || is_break(c),
    }
}

/// libyaml's `IS_PRINTABLE`: what it writes as is with `allow_unicode` (ruamel's default).
/// Characters past U+FFFF are not: they are escaped.
fn is_printable(c: char) -> bool {
    let v = c as u32;
    v == 0x0a
        || (0x20..=0x7e).contains(&v)
        || (0xa0..=0xd7ff).contains(&v)
        || ((0xe000..=0xfffd).contains(&v) && v != 0xfeff)
}

/// What libyaml's `yaml_emitter_analyze_scalar` concludes (the parts block style uses).
struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
}

impl Analysis {
    fn of(s: &str) -> Analysis {
        if s.is_empty() {
            return Analysis {
                multiline: false,
                block_plain_allowed: true,
                single_quoted_allowed: true,
            };
        }
        let chars: Vec<char> = s.chars().collect();
        let mut block_indicators = s.starts_with("---") || s.starts_with("...");
        let mut special = false;
        let mut line_breaks = false;
        let (mut leading_space, mut leading_break) = (false, false);
        let (mut trailing_space, mut trailing_break) = (false, false);
        let (mut break_space, mut space_break) = (false, false);
        let (mut previous_space, mut previous_break) = (false, false);
        let mut preceded_by_whitespace = true;
        for (i, &c) in chars.iter().enumerate() {
            let followed_by_whitespace = is_blankz(chars.get(i + 1).copied());
            let first = i == 0;
            let last = i + 1 == chars.len();
            if first {
                if "#,[]{}&*!|>'\"%@`".contains(c) {
                    block_indicators = true;
                }
                if (c == '?' || c == ':' || c == '-') && followed_by_whitespace {
                    block_indicators = true;
                }
            } else {
                if c == ':' && followed_by_whitespace {
                    block_indicators = true;
                }
                if c == '#' && preceded_by_whitespace {
                    block_indicators = true;
                }
            }
            if !is_printable(c) {
                special = true;
            }
            if is_break(c) {
                line_breaks = true;
            }
            if c == ' ' {
                leading_space |= first;
                trailing_space |= last;
                break_space |= previous_break;
                previous_space = true;
                previous_break = false;
            } else if is_break(c) {
                leading_break |= first;
                trailing_break |= last;
                space_break |= previous_space;
                previous_space = false;
                previous_break = true;
            } else {
                previous_space = false;
                previous_break = false;
            }
            preceded_by_whitespace = is_blankz(Some(c));
        }
        let mut block_plain_allowed = true;
        let mut single_quoted_allowed = true;
        if leading_space || leading_break || trailing_space || trailing_break {
            block_plain_allowed = false;
        }
        if break_space {
            block_plain_allowed = false;
            single_quoted_allowed = false;
        }
        if space_break || special {
            block_plain_allowed = false;
            single_quoted_allowed = false;
        }
        if line_breaks || block_indicators {
            block_plain_allowed = false;
        }
        Analysis {
            multiline: line_breaks,
            block_plain_allowed,
            single_quoted_allowed,
        }
    }
}

/// Whether `s`, read back as a plain scalar, is a string under ruamel.yaml's YAML 1.2
/// implicit resolvers (bool, float, int, merge, null, timestamp, value, yaml); each is
/// only tried when the first character is one it can start with, as ruamel does.
fn resolves_to_str(s: &str) -> bool {
    let first = s.chars().next();
    let by_first = |set: &str| first.is_some_and(|c| set.contains(c));
    if s.is_empty() || matches!(s, "~" | "null" | "Null" | "NULL") {
        return false;
    }
    if by_first("tTfF") && matches!(s, "true" | "True" | "TRUE" | "false" | "False" | "FALSE") {
        return false;
    }
    if by_first("-+0123456789.") && is_float(s) {
        return false;
    }
    if by_first("-+0123456789") && is_int(s) {
        return false;
    }
    if by_first("0123456789") && is_timestamp(s) {
        return false;
    }
    !matches!(s, "<<" | "=" | "!" | "&" | "*")
}

/// Python's `$`: the end, or just before a final newline.
fn strip_final_newline(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

/// `[0-9_]*` etc.: the length of the longest prefix of `s` whose characters satisfy `f`.
fn run(s: &str, f: impl Fn(char) -> bool) -> usize {
    s.find(|c: char| !f(c)).unwrap_or(s.len())
}

fn digit_(c: char) -> bool {
    c.is_ascii_digit() || c == '_'
}

/// `[eE][-+]?[0-9]+` (sign required when `sign_required`), the whole of `s`.
fn is_exponent(s: &str, sign_required: bool) -> bool {
    let Some(rest) = s.strip_prefix(['e', 'E']) else {
        return false;
    };
    let digits = match rest.strip_prefix(['-', '+']) {
        Some(d) => d,
        None if sign_required => return false,
        None => rest,
    };
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

/// ruamel's 1.2 float: `[-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+]?[0-9]+)?`,
/// `[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+`, `[-+]?\.[0-9_]+([eE][-+][0-9]+)?`,
/// `[-+]?\.(inf|Inf|INF)`, `\.(nan|NaN|NAN)`.
fn is_float(s: &str) -> bool {
    let s = strip_final_newline(s);
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let body = strip_sign(s);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    if let Some(frac) = body.strip_prefix('.') {
        let n = run(frac, digit_);
        return n > 0 && (n == frac.len() || is_exponent(&frac[n..], true));
    }
    if !body.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let n = run(body, digit_);
    let rest = &body[n..];
    if let Some(frac) = rest.strip_prefix('.') {
        let m = run(frac, digit_);
        return m == frac.len() || is_exponent(&frac[m..], false);
    }
    is_exponent(rest, false)
}

/// ruamel's 1.2 int: `[-+]?0b[0-1_]+`, `[-+]?0o?[0-7_]+`, `[-+]?[0-9_]+`,
/// `[-+]?0x[0-9a-fA-F_]+`.
fn is_int(s: &str) -> bool {
    let body = strip_sign(strip_final_newline(s));
    let all = |t: &str, f: fn(char) -> bool| !t.is_empty() && t.chars().all(f);
    if let Some(b) = body.strip_prefix("0b") {
        if all(b, |c| matches!(c, '0' | '1' | '_')) {
            return true;
        }
    }
    if let Some(x) = body.strip_prefix("0x") {
        if all(x, |c| c.is_ascii_hexdigit() || c == '_') {
            return true;
        }
    }
    if let Some(o) = body.strip_prefix("0o") {
        if all(o, |c| matches!(c, '0'..='7' | '_')) {
            return true;
        }
    }
    all(body, digit_)
}

/// ruamel's timestamp: `YYYY-MM-DD`, or `YYYY-M?M-D?D([Tt]|[ \t]+)H?H:MM:SS(\.[0-9]*)?
/// ([ \t]*(Z|[-+]H?H(:MM)?))?`.
fn is_timestamp(s: &str) -> bool {
    let s = strip_final_newline(s);
    let b = s.as_bytes();
    let digits = |t: &[u8]| t.iter().all(u8::is_ascii_digit);
    if b.len() == 10
        && digits(&b[..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..10])
    {
        return true;
    }
    // The long form, one part at a time.
    let mut p = Cursor { b, i: 0 };
    p.digits(4, 4)
        && p.byte(b'-')
        && p.digits(1, 2)
        && p.byte(b'-')
        && p.digits(1, 2)
        && (p.byte(b'T') || p.byte(b't') || p.blanks(1))
        && p.digits(1, 2)
        && p.byte(b':')
        && p.digits(2, 2)
        && p.byte(b':')
        && p.digits(2, 2)
        && {
            if p.byte(b'.') {
                p.digits(0, usize::MAX);
            }
            true
        }
        && {
            let save = p.i;
            p.blanks(0);
            let zone = if p.byte(b'Z') {
                true
            } else if p.byte(b'-') || p.byte(b'+') {
                p.digits(1, 2) && {
                    let before = p.i;
                    if !(p.byte(b':') && p.digits(2, 2)) {
                        p.i = before;
                    }
                    true
                }
            } else {
                false
            };
            if !zone {
                p.i = save;
            }
            true
        }
        && p.i == b.len()
}

/// A byte cursor for [`is_timestamp`]; each step consumes on success only.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn byte(&mut self, want: u8) -> bool {
        if self.b.get(self.i) == Some(&want) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Greedy `[0-9]{min,max}`.
    fn digits(&mut self, min: usize, max: usize) -> bool {
        let n = self.b[self.i..]
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n < min {
            return false;
        }
        self.i += n;
        true
    }

    /// `[ \t]{min,}`.
    fn blanks(&mut self, min: usize) -> bool {
        let n = self.b[self.i..]
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        if n < min {
            return false;
        }
        self.i += n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_layout_as_the_aws_cli() {
        let v = json!({"Keys": [{"KeyId": "abc", "KeyArn": "arn:aws:kms:us-east-1:111:key/abc"}],
                       "Empty": {}, "L": [], "Nested": [[1, 2], {"a": null}], "B": true, "F": 1.5});
        assert_eq!(
            render(&v),
            "B: true\nEmpty: {}\nF: 1.5\nKeys:\n- KeyArn: arn:aws:kms:us-east-1:111:key/abc\n  KeyId: abc\nL: []\nNested:\n- - 1\n  - 2\n- a: null\n"
        );
        assert_eq!(render(&json!({})), "");
        assert_eq!(render(&json!("abc")), "abc\n...\n");
        assert_eq!(render(&json!("1")), "'1'\n");
        assert_eq!(render(&json!(null)), "null\n...\n");
        assert_eq!(render(&json!([])), "[]\n");
    }

    #[test]
    fn strings_are_quoted_only_when_plain_would_change_them() {
        let q = |s: &str| render(&json!({ "K": s }));
        assert_eq!(q("yes"), "K: yes\n"); // YAML 1.2: not a bool
        assert_eq!(q("True"), "K: 'True'\n");
        assert_eq!(q("12"), "K: '12'\n");
        assert_eq!(q("1e5"), "K: '1e5'\n");
        assert_eq!(q("0x1F"), "K: '0x1F'\n");
        assert_eq!(q("2026-12-05T21:00:00Z"), "K: '2026-12-05T21:00:00Z'\n");
        assert_eq!(q("2026-12-05"), "K: '2026-12-05'\n");
        assert_eq!(q(""), "K: ''\n");
        assert_eq!(q("a: b"), "K: 'a: b'\n");
        assert_eq!(q("a:b"), "K: a:b\n");
        assert_eq!(q("a #b"), "K: 'a #b'\n");
        assert_eq!(q("- a"), "K: '- a'\n");
        assert_eq!(q("it's"), "K: it's\n");
        assert_eq!(q("'x'"), "K: '''x'''\n");
        assert_eq!(q("a\tb"), "K: \"a\\tb\"\n");
        assert_eq!(q("é😀"), "K: \"é\\U0001F600\"\n");
        assert_eq!(q("a\nb"), "K: 'a\n\n  b'\n");
        let long = "word ".repeat(30);
        assert_eq!(
            q(&long),
            format!(
                "K: '{}\n  {}'\n",
                "word ".repeat(16).trim_end(),
                "word ".repeat(14)
            )
        );
    }
}
