//! Human output: aligned tables and key/value listings. `-o json` bypasses all of this.

use std::io::Write;

use serde_json::Value;

/// `println!` for everything the CLI prints on stdout. When the reader has closed the pipe
/// (`jitgate audit search | head`) the command ends at once, quietly and successfully: the reader
/// has all it wanted. `println!` would panic with a backtrace instead.
macro_rules! out {
    () => { $crate::output::write_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::write_line(format_args!($($arg)*)) };
}
pub(crate) use out;

pub fn write_line(args: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        end_on_output_error(&e);
    }
}

/// Ends the process for a failed write to stdout: quietly (status 0) if the reader went away,
/// with the error (status 1) otherwise, e.g. a full disk behind a redirection.
pub fn end_on_output_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("jitgate: cannot write the output: {e}");
    std::process::exit(1);
}

/// Whether an error is, at bottom, a write to a closed pipe.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The text of a JSON value for a table cell: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        // Times to the second for people; -o json keeps full precision.
        Value::String(s) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => t
                .round(jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| s.clone()),
            Err(_) => s.clone(),
        },
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        out!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Prints `key: value` lines for the given fields of an object.
pub fn fields(v: &Value, keys: &[&str]) {
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0) + 1;
    for k in keys {
        if let Some(x) = v.get(*k) {
            out!("{:<width$} {}", format!("{k}:"), cell(x));
        }
    }
}

/// Prints a JSON array as a table: one row per item, one `(header, key)` column each.
pub fn rows(list: &Value, columns: &[(&str, &str)]) {
    let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| columns.iter().map(|(_, key)| cell(&item[*key])).collect())
        .collect();
    table(&headers, &rows);
}

/// The error and its causes, `a: b: c`. Errors that say their cause in their own message and
/// also keep it as their source would print it twice; a cause already said is not repeated.
pub fn causes(e: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
}

#[cfg(test)]
mod tests {
    use super::causes;

    /// An error that says its cause and also keeps it as its source.
    #[derive(Debug)]
    struct Saying(std::io::Error);

    impl std::fmt::Display for Saying {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot open the journal: {}", self.0)
        }
    }

    impl std::error::Error for Saying {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_is_said_once() {
        let io = || std::io::Error::other("disk full");
        let e = anyhow::Error::new(Saying(io())).context("starting");
        assert_eq!(causes(&e), "starting: cannot open the journal: disk full");
        let e = anyhow::Error::new(io()).context("writing the export");
        assert_eq!(causes(&e), "writing the export: disk full");
    }
}
