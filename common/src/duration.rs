//! The one duration format of every flag and environment variable of both binaries:
//! a number with a unit, as people write it (`500ms`, `30s`, `2m`, `1h30m`).

use std::time::Duration;

/// Parses a duration flag: `500ms`, `30s`, `2m`, `1h`, or combinations such as `1m30s`.
/// A bare number is refused, since it would leave the unit to a guess.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 30s or 2m ({e})"))
}

/// A duration as a person writes it, for messages: `1m 30s`, `500ms`.
pub fn display(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_the_units_people_write() {
        for (text, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            (" 10s ", Duration::from_secs(10)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn a_bare_number_or_an_unknown_unit_is_refused_naming_the_text() {
        for text in ["45", "5 parsecs", "soon", ""] {
            let problem = parse_duration(text).unwrap_err();
            assert!(problem.contains(&format!("{text:?}")), "{problem}");
            assert!(problem.contains("like 500ms, 30s or 2m"), "{problem}");
        }
    }

    #[test]
    fn a_duration_displays_as_it_would_be_written() {
        assert_eq!(display(Duration::from_millis(500)), "500ms");
        assert_eq!(display(Duration::from_secs(90)), "1m 30s");
        assert_eq!(
            parse_duration(&display(Duration::from_secs(90))),
            Ok(Duration::from_secs(90))
        );
    }
}
