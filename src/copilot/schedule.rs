//! A Scheduled Job's `on.schedule` as the expression EventBridge Scheduler takes
//! (`rate(...)` or its six-field `cron(...)`), the way Copilot translates it:
//!
//! | manifest | EventBridge |
//! |---|---|
//! | `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`) | `cron(0 * * * ? *)`, `cron(0 0 * * ? *)`, `cron(0 0 ? * 1 *)`, `cron(0 0 1 * ? *)`, `cron(0 0 1 1 ? *)` |
//! | `@every 10m`, `@every 1h30m` (Go durations, whole minutes) | `rate(10 minutes)`, `rate(90 minutes)`, `rate(2 hours)`, `rate(1 day)` |
//! | `rate(5 minutes)` | as written, checked |
//! | `30 9 * * 1-5` or `cron(30 9 * * 1-5)` (five fields) | `cron(30 9 ? * 2-6 *)`: `?` in the day field left free, days of the week counted from 1 = Sunday |
//! | `cron(30 9 ? * MON-FRI *)` (six fields) | as written |
//! | `none` | no schedule: the job runs only when started by hand |
//!
//! Pure: text in, an expression or why not out.

use super::duration;

/// The EventBridge expression of `schedule`; `None` for `none`.
pub fn expression(schedule: &str) -> Result<Option<String>, String> {
    let schedule = schedule.trim();
    let fixed = match schedule {
        "none" => return Ok(None),
        "@hourly" => Some("cron(0 * * * ? *)"),
        "@daily" | "@midnight" => Some("cron(0 0 * * ? *)"),
        "@weekly" => Some("cron(0 0 ? * 1 *)"),
        "@monthly" => Some("cron(0 0 1 * ? *)"),
        "@yearly" | "@annually" => Some("cron(0 0 1 1 ? *)"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Ok(Some(fixed.to_string()));
    }
    if let Some(every) = schedule.strip_prefix("@every ") {
        return every_rate(every.trim()).map(Some);
    }
    if let Some(rate) = schedule
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
    {
        check_rate(rate)?;
        return Ok(Some(schedule.to_string()));
    }
    let fields_text = schedule
        .strip_prefix("cron(")
        .and_then(|c| c.strip_suffix(')'))
        .unwrap_or(schedule);
    let fields: Vec<&str> = fields_text.split_whitespace().collect();
    match fields.len() {
        5 => five_fields(&fields).map(Some),
        6 if schedule.starts_with("cron(") => Ok(Some(format!("cron({})", fields.join(" ")))),
        _ => Err(format!(
            "{schedule:?} is not a schedule: @hourly, @daily, @weekly, @monthly, @yearly, \
             @every DURATION, rate(N unit), a five-field cron expression, \
             cron(six fields) or none"
        )),
    }
}

/// `@every DURATION` as a rate in the largest whole unit.
fn every_rate(every: &str) -> Result<String, String> {
    let duration = duration::parse(every).map_err(|e| format!("@every: {e}"))?;
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 || duration.subsec_nanos() != 0 || duration.as_secs() % 60 != 0 {
        return Err(format!(
            "@every {every}: EventBridge runs schedules in whole minutes, at least 1m"
        ));
    }
    let minutes = duration.as_secs() / 60;
    let (value, unit) = if minutes % 1440 == 0 {
        (minutes / 1440, "day")
    } else if minutes % 60 == 0 {
        (minutes / 60, "hour")
    } else {
        (minutes, "minute")
    };
    let plural = if value == 1 { "" } else { "s" };
    Ok(format!("rate({value} {unit}{plural})"))
}

/// Checks `N unit` as EventBridge wants it: a positive whole number, and the unit singular
/// for 1 and plural otherwise.
fn check_rate(rate: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("rate({rate}): {why}"));
    let mut parts = rate.split_whitespace();
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return bad("expected rate(VALUE UNIT), e.g. rate(5 minutes)");
    };
    let Ok(value) = value.parse::<u64>() else {
        return bad("the value is not a whole number");
    };
    if value == 0 {
        return bad("the value must be at least 1");
    }
    let singular = match unit {
        "minute" | "hour" | "day" => true,
        "minutes" | "hours" | "days" => false,
        _ => return bad("the unit is minute(s), hour(s) or day(s)"),
    };
    match (value == 1, singular) {
        (true, false) => bad("for 1 the unit is singular (rate(1 minute))"),
        (false, true) => bad("for more than 1 the unit is plural (rate(5 minutes))"),
        _ => Ok(()),
    }
}

/// A standard five-field cron expression (`minute hour day-of-month month day-of-week`) as
/// EventBridge's six fields: one of the two day fields must be `?`, the day of the week
/// counts 1-7 from Sunday (cron's 0-7 from Sunday), and the year is `*`.
fn five_fields(fields: &[&str]) -> Result<String, String> {
    let [minute, hour, day_of_month, month, day_of_week] = fields else {
        return Err("a cron expression has five fields".into());
    };
    for (name, field) in [
        ("minute", minute),
        ("hour", hour),
        ("day-of-month", day_of_month),
        ("month", month),
        ("day-of-week", day_of_week),
    ] {
        if !field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "*,-/?#".contains(c))
        {
            return Err(format!(
                "cron: the {name} field {field:?} has a character cron has not"
            ));
        }
    }
    let free = |f: &str| f == "*" || f == "?";
    let (day_of_month, day_of_week) = match (free(day_of_month), free(day_of_week)) {
        (_, true) => (day_of_month.to_string(), "?".to_string()),
        (true, false) => ("?".to_string(), weekdays(day_of_week)?),
        (false, false) => {
            return Err(format!(
                "cron: both the day of the month ({day_of_month}) and the day of the week \
                 ({day_of_week}) are given; EventBridge takes one of them (the other is ?)"
            ));
        }
    };
    Ok(format!(
        "cron({minute} {hour} {day_of_month} {month} {day_of_week} *)"
    ))
}

/// cron's day-of-week field (0 or 7 = Sunday) with EventBridge's numbers (1 = Sunday); names
/// (`MON-FRI`) stay.
fn weekdays(field: &str) -> Result<String, String> {
    let day = |text: &str| -> Result<String, String> {
        match text.parse::<u8>() {
            Ok(n @ 0..=6) => Ok((n + 1).to_string()),
            Ok(7) => Ok("1".into()),
            Ok(n) => Err(format!("cron: day of the week {n} is not 0-7")),
            Err(_) => Ok(text.to_ascii_uppercase()),
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let converted = match range.split_once('-') {
            // A range ending on Sunday (7) would wrap: its days to Saturday, then Sunday.
            Some((from, "7")) if step.is_none() && from != "0" => {
                format!("{}-7,1", day(from)?)
            }
            Some((from, to)) => format!("{}-{}", day(from)?, day(to)?),
            None if range == "*" => "*".to_string(),
            None => day(range)?,
        };
        items.push(match step {
            Some(step) => format!("{converted}/{step}"),
            None => converted,
        });
    }
    Ok(items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_becomes_an_eventbridge_expression() {
        for (manifest, eventbridge) in [
            ("@hourly", "cron(0 * * * ? *)"),
            ("@daily", "cron(0 0 * * ? *)"),
            ("@weekly", "cron(0 0 ? * 1 *)"),
            ("@monthly", "cron(0 0 1 * ? *)"),
            ("@yearly", "cron(0 0 1 1 ? *)"),
            ("@every 10m", "rate(10 minutes)"),
            ("@every 1m", "rate(1 minute)"),
            ("@every 1h30m", "rate(90 minutes)"),
            ("@every 2h", "rate(2 hours)"),
            ("@every 24h", "rate(1 day)"),
            ("@every 120s", "rate(2 minutes)"),
            ("rate(5 minutes)", "rate(5 minutes)"),
            ("rate(1 hour)", "rate(1 hour)"),
            ("30 9 * * *", "cron(30 9 * * ? *)"),
            ("0 0 1 * *", "cron(0 0 1 * ? *)"),
            ("30 9 * * 1-5", "cron(30 9 ? * 2-6 *)"),
            ("cron(30 9 * * 1-5)", "cron(30 9 ? * 2-6 *)"),
            ("0 12 * * 0", "cron(0 12 ? * 1 *)"),
            ("0 12 * * 7", "cron(0 12 ? * 1 *)"),
            ("0 12 * * 5-7", "cron(0 12 ? * 6-7,1 *)"),
            ("0 12 * * mon-fri", "cron(0 12 ? * MON-FRI *)"),
            ("*/15 * * * 1,3", "cron(*/15 * ? * 2,4 *)"),
            ("0 8 * * */2", "cron(0 8 ? * */2 *)"),
            ("cron(0 12 ? * MON-FRI *)", "cron(0 12 ? * MON-FRI *)"),
            ("cron(0 18 L * ? 2030)", "cron(0 18 L * ? 2030)"),
        ] {
            assert_eq!(
                expression(manifest).unwrap().as_deref(),
                Some(eventbridge),
                "{manifest}"
            );
        }
        assert_eq!(expression("none").unwrap(), None);
    }

    #[test]
    fn what_eventbridge_cannot_run_is_refused_with_why() {
        for (manifest, why) in [
            ("@every 30s", "whole minutes"),
            ("@every 90s", "whole minutes"),
            ("@every often", "not a duration"),
            ("rate(1 minutes)", "singular"),
            ("rate(5 minute)", "plural"),
            ("rate(0 minutes)", "at least 1"),
            ("rate(5 weeks)", "minute(s), hour(s) or day(s)"),
            ("0 12 1 * 1", "EventBridge takes one of them"),
            ("0 12 * * 8", "not 0-7"),
            ("0 12 * *", "is not a schedule"),
            ("@fortnightly", "is not a schedule"),
            ("0 12 * * 1;", "a character cron has not"),
        ] {
            let error = expression(manifest).unwrap_err();
            assert!(error.contains(why), "{manifest}: {error}");
        }
    }
}
