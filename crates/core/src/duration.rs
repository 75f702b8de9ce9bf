//! Durations as people write them ("30m", "4h", "400d"), and timestamp arithmetic.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::CoreError;

/// Parses a humantime duration such as `30m`, `1h 30m` or `400d`; zero is refused.
pub fn parse(text: &str) -> Result<Duration, CoreError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        CoreError::Invalid(format!(
            "invalid duration {text:?}: {e} (examples: 30m, 4h, 400d)"
        ))
    })?;
    if d.is_zero() {
        return Err(CoreError::Invalid(format!(
            "duration {text:?} must be longer than zero"
        )));
    }
    Ok(d)
}

/// Formats a duration the way it is written in the config (`4h`, `1h 30m`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// `t + d`, saturating at jiff's maximum timestamp instead of panicking.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|sd| t.checked_add(sd).ok())
        .unwrap_or(Timestamp::MAX)
}

/// How long from `from` until `to`; zero when `to` is not later.
pub fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// Serde helpers to read and write durations as humantime strings.
pub mod serde_humantime {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("400d").unwrap(), Duration::from_secs(400 * 86400));
        assert!(parse("0s").is_err());
        assert!(parse("soon").unwrap_err().to_string().contains("examples"));
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format(parse("4h").unwrap()), "4h");
        assert_eq!(format(parse("90m").unwrap()), "1h 30m");
    }
}
