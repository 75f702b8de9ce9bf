//! `COPY … TO STDOUT`, as masking needs to know it, and the table any COPY names.

use sqlparser::ast::{CopySource, CopyTarget, Statement};

use super::{Name, fold, name_of};

/// A `COPY … TO STDOUT` as masking needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOut {
    /// `COPY [schema.]table [(columns)] TO STDOUT`, text or CSV format, no other options.
    /// Names are folded as PostgreSQL folds them.
    Table {
        schema: Option<String>,
        table: String,
        columns: Vec<String>,
        format: CopyFormat,
    },
    /// `COPY (query) TO STDOUT`: which table columns it reads is not known.
    Query { format: CopyFormat },
    /// Anything else: binary format, other delimiters or quoting.
    Unsupported,
}

/// The COPY formats masking can rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv { header: bool },
}

/// The table a COPY reads or writes, if it names one.
pub(super) fn copied_table(s: &Statement) -> Option<Name> {
    match s {
        Statement::Copy {
            source: CopySource::Table { table_name, .. },
            ..
        } => name_of(table_name),
        _ => None,
    }
}

/// What `COPY … TO STDOUT` the statement is, if it is one.
pub(super) fn copy_out(s: &Statement) -> Option<CopyOut> {
    let Statement::Copy {
        source,
        to: true,
        target,
        options,
        legacy_options,
        ..
    } = s
    else {
        return None;
    };
    if !matches!(target, CopyTarget::Stdout) {
        return None;
    }
    let Some(format) = copy_format(options, legacy_options) else {
        return Some(CopyOut::Unsupported);
    };
    Some(match source {
        CopySource::Query(_) => CopyOut::Query { format },
        CopySource::Table {
            table_name,
            columns,
        } => {
            let Some(name) = name_of(table_name) else {
                return Some(CopyOut::Unsupported);
            };
            CopyOut::Table {
                schema: name.schema,
                table: name.name,
                columns: columns.iter().map(fold).collect(),
                format,
            }
        }
    })
}

/// Text or CSV with PostgreSQL's defaults (and an optional CSV header); `None` for anything
/// else.
fn copy_format(
    options: &[sqlparser::ast::CopyOption],
    legacy: &[sqlparser::ast::CopyLegacyOption],
) -> Option<CopyFormat> {
    use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};
    let mut csv = false;
    let mut header = false;
    for o in options {
        match o {
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("text") => {}
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("csv") => csv = true,
            CopyOption::Header(h) => header = *h,
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") => {}
            _ => return None,
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(sub) => {
                csv = true;
                for s in sub {
                    match s {
                        CopyLegacyCsvOption::Header => header = true,
                        _ => return None,
                    }
                }
            }
            CopyLegacyOption::Header => header = true,
            _ => return None,
        }
    }
    match (csv, header) {
        (true, header) => Some(CopyFormat::Csv { header }),
        (false, false) => Some(CopyFormat::Text),
        (false, true) => None, // PostgreSQL refuses HEADER in text format anyway
    }
}
