//! Output of the friendly subcommands: aligned tables and `key: value`
//! views by default, the action's `data` as pretty JSON with `-o json` or
//! YAML with `-o yaml`.

use crate::ApiArgs;
use powernode_client::Api;
use serde_json::Value;
use std::io::Write;

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The table with more columns.
    Wide,
    /// The action's data as pretty JSON.
    Json,
    /// The action's data as YAML.
    Yaml,
    /// `kind/id`, one object per line (for scripts: `| xargs`).
    Name,
}

impl Format {
    /// True for the machine formats that print the action's data as it is
    /// (`json`, `yaml`).
    pub fn is_data(self) -> bool {
        matches!(self, Format::Json | Format::Yaml)
    }
}

/// `--no-headers`, set once from the global options.
static NO_HEADERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Tables print without their header row from now on (`--no-headers`).
pub fn set_no_headers(on: bool) {
    NO_HEADERS.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn no_headers() -> bool {
    NO_HEADERS.load(std::sync::atomic::Ordering::Relaxed)
}

/// What a friendly command works with: the API and the output format.
pub struct Ctx {
    /// The API client.
    pub api: Api,
    /// The chosen format.
    pub format: Format,
}

impl Ctx {
    /// Connects with the global options.
    pub fn new(api: &ApiArgs) -> anyhow::Result<Self> {
        Ok(Self {
            api: api.client()?,
            format: api.output,
        })
    }

    /// True with `-o json` or `-o yaml` (the data printed as it is).
    pub fn json(&self) -> bool {
        self.format.is_data()
    }

    /// Prints `data` as pretty JSON (`-o json`), YAML (`-o yaml`) or
    /// `table(data)` otherwise.
    pub fn show(&self, data: &Value, table: impl FnOnce(&Value) -> String) {
        match self.format {
            Format::Json => print_json(data),
            Format::Yaml => print_yaml(data),
            Format::Name => emit(&names(data)),
            _ => emit(&table(data)),
        }
    }

    /// Prints `data` as JSON or YAML, whichever `-o` chose (JSON for the
    /// table formats).
    pub fn print_data(&self, data: &Value) {
        print_data(self.format, data);
    }
}

/// Prints `data` as YAML with `-o yaml`, `kind/id` lines with `-o name`,
/// else as pretty JSON.
pub fn print_data(format: Format, data: &Value) {
    match format {
        Format::Yaml => print_yaml(data),
        Format::Name => emit(&names(data)),
        _ => print_json(data),
    }
}

/// The `kind/id` lines of an action's data (`-o name`): every object
/// with an id under a key (`{cluster: {id}}` → `cluster/<id>`) or in a
/// list (`{clusters: [{id}…]}` → one line each).
pub fn names(data: &Value) -> String {
    let id_of = |o: &Value| {
        ["id", "token_id", "execution_id", "instance_id"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map(printable)
    };
    let mut out = String::new();
    for (key, v) in data.as_object().into_iter().flatten() {
        match v {
            Value::Array(items) => {
                let kind = key.strip_suffix('s').unwrap_or(key);
                for id in items.iter().filter_map(id_of) {
                    out.push_str(&format!("{kind}/{id}\n"));
                }
            }
            Value::Object(_) => {
                if let Some(id) = id_of(v) {
                    out.push_str(&format!("{key}/{id}\n"));
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        if let Some(id) = id_of(data) {
            out = format!("{id}\n");
        }
    }
    out
}

/// Prints `v` as YAML.
pub fn print_yaml(v: &Value) {
    match serde_norway::to_string(v) {
        Ok(text) => emit(&text),
        Err(_) => print_json(v),
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends the process quietly.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// [`emit`] with a newline.
pub fn line(text: &str) {
    emit(&format!("{text}\n"));
}

/// Prints `v` as pretty JSON.
pub fn print_json(v: &Value) {
    line(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// Text from the server made safe for a terminal: every control character
/// (an escape sequence, a carriage return or newline that would forge a
/// table row) and every bidirectional override is shown as `\u{..}`.
pub fn printable(text: &str) -> String {
    powernode_events::text::escape_unsafe(text).into_owned()
}

/// A value as a table cell: strings bare (non-printable characters
/// escaped), null or missing as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => printable(s),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Field `key` of `v` as a cell.
pub fn field(v: &Value, key: &str) -> String {
    cell(v.get(key).unwrap_or(&Value::Null))
}

/// An aligned table: a header row and data rows, columns two spaces apart.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print as `-`; non-printable characters
    /// are escaped, so no cell can end its row or start another).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True without data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, each line indented by `indent` spaces; `empty`
    /// (e.g. `no clusters`) instead when it has no rows.
    pub fn render_indented(&self, indent: usize, empty: &str) -> String {
        let pad = " ".repeat(indent);
        if self.rows.is_empty() {
            return format!("{pad}{empty}\n");
        }
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let mut out = String::new();
        let header = (!no_headers()).then_some(&self.header);
        for row in header.into_iter().chain(&self.rows) {
            let mut text = pad.clone();
            for (i, w) in widths.iter().enumerate() {
                let c = row.get(i).map_or("-", String::as_str);
                if i + 1 == widths.len() {
                    text.push_str(c);
                } else {
                    text.push_str(&format!("{c:<w$}  "));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// The table as text; `empty` when it has no rows.
    pub fn render(&self, empty: &str) -> String {
        self.render_indented(0, empty)
    }
}

/// A `Label:  value` view of one object, labels aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let v = printable(v);
        out.push_str(&format!("{:<width$}  {v}\n", format!("{k}:")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_mark_missing_cells() {
        let mut t = Table::new(&["ID", "NAME", "NODES"]);
        t.row(vec!["a".into(), "longer-name".into(), "1".into()]);
        t.row(vec!["bbbb".into(), "x".into()]);
        assert_eq!(
            t.render("none"),
            "ID    NAME         NODES\na     longer-name  1\nbbbb  x            -\n"
        );
        assert_eq!(Table::new(&["A"]).render("none"), "none\n");
    }

    #[test]
    fn server_strings_cannot_forge_rows_or_escape_sequences() {
        let forged = "web-1\n\u{1b}[2Kinst-evil  admin  ready\r\u{202e}x\u{85}";
        let mut t = Table::new(&["ID", "HOSTNAME"]);
        t.row(vec!["inst-1".into(), forged.into()]);
        let text = t.render("none");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.chars().any(|c| c != '\n' && c.is_control()),
            "{text:?}"
        );
        assert!(text.contains("web-1\\u{a}\\u{1b}[2Kinst-evil"), "{text}");
        assert!(text.contains("\\u{202e}"), "{text}");
        assert_eq!(cell(&json!("a\u{7f}b")), "a\\u{7f}b");
        let kv = key_values(&[("Name", "x\ny".to_string())]);
        assert_eq!(kv.lines().count(), 1, "{kv}");
    }

    #[test]
    fn names_are_kind_slash_id() {
        let d = json!({"clusters": [{"id": "c1"}, {"id": "c2"}]});
        assert_eq!(names(&d), "cluster/c1\ncluster/c2\n");
        assert_eq!(names(&json!({"template": {"id": "t1"}})), "template/t1\n");
        assert_eq!(names(&json!({"id": "i1", "hostname": "x"})), "i1\n");
    }

    #[test]
    fn cells_are_bare() {
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(field(&json!({}), "k"), "-");
    }
}
