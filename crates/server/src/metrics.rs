//! A handful of Prometheus metrics, rendered by hand in the text exposition format: a registry
//! crate would be more than these few counters need.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
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

#[derive(Debug)]
pub struct Metrics {
    pub requests_created: Counter,
    pub refusals: Counter,
    pub grants_activated: Counter,
    pub grants_ended: Counter,
    pub expiry_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests_created: Counter::default(),
            refusals: Counter::default(),
            grants_activated: Counter::default(),
            grants_ended: Counter::default(),
            expiry_lag: Histogram::new(&[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        }
    }
}

impl Metrics {
    /// Counts what the events say happened.
    pub fn observe(&self, events: &[jitgate_core::EventDraft]) {
        for e in events {
            match e.action.as_str() {
                "request.created" => self.requests_created.inc(),
                "grant.activated" => self.grants_activated.inc(),
                "grant.released" | "grant.revoked" => self.grants_ended.inc(),
                "grant.expired" => {
                    self.grants_ended.inc();
                    if let Some(end) = e.details["expires_at"]
                        .as_str()
                        .and_then(|t| t.parse::<jitgate_core::Timestamp>().ok())
                    {
                        self.expiry_lag
                            .observe(jitgate_core::duration::until(end, e.ts));
                    }
                }
                _ => {}
            }
            if e.outcome == jitgate_core::Outcome::Denied {
                self.refusals.inc();
            }
        }
    }

    pub fn render(&self) -> String {
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
        out
    }
}
