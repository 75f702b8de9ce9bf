//! The facts of a statement the SQL parser read: one pass of a visitor over its syntax tree for
//! the relations, functions and names in it, and a walk of its outermost parts for the values
//! it returns and stores.

use std::ops::{ControlFlow, Range};

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Query, Select, SelectItem,
    SetExpr, Statement, TableFactor, Visit, Visitor,
};

use super::{Facts, Name, Setting, Value, Values, copy, fold, kinds, name_of};

pub(super) fn facts(top: &Statement, span: Range<usize>) -> Facts {
    let mut f = Facts::unparsed(span);
    f.parsed = true;
    f.values.complex = false;
    let mut v = Names::default();
    let _ = top.visit(&mut v);
    // A table function is visited as a relation too: it is no table.
    for func in &v.table_functions {
        if let Some(i) = v.relations.iter().position(|r| r == func) {
            v.relations.remove(i);
        }
    }
    f.tables = v.relations;
    f.functions = v.functions;
    f.values.complex = v.complex;
    f.values.defined = v.defined;
    f.values.ctes = v.ctes;
    f.settings = v.settings;
    let _ = sqlparser::ast::visit_statements(top, |s| {
        kinds::parsed(s, &mut f);
        ControlFlow::<()>::Continue(())
    });
    f.copy = copy::copy_out(top);
    if let Some(t) = copy::copied_table(top) {
        f.tables.push(t);
    }
    outermost(top, &mut f);
    f
}

/// Relations, functions, and the names a statement defines, anywhere in it.
#[derive(Default)]
struct Names {
    relations: Vec<Name>,
    table_functions: Vec<Name>,
    functions: Vec<Name>,
    complex: bool,
    defined: Vec<String>,
    ctes: Vec<String>,
    settings: Vec<Setting>,
}

impl Names {
    fn define(&mut self, name: String) {
        if !self.defined.contains(&name) {
            self.defined.push(name);
        }
    }

    fn function(&mut self, name: &ObjectName) {
        if let Some(n) = name_of(name) {
            self.functions.push(n);
        }
    }
}

impl Visitor for Names {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if let Some(n) = name_of(relation) {
            self.define(n.name.clone());
            self.relations.push(n);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        let alias = match t {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    self.complex = true;
                    if let Some(n) = name_of(name) {
                        self.table_functions.push(n.clone());
                        self.functions.push(n);
                    }
                }
                alias
            }
            TableFactor::Function { name, alias, .. } => {
                self.complex = true;
                self.function(name);
                alias
            }
            TableFactor::NestedJoin { alias, .. } => alias,
            TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::JsonTable { alias, .. } => {
                self.complex = true;
                alias
            }
            _ => {
                self.complex = true;
                return ControlFlow::Continue(());
            }
        };
        if let Some(a) = alias {
            self.define(fold(&a.name));
            if !a.columns.is_empty() {
                self.complex = true;
                for c in &a.columns {
                    self.define(fold(&c.name));
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = fold(&cte.alias.name);
                self.define(name.clone());
                self.ctes.push(name);
                if !cte.alias.columns.is_empty() {
                    self.complex = true;
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        for item in &s.projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item {
                self.define(fold(alias));
            }
        }
        // A column merged by USING or NATURAL (COALESCE of both sides in a FULL JOIN), and a
        // grouping set's columns, are no plain table columns any more.
        for t in &s.from {
            for j in &t.joins {
                let text = j.to_string().to_ascii_uppercase();
                if text.starts_with("NATURAL")
                    || text.contains(" NATURAL ")
                    || text.contains(" USING")
                {
                    self.complex = true;
                }
            }
        }
        let group = s.group_by.to_string().to_ascii_uppercase();
        if group.contains("ROLLUP") || group.contains("CUBE") || group.contains("GROUPING SETS") {
            self.complex = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            self.function(&f.name);
            if name_of(&f.name).is_some_and(|n| n.name == "set_config") {
                self.settings.push(set_config(&f.args));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if let Statement::Call(f) = s {
            self.function(&f.name);
        }
        ControlFlow::Continue(())
    }
}

/// The string a constant expression is, if it is one.
fn literal(e: &Expr) -> Option<String> {
    use sqlparser::ast::Value as V;
    match e {
        Expr::Value(v) => match &v.value {
            V::SingleQuotedString(s)
            | V::EscapedStringLiteral(s)
            | V::UnicodeStringLiteral(s)
            | V::DollarQuotedString(sqlparser::ast::DollarQuotedString { value: s, .. }) => {
                Some(s.clone())
            }
            V::Boolean(b) => Some(b.to_string()),
            V::Number(n, _) => Some(n.to_string()),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal(expr),
        _ => None,
    }
}

/// `set_config(name, value, is_local)`: which setting it changes, if its name is a constant.
fn set_config(args: &FunctionArguments) -> Setting {
    let FunctionArguments::List(list) = args else {
        return Setting::Dynamic;
    };
    let arg = |i: usize| match list.args.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e),
        _ => None,
    };
    match arg(0).and_then(literal) {
        Some(name) => Setting::Set {
            name: name.to_ascii_lowercase(),
            value: arg(1).and_then(literal),
        },
        None => Setting::Dynamic,
    }
}

/// What one expression computes from.
pub(super) fn value(e: &Expr) -> Value {
    let mut v = ValueOf(Value::default());
    let _ = e.visit(&mut v);
    v.0.plain = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
    v.0
}

struct ValueOf(Value);

impl Visitor for ValueOf {
    type Break = ();

    /// A subquery anywhere in it reads values of its own.
    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.0.opaque = true;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let v = &mut self.0;
        match e {
            Expr::Identifier(i) => v.names.push(fold(i)),
            Expr::CompoundIdentifier(parts) => v.names.extend(parts.last().map(fold)),
            Expr::CompoundFieldAccess { .. } | Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                v.opaque = true
            }
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &f.args {
                    let count = name_of(&f.name).is_some_and(|n| n.name == "count");
                    for a in &list.args {
                        let arg = match a {
                            FunctionArg::Named { arg, .. }
                            | FunctionArg::ExprNamed { arg, .. }
                            | FunctionArg::Unnamed(arg) => arg,
                        };
                        match arg {
                            FunctionArgExpr::Expr(_) => {}
                            // `count(*)` counts rows; any other `*` hands whole rows over.
                            FunctionArgExpr::Wildcard if count => {}
                            _ => v.opaque = true,
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn item(i: &SelectItem) -> Value {
    match i {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => value(e),
        SelectItem::ExprWithAliases { expr, .. } => value(expr),
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Value {
            wildcard: true,
            ..Value::default()
        },
    }
}

/// The values the outermost level of a query returns.
fn query_outputs(q: &Query, out: &mut Vec<Value>, values: &mut Values) {
    set_outputs(&q.body, out, values);
}

fn set_outputs(body: &SetExpr, out: &mut Vec<Value>, values: &mut Values) {
    match body {
        SetExpr::Select(s) => {
            if s.into.is_some() {
                values.creates_from_query = true;
            }
            out.extend(s.projection.iter().map(item));
        }
        SetExpr::Query(q) => query_outputs(q, out, values),
        SetExpr::SetOperation { left, right, .. } => {
            // A set operation's columns have no table behind them, whatever each side is.
            let mut sides = Vec::new();
            set_outputs(left, &mut sides, values);
            set_outputs(right, &mut sides, values);
            out.extend(sides.into_iter().map(|v| Value { plain: false, ..v }));
        }
        SetExpr::Values(v) => {
            for row in &v.rows {
                out.extend(row.iter().map(value));
            }
        }
        SetExpr::Table(_) => out.push(Value {
            wildcard: true,
            ..Value::default()
        }),
        // Data-modifying statements nested in a query: what they return, and what they store.
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            statement_values(s, values);
        }
    }
}

fn returning(items: &Option<Vec<SelectItem>>, values: &mut Values) {
    if let Some(items) = items {
        values.outputs.extend(items.iter().map(item));
    }
}

/// What the outermost statement returns and stores.
fn statement_values(top: &Statement, values: &mut Values) {
    match top {
        Statement::Query(q) => {
            let mut out = Vec::new();
            query_outputs(q, &mut out, values);
            values.outputs.extend(out);
            // Data-modifying CTEs store too.
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    let mut ignored = Vec::new();
                    set_outputs(&cte.query.body, &mut ignored, values);
                }
            }
        }
        Statement::Insert(i) => {
            if let Some(source) = &i.source {
                let mut stored = Vec::new();
                query_outputs(source, &mut stored, values);
                values.stored.extend(stored);
            }
            values
                .stored
                .extend(i.assignments.iter().map(|a| value(&a.value)));
            if let Some(sqlparser::ast::OnInsert::OnConflict(c)) = &i.on
                && let sqlparser::ast::OnConflictAction::DoUpdate(u) = &c.action
            {
                values
                    .stored
                    .extend(u.assignments.iter().map(|a| value(&a.value)));
            }
            returning(&i.returning, values);
        }
        Statement::Update(u) => {
            values
                .stored
                .extend(u.assignments.iter().map(|a| value(&a.value)));
            returning(&u.returning, values);
        }
        Statement::Delete(d) => returning(&d.returning, values),
        // What a prepared statement returns can be computed from EXECUTE's arguments.
        Statement::Execute { .. } => values.outputs.push(Value {
            opaque: true,
            ..Value::default()
        }),
        Statement::Merge(_) => values.merges = true,
        Statement::CreateTable(t) if t.query.is_some() => values.creates_from_query = true,
        Statement::CreateView(_) => values.creates_from_query = true,
        Statement::Explain { statement, .. } => {
            // EXPLAIN returns a plan, not values; EXPLAIN ANALYZE runs what it explains.
            let mut inner = Values::default();
            statement_values(statement, &mut inner);
            values.stored.extend(inner.stored);
            values.merges |= inner.merges;
            values.creates_from_query |= inner.creates_from_query;
        }
        _ => {}
    }
}

fn outermost(top: &Statement, f: &mut Facts) {
    statement_values(top, &mut f.values);
    let created = match top {
        Statement::CreateTable(t) => name_of(&t.name),
        Statement::CreateView(v) => name_of(&v.name),
        Statement::Query(q) => match q.body.as_ref() {
            SetExpr::Select(s) => s.into.as_ref().and_then(|i| match i.targets.first() {
                Some(Expr::Identifier(t)) => Some(Name::bare(&fold(t))),
                Some(Expr::CompoundIdentifier(parts)) => match parts.as_slice() {
                    [.., s, t] => Some(Name {
                        schema: Some(fold(s)),
                        name: fold(t),
                    }),
                    _ => None,
                },
                _ => None,
            }),
            _ => None,
        },
        _ => None,
    };
    if let Some(n) = created {
        f.creates.push(n);
    }
}
