//! EventBridge's six-field cron: `minutes hours day-of-month month day-of-week year`, with
//! its rules (exactly one of day-of-month and day-of-week is `?`; `L`, `LW`, `15W` in the
//! day of month; `6L`, `2#1` in the day of week; names JAN-DEC and SUN-SAT; day of week 1-7
//! with 1 = Sunday; years 1970-2199), and the next civil minute that matches.
//!
//! Architecture invariant: pure civil-time arithmetic; the time zone (gaps, folds) is the
//! caller's (`timing.rs`).

use jiff::civil::{Date, DateTime, Time, Weekday};

/// The first and last year a cron may name.
pub const FIRST_YEAR: i16 = 1970;
pub const LAST_YEAR: i16 = 2199;

/// A parsed cron expression (the part between `cron(` and `)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days_of_month: DayOfMonth,
    /// Bits 1..=12.
    months: u16,
    days_of_week: DayOfWeek,
    /// Bit `year - FIRST_YEAR`.
    years: [u64; 4],
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    /// `?`: the day of week decides.
    Any,
    /// Bits 1..=31.
    Days(u32),
    /// `L` (offset 0) or `L-3`: the last day of the month, less the offset.
    Last(u8),
    /// `LW`: the last weekday (Monday to Friday) of the month.
    LastWeekday,
    /// `15W`: the weekday nearest the 15th, within the month.
    NearestWeekday(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    /// `?`: the day of month decides.
    Any,
    /// Bits 1..=7, 1 = Sunday.
    Days(u8),
    /// `6L`: the last such day of the month (`L` alone is the last Saturday).
    Last(u8),
    /// `2#1`: the first Monday of the month.
    Nth { day: u8, nth: u8 },
}

/// Why a cron expression is not valid, in words that name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

fn error(message: impl Into<String>) -> CronError {
    CronError(message.into())
}

/// One of the six fields: its name, range and the names it takes.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Field = Field {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Field = Field {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};
const YEAR: Field = Field {
    name: "year",
    min: FIRST_YEAR as u32,
    max: LAST_YEAR as u32,
    names: &[],
};

impl Field {
    fn value(&self, text: &str) -> Result<u32, CronError> {
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            return Ok(self.min + i as u32);
        }
        let value: u32 = text.parse().map_err(|_| {
            error(format!(
                "{}: {text:?} is not a value of this field ({}-{}{})",
                self.name,
                self.min,
                self.max,
                if self.names.is_empty() {
                    String::new()
                } else {
                    format!(" or {}-{}", self.names[0], self.names[self.names.len() - 1])
                }
            ))
        })?;
        if !(self.min..=self.max).contains(&value) {
            return Err(error(format!(
                "{}: {value} is out of range ({}-{})",
                self.name, self.min, self.max
            )));
        }
        Ok(value)
    }

    /// The values a field of `,`-separated items (`*`, `5`, `1-5`, `0/10`, `5-40/5`) names.
    fn values(&self, text: &str) -> Result<Vec<u32>, CronError> {
        let mut values = Vec::new();
        for item in text.split(',') {
            if item.is_empty() {
                return Err(error(format!("{}: an empty list item", self.name)));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        error(format!(
                            "{}: {step:?} after '/' is not a positive step",
                            self.name
                        ))
                    })?;
                    (range, Some(step))
                }
                None => (item, None),
            };
            let (start, end) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(error(format!(
                        "{}: the range {range} runs backwards",
                        self.name
                    )));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `0/10`: from 0 every 10 to the end of the field.
                (a, if step.is_some() { self.max } else { a })
            };
            let step = step.unwrap_or(1) as usize;
            values.extend((start..=end).step_by(step));
        }
        Ok(values)
    }

    fn bits(&self, text: &str) -> Result<u64, CronError> {
        if text == "?" {
            return Err(error(format!(
                "{}: '?' is only for day-of-month or day-of-week",
                self.name
            )));
        }
        if text.contains(['L', 'W', '#', 'l', 'w']) {
            return Err(error(format!(
                "{}: L, W and # are only for day-of-month and day-of-week",
                self.name
            )));
        }
        Ok(self.values(text)?.iter().fold(0u64, |b, v| b | 1 << v))
    }
}

impl Cron {
    /// Parses the six fields of EventBridge's cron.
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = fields.as_slice() else {
            return Err(error(format!(
                "a cron expression has six fields (minutes hours day-of-month month day-of-week \
                 year), this one has {}",
                fields.len()
            )));
        };
        let days_of_month = parse_day_of_month(dom)?;
        let days_of_week = parse_day_of_week(dow)?;
        match (&days_of_month, &days_of_week) {
            (DayOfMonth::Any, DayOfWeek::Any) => {
                return Err(error(
                    "day-of-month and day-of-week cannot both be '?': one of them says which days",
                ));
            }
            (DayOfMonth::Any, _) | (_, DayOfWeek::Any) => {}
            _ => {
                return Err(error(
                    "day-of-month and day-of-week cannot both be given: one of them must be '?'",
                ));
            }
        }
        let mut years = [0u64; 4];
        if year.contains(['L', 'W', '#', '?', 'l', 'w']) {
            return Err(error("year: takes values, ranges, lists and steps only"));
        }
        for y in YEAR.values(year)? {
            let bit = (y - YEAR.min) as usize;
            years[bit / 64] |= 1 << (bit % 64);
        }
        Ok(Self {
            minutes: MINUTES.bits(minutes)?,
            hours: HOURS.bits(hours)? as u32,
            days_of_month,
            months: MONTH.bits(month)? as u16,
            days_of_week,
            years,
        })
    }

    fn has_year(&self, year: i16) -> bool {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
            return false;
        }
        let bit = (year - FIRST_YEAR) as usize;
        self.years[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn has_month(&self, month: i8) -> bool {
        self.months & (1 << month) != 0
    }

    /// Whether `date`'s day matches the day-of-month and day-of-week fields.
    fn has_day(&self, date: Date) -> bool {
        let day = date.day() as u8;
        let last = date.days_in_month() as u8;
        let weekday = date.weekday();
        let dom = match &self.days_of_month {
            DayOfMonth::Any => true,
            DayOfMonth::Days(bits) => bits & (1 << day) != 0,
            DayOfMonth::Last(offset) => last.checked_sub(*offset) == Some(day),
            DayOfMonth::LastWeekday => nearest_weekday(date, last) == day,
            DayOfMonth::NearestWeekday(target) => {
                *target <= last && nearest_weekday(date, *target) == day
            }
        };
        let sunday_one = weekday.to_sunday_one_offset() as u8;
        let dow = match &self.days_of_week {
            DayOfWeek::Any => true,
            DayOfWeek::Days(bits) => bits & (1 << sunday_one) != 0,
            DayOfWeek::Last(d) => sunday_one == *d && day + 7 > last,
            DayOfWeek::Nth { day: d, nth } => sunday_one == *d && (day - 1) / 7 + 1 == *nth,
        };
        dom && dow
    }

    /// The first minute of `date` at or after `from` that matches the hour and minute fields.
    fn time_in_day(&self, from: Time) -> Option<Time> {
        for hour in from.hour()..24 {
            if self.hours & (1 << hour) == 0 {
                continue;
            }
            let first = if hour == from.hour() {
                from.minute()
            } else {
                0
            };
            for minute in first..60 {
                if self.minutes & (1 << minute) != 0 {
                    return Time::new(hour, minute, 0, 0).ok();
                }
            }
        }
        None
    }

    /// The first civil minute strictly after `after` that matches, if any before the end of
    /// 2199.
    pub fn next_after(&self, after: DateTime) -> Option<DateTime> {
        // The next whole minute after `after`.
        let start = after
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(jiff::SignedDuration::from_mins(1))
            .ok()?;
        let mut date = start.date();
        let mut from = start.time();
        loop {
            if date.year() > LAST_YEAR {
                return None;
            }
            if !self.has_year(date.year()) {
                date = Date::new(date.year().checked_add(1)?, 1, 1).ok()?;
                from = Time::midnight();
                continue;
            }
            if !self.has_month(date.month()) {
                date = date
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()?;
                from = Time::midnight();
                continue;
            }
            if self.has_day(date)
                && let Some(time) = self.time_in_day(from)
            {
                return Some(date.to_datetime(time));
            }
            date = date.tomorrow().ok()?;
            from = Time::midnight();
        }
    }
}

/// The weekday of `date`'s month nearest its day `target` without leaving the month (Quartz's
/// `W`: a Saturday goes to the Friday before, a Sunday to the Monday after, unless that
/// crosses the month's edge).
fn nearest_weekday(date: Date, target: u8) -> u8 {
    let last = date.days_in_month() as u8;
    let Ok(day) = date.with().day(target as i8).build() else {
        return 0;
    };
    match day.weekday() {
        Weekday::Saturday if target == 1 => 3,
        Weekday::Saturday => target - 1,
        Weekday::Sunday if target == last => target - 2,
        Weekday::Sunday => target + 1,
        _ => target,
    }
}

fn parse_day_of_month(text: &str) -> Result<DayOfMonth, CronError> {
    let upper = text.to_ascii_uppercase();
    if upper == "?" {
        return Ok(DayOfMonth::Any);
    }
    if upper == "L" {
        return Ok(DayOfMonth::Last(0));
    }
    if upper == "LW" {
        return Ok(DayOfMonth::LastWeekday);
    }
    if let Some(offset) = upper.strip_prefix("L-") {
        let offset: u8 = offset
            .parse()
            .ok()
            .filter(|o| (1..=30).contains(o))
            .ok_or_else(|| error(format!("day-of-month: {text:?}: L-N takes N from 1 to 30")))?;
        return Ok(DayOfMonth::Last(offset));
    }
    if let Some(day) = upper.strip_suffix('W') {
        let day = DAY_OF_MONTH.value(day)?;
        return Ok(DayOfMonth::NearestWeekday(day as u8));
    }
    if upper.contains(['L', 'W', '#']) {
        return Err(error(format!(
            "day-of-month: {text:?}: L, LW, L-N and NW stand alone (no lists or ranges), and # \
             is for day-of-week"
        )));
    }
    Ok(DayOfMonth::Days(DAY_OF_MONTH.bits(text)? as u32))
}

fn parse_day_of_week(text: &str) -> Result<DayOfWeek, CronError> {
    let upper = text.to_ascii_uppercase();
    if upper == "?" {
        return Ok(DayOfWeek::Any);
    }
    if upper == "L" {
        return Ok(DayOfWeek::Last(7));
    }
    if let Some(day) = upper.strip_suffix('L') {
        return Ok(DayOfWeek::Last(DAY_OF_WEEK.value(day)? as u8));
    }
    if let Some((day, nth)) = upper.split_once('#') {
        let day = DAY_OF_WEEK.value(day)? as u8;
        let nth: u8 = nth
            .parse()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| {
                error(format!(
                    "day-of-week: {text:?}: the number after # is the week of the month, 1 to 5"
                ))
            })?;
        return Ok(DayOfWeek::Nth { day, nth });
    }
    if upper.contains(['L', 'W', '#']) {
        return Err(error(format!(
            "day-of-week: {text:?}: NL and N#M stand alone, and W is for day-of-month"
        )));
    }
    Ok(DayOfWeek::Days(DAY_OF_WEEK.bits(text)? as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn next(expr: &str, after: DateTime) -> DateTime {
        Cron::parse(expr).unwrap().next_after(after).unwrap()
    }

    fn nexts(expr: &str, after: DateTime, n: usize) -> Vec<String> {
        let cron = Cron::parse(expr).unwrap();
        let mut at = after;
        (0..n)
            .map(|_| {
                at = cron.next_after(at).unwrap();
                at.to_string()
            })
            .collect()
    }

    // 2026-03-02 is a Monday.
    fn monday() -> DateTime {
        date(2026, 3, 2).at(0, 0, 0, 0)
    }

    #[test]
    fn documented_examples_fire_when_the_documentation_says() {
        // "Run at 10:00 am (UTC) every day"
        assert_eq!(
            nexts("0 10 * * ? *", monday(), 2),
            ["2026-03-02T10:00:00", "2026-03-03T10:00:00"]
        );
        // "Run at 12:15 pm (UTC) every day"
        assert_eq!(
            next("15 12 * * ? *", monday()).to_string(),
            "2026-03-02T12:15:00"
        );
        // "Run at 6:00 pm (UTC) every Monday through Friday": Friday, then the next Monday.
        assert_eq!(
            nexts("0 18 ? * MON-FRI *", date(2026, 3, 6).at(12, 0, 0, 0), 2),
            ["2026-03-06T18:00:00", "2026-03-09T18:00:00"]
        );
        // "Run at 8:00 am (UTC) every 1st day of the month"
        assert_eq!(
            nexts("0 8 1 * ? *", monday(), 2),
            ["2026-04-01T08:00:00", "2026-05-01T08:00:00"]
        );
        // "Run every 10 minutes Monday through Friday": Friday 23:50, then Monday 00:00.
        assert_eq!(
            nexts("0/10 * ? * MON-FRI *", date(2026, 3, 6).at(23, 45, 0, 0), 2),
            ["2026-03-06T23:50:00", "2026-03-09T00:00:00"]
        );
        // "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm (UTC)"
        assert_eq!(
            nexts(
                "0/5 8-17 ? * MON-FRI *",
                date(2026, 3, 2).at(17, 54, 0, 0),
                2
            ),
            ["2026-03-02T17:55:00", "2026-03-03T08:00:00"]
        );
        // "Run at 9 a.m. (UTC) the first Monday of each month"
        assert_eq!(
            nexts("0 9 ? * 2#1 *", monday(), 3),
            [
                "2026-03-02T09:00:00",
                "2026-04-06T09:00:00",
                "2026-05-04T09:00:00"
            ]
        );
        // The last day of the month, leap years included.
        assert_eq!(
            nexts("0 0 L * ? *", date(2028, 1, 31).at(0, 0, 0, 0), 2),
            ["2028-02-29T00:00:00", "2028-03-31T00:00:00"]
        );
        // The last Friday of the month.
        assert_eq!(
            nexts("0 0 ? * 6L *", monday(), 2),
            ["2026-03-27T00:00:00", "2026-04-24T00:00:00"]
        );
        // The weekday nearest the 15th: 2026-03-15 is a Sunday, so Monday the 16th; 2026-08-15
        // is a Saturday, so Friday the 14th.
        assert_eq!(
            next("0 0 15W * ? *", monday()).to_string(),
            "2026-03-16T00:00:00"
        );
        assert_eq!(
            next("0 0 15W * ? *", date(2026, 8, 1).at(0, 0, 0, 0)).to_string(),
            "2026-08-14T00:00:00"
        );
    }

    #[test]
    fn names_lists_steps_years_and_the_other_l_forms() {
        // Day of week 1 is Sunday; names and numbers agree.
        assert_eq!(
            Cron::parse("0 0 ? * 1 *").unwrap(),
            Cron::parse("0 0 ? * sun *").unwrap()
        );
        assert!(Cron::parse("0 0 ? JAN-MAR * *").is_ok());
        assert_eq!(
            nexts(
                "0,30 9 ? * SAT,SUN 2026",
                date(2026, 3, 6).at(0, 0, 0, 0),
                3
            ),
            [
                "2026-03-07T09:00:00",
                "2026-03-07T09:30:00",
                "2026-03-08T09:00:00"
            ]
        );
        // A year in the past never fires; the last year the field allows is 2199.
        assert_eq!(
            Cron::parse("0 0 * * ? 2020").unwrap().next_after(monday()),
            None
        );
        assert_eq!(
            next("0 0 1 JAN ? 2199", monday()).to_string(),
            "2199-01-01T00:00:00"
        );
        // LW: the last weekday; 2026-05-31 is a Sunday, so Friday the 29th.
        assert_eq!(
            next("0 0 LW * ? *", date(2026, 5, 1).at(0, 0, 0, 0)).to_string(),
            "2026-05-29T00:00:00"
        );
        // L-2: two days before the last.
        assert_eq!(
            next("0 0 L-2 * ? *", monday()).to_string(),
            "2026-03-29T00:00:00"
        );
        // L alone in day-of-week is the last Saturday.
        assert_eq!(
            next("0 0 ? * L *", monday()).to_string(),
            "2026-03-28T00:00:00"
        );
        // 1W on a Saturday the 1st moves forward to Monday the 3rd, not back a month.
        assert_eq!(
            next("0 0 1W * ? *", date(2026, 7, 15).at(0, 0, 0, 0)).to_string(),
            "2026-08-03T00:00:00"
        );
        // Strictly after: the minute itself does not count.
        assert_eq!(
            next("0 10 * * ? *", date(2026, 3, 2).at(10, 0, 0, 0)).to_string(),
            "2026-03-03T10:00:00"
        );
        // A 31st only in the months that have one.
        assert_eq!(
            nexts("0 0 31 * ? *", date(2026, 3, 31).at(1, 0, 0, 0), 2),
            ["2026-05-31T00:00:00", "2026-07-31T00:00:00"]
        );
        // 5-40/5 within a range.
        assert_eq!(
            nexts("5-15/5 0 * * ? *", monday(), 4),
            [
                "2026-03-02T00:05:00",
                "2026-03-02T00:10:00",
                "2026-03-02T00:15:00",
                "2026-03-03T00:05:00"
            ]
        );
    }

    #[test]
    fn invalid_expressions_say_which_field_is_wrong() {
        let cases = [
            ("0 10 * * *", "six fields"),
            ("0 10 * * ? * *", "six fields"),
            ("0 10 * * * *", "cannot both be given"),
            ("0 10 ? * ? *", "cannot both be '?'"),
            ("0 10 1 * MON *", "cannot both be given"),
            ("60 10 * * ? *", "minutes: 60 is out of range"),
            ("0 24 * * ? *", "hours: 24 is out of range"),
            ("0 0 32 * ? *", "day-of-month: 32 is out of range"),
            ("0 0 * 13 ? *", "month: 13 is out of range"),
            ("0 0 * FOO ? *", "month: \"FOO\" is not a value"),
            ("0 0 ? * 8 *", "day-of-week: 8 is out of range"),
            ("0 0 ? * 0 *", "day-of-week: 0 is out of range"),
            ("0 0 ? * 2#6 *", "1 to 5"),
            ("0 0 * * ? 1969", "year: 1969 is out of range"),
            ("0 0 * * ? 2200", "year: 2200 is out of range"),
            ("L 0 * * ? *", "minutes: L, W and #"),
            ("0 0 ? * 2W *", "W is for day-of-month"),
            ("0 0 1#2 * ? *", "# is for day-of-week"),
            ("0/0 0 * * ? *", "not a positive step"),
            ("10-5 0 * * ? *", "runs backwards"),
            ("0 0 ? * 1,,2 *", "empty list item"),
            ("? 0 * * ? *", "'?' is only for"),
        ];
        for (expr, wanted) in cases {
            let error = Cron::parse(expr).unwrap_err().0;
            assert!(error.contains(wanted), "{expr}: {error}");
        }
    }
}
