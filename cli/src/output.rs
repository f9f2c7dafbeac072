//! Printing: JSON, a YAML-like text rendering, and plain lines. A closed stdout (`| head`) is
//! not an error.

use std::io::{self, Write};

use anyhow::Result;
use serde_json::Value;

fn write_out(s: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Prints `s` as is.
pub fn raw(s: &str) -> Result<()> {
    write_out(s)
}

/// Prints one line.
pub fn line(s: &str) -> Result<()> {
    write_out(&format!("{s}\n"))
}

/// Prints `v` as pretty JSON, or as an indented `key: value` tree.
pub fn print_value(v: &Value, json: bool) -> Result<()> {
    let mut s = String::new();
    if json {
        s = serde_json::to_string_pretty(v)?;
        s.push('\n');
    } else {
        render(v, 0, &mut s);
    }
    write_out(&s)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn render(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        render(v, indent + 1, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        render(v, indent + 1, out);
                    }
                    Value::Array(_) => out.push_str(&format!("{pad}{k}: []\n")),
                    Value::Object(_) => out.push_str(&format!("{pad}{k}: {{}}\n")),
                    other => out.push_str(&format!("{pad}{k}: {}\n", scalar(other))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        render(item, indent + 1, out);
                    }
                    other => out.push_str(&format!("{pad}- {}\n", scalar(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Left-aligned columns separated by two spaces, podman style, built row by row and printed through a
/// buffered stdout. Rows are stored packed (one text buffer and each row's cell boundaries), so a listing of
/// thousands of containers costs little more than its text; each row carries a sort key.
pub struct Table<'h, const N: usize, K> {
    header: [&'h str; N],
    widths: [usize; N],
    text: String,
    rows: Vec<(K, usize, [usize; N])>,
}

impl<'h, const N: usize, K: Ord> Table<'h, N, K> {
    /// An empty table with these column titles.
    pub fn new(header: [&'h str; N]) -> Self {
        Table {
            header,
            widths: header.map(|h| h.chars().count()),
            text: String::new(),
            rows: Vec::new(),
        }
    }

    /// Adds a row sorted by `key`.
    pub fn push<S: AsRef<str>>(&mut self, key: K, cells: [S; N]) {
        let start = self.text.len();
        let mut ends = [0; N];
        for (i, cell) in cells.iter().enumerate() {
            let cell = cell.as_ref();
            self.widths[i] = self.widths[i].max(cell.chars().count());
            self.text.push_str(cell);
            ends[i] = self.text.len();
        }
        self.rows.push((key, start, ends));
    }

    /// Prints the header and the rows in key order (`descending`: largest key first); a closed stdout is
    /// not an error.
    pub fn print(mut self, descending: bool) -> Result<()> {
        if descending {
            self.rows.sort_by(|a, b| b.0.cmp(&a.0));
        } else {
            self.rows.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut out = io::BufWriter::with_capacity(64 << 10, io::stdout().lock());
        let mut line = String::new();
        let mut write = |cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
            line.clear();
            for (i, cell) in cells.enumerate() {
                line.push_str(cell);
                if i + 1 < N {
                    let pad = self.widths[i].saturating_sub(cell.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.write_all(line.trim_end().as_bytes())?;
            out.write_all(b"\n")
        };
        let mut result = write(&mut self.header.iter().copied());
        for (_, start, ends) in &self.rows {
            if result.is_err() {
                break;
            }
            let mut from = *start;
            let text = &self.text;
            result = write(&mut ends.iter().map(|&end| {
                let cell = text.get(from..end).unwrap_or_default();
                from = end;
                cell
            }));
        }
        match result.and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => Ok(r?),
        }
    }
}
