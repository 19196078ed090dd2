//! `--output table`: awscli's `TableFormatter` and `table.py`, rule for rule.
//!
//! The result becomes sections: the first titled with the operation name; an object's
//! scalar members are one row under a header of their names (or a `name | value` row
//! when there is one); a list of objects is one header and a row per object; each
//! list or object member opens a section of its own, titled with its name and indented
//! one level. Column widths are scaled to the widest section; when that is wider than
//! the terminal, single-row sections turn vertical. Values and borders are coloured as
//! awscli's `ColorizedStyler` when asked.

use serde_json::{Map, Value};
use unicode_width::UnicodeWidthChar;

use super::scalar::py_str;
use super::Terminal;

/// The table layout of `value`, the result of `operation`.
pub fn render(operation: &str, value: &Value, term: &Terminal) -> String {
    let mut table = MultiTable::default();
    if !table.build(Some(operation), value, 0) {
        return String::new();
    }
    table.render(term)
}

/// Python's `get_text_length`: East Asian wide, full-width and ambiguous characters
/// take two columns.
fn text_length(s: &str) -> usize {
    s.chars().map(|c| c.width_cjk().unwrap_or(1).max(1)).sum()
}

/// Python truthiness: what awscli skips (`if not current`).
fn falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !v.is_array() && !v.is_object()
}

#[derive(Debug, Default)]
struct Section {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    indent: usize,
    num_cols: Option<usize>,
    max_widths: Vec<usize>,
}

impl Section {
    fn titled(title: &str, indent: usize) -> Section {
        Section {
            title: title.to_string(),
            indent,
            ..Default::default()
        }
    }

    fn add_header(&mut self, headers: Vec<String>) {
        self.update_max_widths(&headers);
        self.num_cols.get_or_insert(headers.len());
        self.headers = headers;
    }

    fn add_row(&mut self, mut row: Vec<String>) {
        let n = *self.num_cols.get_or_insert(row.len());
        // awscli raises on a ragged row (a list mixing lengths); keep the cells we can.
        row.resize(n, String::new());
        self.update_max_widths(&row);
        self.rows.push(row);
    }

    fn update_max_widths(&mut self, row: &[String]) {
        if self.max_widths.is_empty() {
            self.max_widths = row.iter().map(|c| text_length(c)).collect();
        } else {
            for (w, c) in self.max_widths.iter_mut().zip(row) {
                *w = (*w).max(text_length(c));
            }
        }
    }

    /// Column widths with `padding`, scaled to add up to `max_width` if given.
    fn column_widths(&self, padding: usize, max_width: Option<usize>) -> Vec<usize> {
        let unscaled: Vec<usize> = self.max_widths.iter().map(|w| w + padding).collect();
        let (Some(max_width), false) = (max_width, unscaled.is_empty()) else {
            return unscaled;
        };
        let total: usize = unscaled.iter().sum();
        let scale = max_width as f64 / total as f64;
        let mut scaled: Vec<i64> = unscaled
            .iter()
            .map(|&w| (scale * w as f64).round_ties_even() as i64)
            .collect();
        let mut off_by = scaled.iter().sum::<i64>() - max_width as i64;
        while off_by != 0 {
            let order: Vec<usize> = if off_by < 0 {
                (0..scaled.len()).rev().collect()
            } else {
                (0..scaled.len()).collect()
            };
            for i in order {
                if off_by > 0 {
                    scaled[i] -= 1;
                    off_by -= 1;
                } else {
                    scaled[i] += 1;
                    off_by += 1;
                }
                if off_by == 0 {
                    break;
                }
            }
        }
        scaled.into_iter().map(|w| w.max(0) as usize).collect()
    }

    fn total_width(&self, padding: usize, outer: usize) -> usize {
        let border = 2;
        let total: usize = self
            .column_widths(0, None)
            .iter()
            .map(|w| w + padding)
            .sum::<usize>()
            + border
            + 2 * outer;
        total.max(text_length(&self.title) + border + 2 * outer)
    }
}

#[derive(Debug, Default)]
struct MultiTable {
    sections: Vec<Section>,
}

impl MultiTable {
    fn new_section(&mut self, title: &str, indent: usize) {
        self.sections.push(Section::titled(title, indent));
    }

    fn current(&mut self) -> &mut Section {
        if self.sections.is_empty() {
            self.sections.push(Section::default());
        }
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    /// awscli's `_build_table`: false when there is nothing to show.
    fn build(&mut self, title: Option<&str>, current: &Value, indent: usize) -> bool {
        if falsy(current) {
            return false;
        }
        if let Some(t) = title {
            self.new_section(t, indent);
        }
        match current {
            Value::Array(items) => {
                if items.first().is_some_and(Value::is_object) {
                    self.list_rows(items, indent, title.unwrap_or(""));
                } else {
                    for item in items {
                        match item {
                            Value::Array(a) if a.iter().all(is_scalar) => {
                                self.current().add_row(a.iter().map(py_str).collect())
                            }
                            // Python iterates a dict's keys, all strings.
                            Value::Object(m) => self.current().add_row(m.keys().cloned().collect()),
                            Value::Array(_) => {
                                self.build(None, item, 0);
                            }
                            scalar => self.current().add_row(vec![py_str(scalar)]),
                        }
                    }
                }
            }
            Value::Object(m) => self.dict_rows(m, indent),
            _ => {}
        }
        true
    }

    fn dict_rows(&mut self, m: &Map<String, Value>, indent: usize) {
        let (headers, more) = group_scalar_keys(m);
        if headers.len() == 1 {
            let h = &headers[0];
            self.current().add_row(vec![h.clone(), py_str(&m[h])]);
        } else if !headers.is_empty() {
            let row = headers.iter().map(|h| py_str(&m[h])).collect();
            self.current().add_header(headers);
            self.current().add_row(row);
        }
        for name in more {
            self.build(Some(&name), &m[&name], indent + 1);
        }
    }

    fn list_rows(&mut self, items: &[Value], indent: usize, title: &str) {
        let empty = Map::new();
        let mut headers = Vec::new();
        let mut more = Vec::new();
        for m in items.iter().map(|i| i.as_object().unwrap_or(&empty)) {
            let (h, n) = group_scalar_keys(m);
            headers.extend(h);
            more.extend(n);
        }
        headers.sort();
        headers.dedup();
        more.sort();
        more.dedup();
        self.current().add_header(headers.clone());
        for (i, m) in items
            .iter()
            .map(|i| i.as_object().unwrap_or(&empty))
            .enumerate()
        {
            if i > 0 && !more.is_empty() {
                self.new_section(title, indent);
                self.current().add_header(headers.clone());
            }
            let row = headers
                .iter()
                .map(|h| m.get(h).map(py_str).unwrap_or_default())
                .collect();
            self.current().add_row(row);
            for name in &more {
                if let Some(v) = m.get(name) {
                    self.build(Some(name), v, indent + 1);
                }
            }
        }
    }

    fn render(mut self, term: &Terminal) -> String {
        let mut max_width = self.max_width();
        if max_width > term.width {
            self.make_vertical();
            max_width = self.max_width();
        }
        let mut out = "-".repeat(max_width);
        out.push('\n');
        for s in &self.sections {
            render_section(s, max_width, term.color, &mut out);
        }
        out
    }

    fn max_width(&self) -> usize {
        self.sections
            .iter()
            .map(|s| s.total_width(4, s.indent))
            .max()
            .unwrap_or(0)
    }

    /// awscli's `convert_to_vertical_table`: a one-row section becomes
    /// `header | value` rows.
    fn make_vertical(&mut self) {
        for s in &mut self.sections {
            if s.rows.len() == 1 && !s.headers.is_empty() {
                let mut v = Section::titled(&s.title, s.indent);
                for (h, e) in s.headers.iter().zip(&s.rows[0]) {
                    v.add_row(vec![h.clone(), e.clone()]);
                }
                *s = v;
            }
        }
    }
}

/// A dict's member names: scalars (the header) and the others, each sorted.
fn group_scalar_keys(m: &Map<String, Value>) -> (Vec<String>, Vec<String>) {
    let (mut headers, mut more): (Vec<String>, Vec<String>) =
        m.keys().cloned().partition(|k| is_scalar(&m[k]));
    headers.sort();
    more.sort();
    (headers, more)
}

const BRIGHT_BLUE: &str = "\x1b[1m\x1b[34m";
const DIM_YELLOW: &str = "\x1b[2m\x1b[33m";
const RESET: &str = "\x1b[0m";

fn render_section(s: &Section, max_width: usize, color: bool, out: &mut String) {
    let edge = if color {
        format!("{DIM_YELLOW}|{RESET}")
    } else {
        "|".to_string()
    };
    let indent = edge.repeat(s.indent);
    // awscli's IndentedStream: every line framed by one `|` per level on each side.
    let mut line = |text: &str| {
        out.push_str(&indent);
        out.push_str(text);
        out.push_str(&indent);
        out.push('\n');
    };
    let max_width = max_width.saturating_sub(s.indent * 2);
    if !s.title.is_empty() {
        line(&center(&s.title, max_width, "|", "|"));
        if s.headers.is_empty() && s.rows.is_empty() {
            line(&format!("+{}+", "-".repeat(max_width.saturating_sub(2))));
        }
    }
    if !s.headers.is_empty() {
        let widths = s.column_widths(4, Some(max_width));
        line(&line_break(&widths));
        let mut titles = String::new();
        for (i, (w, h)) in widths.iter().zip(&s.headers).enumerate() {
            titles.push_str(&center(h, *w, if i == 0 { "|" } else { "" }, "|"));
        }
        line(&titles);
    }
    if s.rows.is_empty() {
        return;
    }
    let widths = s.column_widths(4, Some(max_width));
    if widths.is_empty() {
        return;
    }
    line(&line_break(&widths));
    for row in &s.rows {
        let mut cells = String::new();
        for (i, (w, e)) in widths.iter().zip(row).enumerate() {
            cells.push_str(&align_left(e, *w, if i == 0 { "|" } else { "" }, color));
        }
        line(&cells);
    }
    line(&line_break(&widths));
}

/// `+-----+-----+`
fn line_break(widths: &[usize]) -> String {
    let mut s = String::new();
    for (i, w) in widths.iter().enumerate() {
        if i == 0 {
            s.push_str(&format!("+{}+", "-".repeat(w.saturating_sub(2))));
        } else {
            s.push_str(&format!("{}+", "-".repeat(w.saturating_sub(1))));
        }
    }
    s
}

/// `' ' * n` in Python: nothing when n is negative.
fn spaces(n: i64) -> String {
    " ".repeat(usize::try_from(n).unwrap_or(0))
}

/// awscli's `center_text`.
fn center(text: &str, length: usize, left: &str, right: &str) -> String {
    let (length, tl) = (length as i64, text_length(text) as i64);
    let start = length / 2 - tl / 2 - 1;
    let so_far = left.len() as i64 + start + tl;
    format!(
        "{left}{}{text}{}{right}",
        spaces(start),
        spaces(length - right.len() as i64 - so_far)
    )
}

/// awscli's `align_left` with a `|` column separator.
fn align_left(text: &str, length: usize, left: &str, color: bool) -> String {
    let (length, tl) = (length as i64, text_length(text) as i64);
    let right = "|";
    let padding = if length - (tl + 2 + left.len() as i64 + 1) >= 0 {
        2
    } else {
        0
    };
    let styled = if color {
        format!("{BRIGHT_BLUE}{text}{RESET}")
    } else {
        text.to_string()
    };
    format!(
        "{left}{}{styled}{}{right}",
        spaces(padding),
        spaces(length - (left.len() as i64 + padding + tl) - 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_of_objects_is_one_header_and_a_row_each() {
        let v = json!({"Keys": [{"KeyId": "k1", "KeyArn": "arn:1"}, {"KeyId": "k2", "KeyArn": "arn:2"}]});
        let t = render("ListKeys", &v, &Terminal::plain());
        assert_eq!(
            t,
            "\
-----------------------
|      ListKeys       |
+---------------------+
||       Keys        ||
|+---------+---------+|
|| KeyArn  |  KeyId  ||
|+---------+---------+|
||  arn:1  |  k1     ||
||  arn:2  |  k2     ||
|+---------+---------+|
"
        );
    }

    #[test]
    fn nothing_to_show_prints_nothing_and_scalars_get_a_title() {
        assert_eq!(render("Op", &json!({}), &Terminal::plain()), "");
        assert_eq!(render("Op", &json!(null), &Terminal::plain()), "");
        assert_eq!(
            render("GetX", &json!("v"), &Terminal::plain()),
            "------\n|GetX|\n+----+\n"
        );
    }

    #[test]
    fn python_rounding_is_half_to_even() {
        let mut s = Section::default();
        s.add_row(vec!["ab".into(), "abcdef".into()]);
        // 6 and 10 scaled to 20: 7.5 -> 8 and 12.5 -> 12 (ties to even).
        assert_eq!(s.column_widths(4, Some(20)), vec![8, 12]);
    }
}
