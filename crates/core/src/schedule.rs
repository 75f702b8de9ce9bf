//! Time windows such as `Mon-Fri 08:00-18:00 Europe/Berlin`, evaluated in the named zone with its
//! daylight-saving rules (jiff's time-zone database; nothing hand-rolled).
//!
//! Grammar: `DAYS START-END ZONE`, where DAYS is a comma list of days (`Mon`) or ranges
//! (`Mon-Fri`, `Fri-Mon` wraps), or `daily`; START and END are `HH:MM` (END may be `24:00`). When
//! END is earlier than START the window runs overnight: it opens on a listed day and closes the
//! next morning.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::CoreError;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    /// Bit `i` set: day `i` (0 = Monday) opens a window.
    days: u8,
    start_min: u16,
    end_min: u16,
    tz: TimeZone,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let bad = |why: String| {
            CoreError::Invalid(format!(
                "invalid schedule {text:?}: {why} (example: \"Mon-Fri 08:00-18:00 Europe/Berlin\")"
            ))
        };
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, times, zone] = parts[..] else {
            return Err(bad("expected three parts: DAYS START-END ZONE".into()));
        };
        let days = parse_days(days).map_err(bad)?;
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| bad(format!("time range {times:?} must be START-END")))?;
        let start_min = parse_time(start).map_err(bad)?;
        let end_min = parse_time(end).map_err(bad)?;
        if start_min == end_min {
            return Err(bad("the window is empty (start equals end)".into()));
        }
        if start_min == 24 * 60 {
            return Err(bad("a window cannot start at 24:00".into()));
        }
        let tz =
            TimeZone::get(zone).map_err(|e| bad(format!("unknown time zone {zone:?}: {e}")))?;
        Ok(Self {
            text: text.to_owned(),
            days,
            start_min,
            end_min,
            tz,
        })
    }

    /// Whether the instant `t` falls inside the window, in the schedule's own time zone.
    pub fn contains(&self, t: Timestamp) -> bool {
        let local = t.to_zoned_datetime(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let opens_on = |d: u8| self.days & (1 << d) != 0;
        if self.start_min < self.end_min {
            opens_on(day) && minute >= self.start_min && minute < self.end_min
        } else {
            let yesterday = (day + 6) % 7;
            (opens_on(day) && minute >= self.start_min)
                || (opens_on(yesterday) && minute < self.end_min)
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn day_index(name: &str) -> Result<u8, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
        .ok_or_else(|| format!("unknown day {name:?} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn parse_days(text: &str) -> Result<u8, String> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok(0x7f);
    }
    let mut mask = 0u8;
    for item in text.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (mut d, end) = (day_index(a)?, day_index(b)?);
                loop {
                    mask |= 1 << d;
                    if d == end {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day_index(item)?,
        }
    }
    Ok(mask)
}

fn parse_time(text: &str) -> Result<u16, String> {
    let bad = || format!("invalid time {text:?}: expected HH:MM between 00:00 and 24:00");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn office_hours_follow_berlin_daylight_saving() {
        let s = Schedule::parse("Mon-Fri 08:00-18:00 Europe/Berlin").unwrap();
        // Winter (UTC+1): 08:00 Berlin is 07:00Z.
        assert!(!s.contains(at("2026-01-14T06:59:00Z")));
        assert!(s.contains(at("2026-01-14T07:00:00Z")));
        assert!(s.contains(at("2026-01-14T16:59:00Z")));
        assert!(!s.contains(at("2026-01-14T17:00:00Z")));
        // Summer (UTC+2): 08:00 Berlin is 06:00Z, and 07:30Z is inside.
        assert!(s.contains(at("2026-07-15T06:00:00Z")));
        assert!(!s.contains(at("2026-07-15T16:00:00Z")));
        // The Monday after the spring change (2026-03-29).
        assert!(s.contains(at("2026-03-30T06:30:00Z")));
        assert!(
            !s.contains(at("2026-03-27T06:30:00Z")),
            "Friday before the change is still UTC+1"
        );
        // Weekend.
        assert!(!s.contains(at("2026-01-17T10:00:00Z")));
    }

    #[test]
    fn overnight_windows_close_the_next_morning() {
        let s = Schedule::parse("Fri 22:00-06:00 UTC").unwrap();
        assert!(s.contains(at("2026-01-16T23:00:00Z"))); // Friday night
        assert!(s.contains(at("2026-01-17T05:59:00Z"))); // Saturday morning
        assert!(!s.contains(at("2026-01-17T06:00:00Z")));
        assert!(!s.contains(at("2026-01-15T23:00:00Z"))); // Thursday night
    }

    #[test]
    fn day_lists_and_wrapping_ranges() {
        let s = Schedule::parse("Sat-Mon,Wed 00:00-24:00 UTC").unwrap();
        assert!(s.contains(at("2026-01-17T12:00:00Z"))); // Sat
        assert!(s.contains(at("2026-01-19T23:59:00Z"))); // Mon
        assert!(!s.contains(at("2026-01-20T12:00:00Z"))); // Tue
        assert!(s.contains(at("2026-01-21T12:00:00Z"))); // Wed
    }

    #[test]
    fn malformed_schedules_are_refused_with_the_reason() {
        for (text, why) in [
            ("Mon-Fri 08:00-18:00", "three parts"),
            ("Mon-Fry 08:00-18:00 UTC", "unknown day"),
            ("Mon 8:00-18:00 UTC", "invalid time"),
            ("Mon 08:00-08:00 UTC", "empty"),
            ("Mon 08:00-18:00 Mars/Olympus", "unknown time zone"),
        ] {
            let e = Schedule::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
