//! Prometheus metrics, rendered by hand in the text exposition format: a registry crate would be
//! more than these need.
//!
//! Counters follow the audit events: [`Tally::of`] reads what a batch of events says happened,
//! and [`Metrics::count`] adds it once the batch is committed, so a change that rolls back is
//! never counted. Gauges of what stands now (requests by state, the chain head, the age of the
//! last checkpoint and anchor write) are read when `/metrics` is scraped ([`Gauges`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jitgate_core::{EventDraft, Outcome, State, Timestamp, duration};
use jitgate_store::LiveCounts;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Values by label values, e.g. statements by resource.
#[derive(Debug, Default)]
struct Labelled(Mutex<BTreeMap<Vec<String>, i64>>);

impl Labelled {
    fn add(&self, labels: Vec<String>, n: i64) {
        *self
            .0
            .lock()
            .expect("metrics lock")
            .entry(labels)
            .or_default() += n;
    }

    fn render(&self, out: &mut String, name: &str, keys: &[&str]) {
        for (values, n) in self.0.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "{name}{{{}}} {n}", labels(keys, values));
        }
    }
}

/// `a="x",b="y"`, values escaped as the exposition format wants.
fn labels(keys: &[&str], values: &[String]) -> String {
    keys.iter()
        .zip(values)
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A histogram with fixed buckets in seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<(Vec<u64>, f64, u64)>, // bucket counts, sum, count
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            state: Mutex::new((vec![0; bounds.len()], 0.0, 0)),
        }
    }

    pub fn observe(&self, d: Duration) {
        let v = d.as_secs_f64();
        let mut s = self.state.lock().expect("histogram lock");
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                s.0[i] += 1;
            }
        }
        s.1 += v;
        s.2 += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().expect("histogram lock");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&s.0) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            s.2, s.1, s.2
        );
    }
}

const LAG_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What a batch of events says happened, read before the batch is written and counted after it
/// committed.
#[derive(Debug, Default)]
pub struct Tally {
    requests_created: u64,
    refusals: u64,
    grants_activated: u64,
    grants_ended: u64,
    expiry_lags: Vec<Duration>,
    /// `(resource, operation)` of each failed connector call.
    connector_errors: Vec<(String, &'static str)>,
    /// Sessions opened (+1) and closed (-1), by resource.
    sessions: BTreeMap<String, i64>,
    /// Statements and blocked statements, by resource.
    statements: BTreeMap<String, (u64, u64)>,
    /// The oldest event's time: the batch's append lag runs from it.
    oldest: Option<Timestamp>,
}

impl Tally {
    pub fn of(events: &[EventDraft]) -> Tally {
        let mut t = Tally::default();
        for e in events {
            let res = e.resource.as_deref().unwrap_or_default();
            let resource = || res.to_owned();
            match e.action.as_str() {
                "request.created" => t.requests_created += 1,
                "grant.activated" => t.grants_activated += 1,
                "grant.released" | "grant.revoked" => t.grants_ended += 1,
                "grant.expired" => {
                    t.grants_ended += 1;
                    if let Some(end) = e.details["expires_at"]
                        .as_str()
                        .and_then(|t| t.parse::<Timestamp>().ok())
                    {
                        t.expiry_lags.push(duration::until(end, e.ts));
                    }
                }
                "grant.activation_failed" => t.connector_errors.push((resource(), "provision")),
                "grant.revoke_failed" => t.connector_errors.push((resource(), "revoke")),
                "session.opened" => *entry(&mut t.sessions, res) += 1,
                "session.closed" => *entry(&mut t.sessions, res) -= 1,
                "session.statement" => {
                    let s = entry(&mut t.statements, res);
                    s.0 += 1;
                    if e.outcome == Outcome::Blocked {
                        s.1 += 1;
                    }
                }
                _ => {}
            }
            if e.outcome == Outcome::Denied {
                t.refusals += 1;
            }
            t.oldest = Some(t.oldest.map_or(e.ts, |o| o.min(e.ts)));
        }
        t
    }
}

/// The value under `key`, inserted if missing: statements come by the thousand per batch, all
/// of one resource, and this allocates its name once, not per statement.
fn entry<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// What stands at scrape time, read from the store and the audit log.
#[derive(Debug, Default)]
pub struct Gauges {
    /// `None` when the store could not be read.
    pub live: Option<LiveCounts>,
    pub head_seq: i64,
    pub audit: AuditHealth,
    pub now: Option<Timestamp>,
}

/// When the audit log last signed a checkpoint and last wrote to each anchor.
#[derive(Debug, Default, Clone)]
pub struct AuditHealth {
    /// The last checkpoint's time, if there is one.
    pub checkpoint_at: Option<Timestamp>,
    /// Per anchor (as shown: a webhook by scheme and host only): last successful write, and
    /// failed writes since the start.
    pub anchors: Vec<(String, Option<Timestamp>, u64)>,
    /// When this server started: ages of what it has not done yet run from here.
    pub started: Option<Timestamp>,
}

#[derive(Debug)]
pub struct Metrics {
    pub requests_created: Counter,
    pub refusals: Counter,
    pub grants_activated: Counter,
    pub grants_ended: Counter,
    pub expiry_lag: Histogram,
    connector_errors: Labelled,
    sessions: Labelled,
    statements: Labelled,
    blocked: Labelled,
    append_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests_created: Counter::default(),
            refusals: Counter::default(),
            grants_activated: Counter::default(),
            grants_ended: Counter::default(),
            expiry_lag: Histogram::new(&[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            connector_errors: Labelled::default(),
            sessions: Labelled::default(),
            statements: Labelled::default(),
            blocked: Labelled::default(),
            append_lag: Histogram::new(LAG_BUCKETS),
        }
    }
}

impl Metrics {
    /// Counts what committed events say happened; `now` is when their commit was confirmed.
    pub fn count(&self, t: Tally, now: Timestamp) {
        self.requests_created.add(t.requests_created);
        self.refusals.add(t.refusals);
        self.grants_activated.add(t.grants_activated);
        self.grants_ended.add(t.grants_ended);
        for lag in t.expiry_lags {
            self.expiry_lag.observe(lag);
        }
        for (resource, op) in t.connector_errors {
            self.connector_errors.add(vec![resource, op.to_owned()], 1);
        }
        for (resource, n) in t.sessions {
            self.sessions.add(vec![resource], n);
        }
        for (resource, (all, blocked)) in t.statements {
            if blocked > 0 {
                self.blocked.add(vec![resource.clone()], blocked as i64);
            }
            self.statements.add(vec![resource], all as i64);
        }
        if let Some(oldest) = t.oldest {
            self.append_lag.observe(duration::until(oldest, now));
        }
    }

    /// Counts events that are already committed.
    pub fn observe(&self, events: &[EventDraft], now: Timestamp) {
        self.count(Tally::of(events), now);
    }

    /// A connector call that failed outside any grant's lifecycle (reconciliation).
    pub fn connector_error(&self, resource: &str, operation: &str) {
        self.connector_errors
            .add(vec![resource.to_owned(), operation.to_owned()], 1);
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            (
                "jitgate_requests_created_total",
                "Access requests accepted (pending or approved).",
                &self.requests_created,
            ),
            (
                "jitgate_refusals_total",
                "Actions refused by policy or authorisation.",
                &self.refusals,
            ),
            (
                "jitgate_grants_activated_total",
                "Grants that became active.",
                &self.grants_activated,
            ),
            (
                "jitgate_grants_ended_total",
                "Grants fully ended (expired, released or revoked).",
                &self.grants_ended,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        self.expiry_lag.render(
            &mut out,
            "jitgate_expiry_lag_seconds",
            "From a grant's expires_at to it being fully expired.",
        );
        for (name, kind, help, values, keys) in [
            (
                "jitgate_connector_errors_total",
                "counter",
                "Failed connector calls (provision, revoke, list, remove_orphan), by resource.",
                &self.connector_errors,
                &["resource", "operation"][..],
            ),
            (
                "jitgate_gateway_sessions",
                "gauge",
                "Gateway sessions open now, by resource.",
                &self.sessions,
                &["resource"],
            ),
            (
                "jitgate_gateway_statements_total",
                "counter",
                "Statements the gateway recorded, by resource.",
                &self.statements,
                &["resource"],
            ),
            (
                "jitgate_gateway_statements_blocked_total",
                "counter",
                "Statements a guardrail stopped before they reached the database, by resource.",
                &self.blocked,
                &["resource"],
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            values.render(&mut out, name, keys);
        }
        self.append_lag.render(
            &mut out,
            "jitgate_audit_append_lag_seconds",
            "From an event's time to its batch being durable (oldest event of each batch).",
        );
        render_gauges(&mut out, g);
        out
    }
}

fn render_gauges(out: &mut String, g: &Gauges) {
    let _ = writeln!(
        out,
        "# HELP jitgate_store_up Whether the store answered this scrape.\n# TYPE jitgate_store_up gauge\njitgate_store_up {}",
        u8::from(g.live.is_some())
    );
    if let Some(live) = &g.live {
        let _ = writeln!(
            out,
            "# HELP jitgate_requests Requests not yet ended, by state (pending, approved, active, revoking) and resource.\n# TYPE jitgate_requests gauge"
        );
        for (state, resource, n) in &live.counts {
            let _ = writeln!(
                out,
                "jitgate_requests{{{}}} {n}",
                labels(
                    &["state", "resource"],
                    &[state.as_str().to_owned(), resource.clone()]
                )
            );
        }
        let revoking: u64 = live
            .counts
            .iter()
            .filter(|(s, ..)| *s == State::Revoking)
            .map(|(.., n)| n)
            .sum();
        let oldest = match (live.revoking_since, g.now) {
            (Some(since), Some(now)) => duration::until(since, now).as_secs_f64(),
            _ => 0.0,
        };
        let _ = writeln!(
            out,
            "# HELP jitgate_grants_revoking Grants ending whose target has not confirmed yet (retried with backoff).\n# TYPE jitgate_grants_revoking gauge\njitgate_grants_revoking {revoking}\n# HELP jitgate_grants_revoking_oldest_seconds How long the longest-revoking grant has been ending (0: none).\n# TYPE jitgate_grants_revoking_oldest_seconds gauge\njitgate_grants_revoking_oldest_seconds {oldest}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP jitgate_audit_head_seq The audit chain's committed head.\n# TYPE jitgate_audit_head_seq gauge\njitgate_audit_head_seq {}",
        g.head_seq
    );
    let age = |t: Option<Timestamp>| match (t.or(g.audit.started), g.now) {
        (Some(t), Some(now)) => duration::until(t, now).as_secs_f64(),
        _ => 0.0,
    };
    let _ = writeln!(
        out,
        "# HELP jitgate_audit_checkpoint_age_seconds Since the last signed checkpoint (or the start, if none).\n# TYPE jitgate_audit_checkpoint_age_seconds gauge\njitgate_audit_checkpoint_age_seconds {}",
        age(g.audit.checkpoint_at)
    );
    let _ = writeln!(
        out,
        "# HELP jitgate_audit_anchor_write_age_seconds Since the last checkpoint written to each anchor (or the start).\n# TYPE jitgate_audit_anchor_write_age_seconds gauge"
    );
    for (anchor, at, _) in &g.audit.anchors {
        let _ = writeln!(
            out,
            "jitgate_audit_anchor_write_age_seconds{{{}}} {}",
            labels(&["anchor"], std::slice::from_ref(anchor)),
            age(*at)
        );
    }
    let _ = writeln!(
        out,
        "# HELP jitgate_audit_anchor_failures_total Checkpoints an anchor did not take.\n# TYPE jitgate_audit_anchor_failures_total counter"
    );
    for (anchor, _, failures) in &g.audit.anchors {
        let _ = writeln!(
            out,
            "jitgate_audit_anchor_failures_total{{{}}} {failures}",
            labels(&["anchor"], std::slice::from_ref(anchor))
        );
    }
}

#[cfg(test)]
mod tests {
    use jitgate_core::EventDraft;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_tally_counts_only_once_applied() {
        let m = Metrics::default();
        let now = at("2026-01-14T10:00:01Z");
        let mut stmt = EventDraft::new(at("2026-01-14T10:00:00Z"), "alice", "session.statement");
        stmt.resource = Some("orders-db".into());
        let blocked = stmt.clone().outcome(Outcome::Blocked);
        let tally = Tally::of(&[stmt.clone(), stmt, blocked]);
        assert!(!m.render(&Gauges::default()).contains("orders-db"));
        m.count(tally, now);
        let text = m.render(&Gauges::default());
        assert!(
            text.contains("jitgate_gateway_statements_total{resource=\"orders-db\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("jitgate_gateway_statements_blocked_total{resource=\"orders-db\"} 1")
        );
        assert!(
            text.contains("jitgate_audit_append_lag_seconds_bucket{le=\"1\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&["anchor"], &["a\"b\\c".to_owned()]),
            "anchor=\"a\\\"b\\\\c\""
        );
    }
}
