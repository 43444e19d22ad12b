//! Schedule expressions as EventBridge Scheduler writes them: `rate(5 minutes)`,
//! `cron(0 10 * * ? *)` and `at(2026-03-02T10:00:00)`.

use jiff::civil::DateTime;

use super::cron::{Cron, CronError};

/// A parsed `ScheduleExpression`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// Every `seconds`, from the schedule's start.
    Rate { seconds: i64 },
    /// The minutes the cron names, in the schedule's time zone.
    Cron(Cron),
    /// Once, at this civil time in the schedule's time zone.
    At(DateTime),
}

/// Why a schedule expression is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    #[error(
        "{0:?} is not a schedule expression: it is rate(value unit), cron(minutes hours \
         day-of-month month day-of-week year) or at(yyyy-mm-ddThh:mm:ss)"
    )]
    Form(String),
    #[error("{expression}: {why}")]
    Rate { expression: String, why: String },
    #[error("{expression}: {source}")]
    Cron {
        expression: String,
        source: CronError,
    },
    #[error("{0}: at() takes a date and time as yyyy-mm-ddThh:mm:ss")]
    At(String),
}

impl Expression {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, ExpressionError> {
        let form = || ExpressionError::Form(text.to_string());
        let (kind, inner) = text
            .strip_suffix(')')
            .and_then(|t| t.split_once('('))
            .ok_or_else(form)?;
        match kind {
            "rate" => parse_rate(text, inner),
            "cron" => {
                Cron::parse(inner)
                    .map(Expression::Cron)
                    .map_err(|source| ExpressionError::Cron {
                        expression: text.to_string(),
                        source,
                    })
            }
            "at" => parse_at(inner)
                .map(Expression::At)
                .ok_or_else(|| ExpressionError::At(text.to_string())),
            _ => Err(form()),
        }
    }

    /// Whether the expression fires once (`at`).
    pub fn is_one_time(&self) -> bool {
        matches!(self, Self::At(_))
    }
}

fn parse_rate(text: &str, inner: &str) -> Result<Expression, ExpressionError> {
    let why = |why: &str| ExpressionError::Rate {
        expression: text.to_string(),
        why: why.to_string(),
    };
    let mut words = inner.split_whitespace();
    let (Some(value), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(why("rate() takes a value and a unit, as rate(5 minutes)"));
    };
    let value: i64 = value
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| why("the value must be a positive whole number"))?;
    let unit_seconds = match unit {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return Err(why("the unit must be minutes, hours or days")),
    };
    let seconds = value
        .checked_mul(unit_seconds)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .ok_or_else(|| why("the rate is longer than a hundred years"))?;
    Ok(Expression::Rate { seconds })
}

/// `yyyy-mm-ddThh:mm:ss`, exactly.
fn parse_at(inner: &str) -> Option<DateTime> {
    let bytes = inner.as_bytes();
    let shape_ok = bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_a_positive_value_and_a_unit() {
        assert_eq!(
            Expression::parse("rate(1 minute)"),
            Ok(Expression::Rate { seconds: 60 })
        );
        assert_eq!(
            Expression::parse("rate(5 minutes)"),
            Ok(Expression::Rate { seconds: 300 })
        );
        assert_eq!(
            Expression::parse("rate(2 hours)"),
            Ok(Expression::Rate { seconds: 7200 })
        );
        assert_eq!(
            Expression::parse("rate(1 day)"),
            Ok(Expression::Rate { seconds: 86_400 })
        );
        for bad in [
            "rate(0 minutes)",
            "rate(-1 minutes)",
            "rate(five minutes)",
            "rate(5 seconds)",
            "rate(5)",
            "rate(5 minutes now)",
            "rate 5 minutes",
        ] {
            assert!(Expression::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn at_takes_exactly_a_date_and_time() {
        let Ok(Expression::At(at)) = Expression::parse("at(2026-03-02T10:00:00)") else {
            panic!("at() parses");
        };
        assert_eq!(at.to_string(), "2026-03-02T10:00:00");
        for bad in [
            "at(2026-03-02T10:00)",
            "at(2026-03-02 10:00:00)",
            "at(2026-02-30T10:00:00)",
            "at(2026-03-02T10:00:00Z)",
            "at(2026-03-02T25:00:00)",
        ] {
            assert!(
                matches!(Expression::parse(bad), Err(ExpressionError::At(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_forms_are_refused_with_the_three_forms_named() {
        let error = Expression::parse("every(5 minutes)")
            .unwrap_err()
            .to_string();
        assert!(error.contains("rate(value unit)"), "{error}");
        let error = Expression::parse("cron(0 10 * * *)")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cron(0 10 * * *): a cron expression has six fields"),
            "{error}"
        );
    }
}
