//! Durations as Copilot's manifests write them, which is Go's `time.ParseDuration`: one or
//! more decimal numbers each with a unit (`10s`, `1m30s`, `1h30m`, `1.5h`, `500ms`).
//! Pure: text in, a `Duration` or why not out.

use std::time::Duration;

/// Parses a Go duration; the error says what was expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let expected = || format!("{text:?} is not a duration like 10s, 1m30s or 1h (Go's form)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(expected());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(expected)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| expected())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(expected()),
        };
        rest = &rest[unit_end..];
        total += number * seconds;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(expected());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Whole seconds of `text`, refusing a fraction (ECS's health check timings are seconds).
pub fn whole_seconds(text: &str) -> Result<u64, String> {
    let duration = parse(text)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!("{text:?} is not a whole number of seconds"));
    }
    Ok(duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        for (text, seconds) in [
            ("10s", 10.0),
            ("1m30s", 90.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("500ms", 0.5),
            ("0", 0.0),
            ("2h45m10s", 9910.0),
        ] {
            assert_eq!(parse(text).unwrap().as_secs_f64(), seconds, "{text}");
        }
        for bad in ["", "10", "ten s", "10 minutes", "1d", "s", "-5s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(whole_seconds("1m").unwrap(), 60);
        assert!(whole_seconds("1.5s").is_err());
    }
}
