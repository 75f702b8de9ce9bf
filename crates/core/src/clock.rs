//! The only place that reads the wall clock. Everything else asks a [`Clock`].

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned call
    fn now(&self) -> Timestamp {
        // Microseconds: what the store keeps, so a time reads back exactly as it was written.
        let now = Timestamp::now();
        Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct FakeClock(Mutex<Timestamp>);

impl FakeClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn at(rfc3339: &str) -> Self {
        Self::new(rfc3339.parse().expect("valid RFC 3339 timestamp"))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now = crate::duration::add(*now, by);
    }

    pub fn set(&self, to: Timestamp) {
        *self.0.lock().expect("clock lock") = to;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}
