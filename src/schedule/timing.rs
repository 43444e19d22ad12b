//! When a schedule fires: its expression in its time zone (IANA names from the tz database
//! built into the binary, so nothing depends on the host's zoneinfo), bounded by its
//! StartDate and EndDate, and each firing's flexible-window offset.
//!
//! Daylight saving time as EventBridge Scheduler handles it: a cron time that does not exist
//! (the hour skipped in spring) is skipped; a cron time that happens twice (the hour repeated
//! in autumn) fires once, the first time. Rates count real elapsed time (`rate(1 day)` is 24
//! hours, whatever the clocks do). All times are epoch seconds.

use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::expression::{Expression, ExpressionError};

/// A schedule's firing times.
#[derive(Debug, Clone)]
pub struct Timing {
    pub expression: Expression,
    zone: TimeZone,
    /// Recurring schedules fire no earlier than this (one-time schedules ignore it).
    start: Option<i64>,
    /// Recurring schedules fire no later than this (one-time schedules ignore it).
    end: Option<i64>,
    /// When the schedule was created or last updated: a rate without a StartDate counts
    /// from here.
    anchor: i64,
}

/// Why a schedule's timing is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error(transparent)]
    Expression(#[from] ExpressionError),
    #[error("{0:?} is not a time zone of the IANA database (such as America/New_York or UTC)")]
    Zone(String),
    #[error("the EndDate is before the StartDate")]
    EndBeforeStart,
}

/// The time zone called `name` (IANA), from the bundled database.
pub fn zone(name: &str) -> Result<TimeZone, TimingError> {
    TimeZone::get(name).map_err(|_| TimingError::Zone(name.to_string()))
}

impl Timing {
    /// The timing of `expression` in the zone `zone` (UTC when `None`).
    pub fn new(
        expression: &str,
        zone_name: Option<&str>,
        start: Option<i64>,
        end: Option<i64>,
        anchor: i64,
    ) -> Result<Self, TimingError> {
        let expression = Expression::parse(expression)?;
        let zone = match zone_name {
            None => TimeZone::UTC,
            Some(name) => zone(name)?,
        };
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            return Err(TimingError::EndBeforeStart);
        }
        Ok(Self {
            expression,
            zone,
            start,
            end,
            anchor,
        })
    }

    /// The first firing strictly after `t`, if there is one.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let next = match &self.expression {
            Expression::At(at) => {
                let instant = to_instant(&self.zone, *at, Fold::Compatible)?;
                return (instant > t).then_some(instant);
            }
            Expression::Rate { seconds } => {
                let base = self.start.unwrap_or(self.anchor);
                if t < base {
                    base
                } else {
                    base + ((t - base) / seconds + 1) * seconds
                }
            }
            Expression::Cron(cron) => {
                let from = match self.start {
                    Some(start) => t.max(start - 1),
                    None => t,
                };
                let mut civil = self.zone.to_datetime(Timestamp::from_second(from).ok()?);
                loop {
                    let candidate = cron.next_after(civil)?;
                    civil = candidate;
                    let Some(instant) = to_instant(&self.zone, candidate, Fold::Skip) else {
                        continue;
                    };
                    // In a repeated hour the first instant of a civil time may lie before
                    // `from`: it already fired (or was not due), and the time fires only once.
                    if instant > from {
                        break instant;
                    }
                }
            }
        };
        match self.end {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// The next `n` firings after `t`.
    pub fn upcoming(&self, t: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::new();
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }
}

/// What a civil time that is skipped or repeated means.
#[derive(Clone, Copy)]
enum Fold {
    /// Cron: a skipped time does not fire; a repeated one fires the first time.
    Skip,
    /// At: a skipped time is the instant it would have been (as most tools read it); a
    /// repeated one the first time.
    Compatible,
}

fn to_instant(zone: &TimeZone, civil: jiff::civil::DateTime, fold: Fold) -> Option<i64> {
    let ambiguous = zone.to_ambiguous_timestamp(civil);
    let offset = match (ambiguous.offset(), fold) {
        (AmbiguousOffset::Unambiguous { offset }, _) => offset,
        (AmbiguousOffset::Gap { .. }, Fold::Skip) => return None,
        (AmbiguousOffset::Gap { before, .. }, Fold::Compatible) => before,
        (AmbiguousOffset::Fold { before, .. }, _) => before,
    };
    offset.to_timestamp(civil).ok().map(Timestamp::as_second)
}

/// The stable delay of one firing within a flexible window of `window_minutes`: the same
/// schedule and scheduled time always get the same delay (a restart does not move a firing),
/// and different firings spread over the window.
pub fn flexible_offset(schedule_arn: &str, scheduled: i64, window_minutes: u32) -> i64 {
    use sha2::Digest as _;
    if window_minutes == 0 {
        return 0;
    }
    let digest = sha2::Sha256::digest(format!("{schedule_arn}@{scheduled}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) % (u64::from(window_minutes) * 60)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    fn utc(t: i64) -> String {
        Timestamp::from_second(t).unwrap().to_string()
    }

    fn firings(timing: &Timing, from: &str, n: usize) -> Vec<String> {
        timing.upcoming(at(from), n).into_iter().map(utc).collect()
    }

    #[test]
    fn cron_in_a_zone_fires_at_its_local_time() {
        let timing =
            Timing::new("cron(0 10 * * ? *)", Some("Europe/Paris"), None, None, 0).unwrap();
        // Winter: UTC+1; summer (from 2026-03-29): UTC+2.
        assert_eq!(
            firings(&timing, "2026-03-27T00:00:00Z", 3),
            [
                "2026-03-27T09:00:00Z",
                "2026-03-28T09:00:00Z",
                "2026-03-29T08:00:00Z"
            ]
        );
        // A zone 5:45 ahead moves minutes too.
        let kathmandu =
            Timing::new("cron(5 * * * ? *)", Some("Asia/Kathmandu"), None, None, 0).unwrap();
        assert_eq!(
            firings(&kathmandu, "2026-03-02T00:00:00Z", 2),
            ["2026-03-02T00:20:00Z", "2026-03-02T01:20:00Z"]
        );
    }

    #[test]
    fn a_skipped_hour_does_not_fire_and_a_repeated_hour_fires_once() {
        // New York: 2026-03-08 02:00 EST jumps to 03:00 EDT; 2026-11-01 02:00 EDT falls back
        // to 01:00 EST.
        let spring = Timing::new(
            "cron(30 2 * * ? *)",
            Some("America/New_York"),
            None,
            None,
            0,
        )
        .unwrap();
        assert_eq!(
            firings(&spring, "2026-03-07T00:00:00Z", 2),
            ["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"]
        );
        let autumn = Timing::new(
            "cron(30 1 * * ? *)",
            Some("America/New_York"),
            None,
            None,
            0,
        )
        .unwrap();
        assert_eq!(
            firings(&autumn, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // Every half hour across the fall back: 01:00 and 01:30 EDT fire, the same civil
        // times in EST do not, and 02:00 EST follows.
        let half_hourly = Timing::new(
            "cron(0/30 * * * ? *)",
            Some("America/New_York"),
            None,
            None,
            0,
        )
        .unwrap();
        assert_eq!(
            firings(&half_hourly, "2026-11-01T04:15:00Z", 4),
            [
                "2026-11-01T04:30:00Z",
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
        // Asked from inside the repeated hour, the next firing is after it.
        assert_eq!(
            firings(&half_hourly, "2026-11-01T06:10:00Z", 1),
            ["2026-11-01T07:00:00Z"]
        );
    }

    #[test]
    fn rates_count_real_time_from_the_start() {
        let created = at("2026-03-07T12:00:00Z");
        let daily =
            Timing::new("rate(1 day)", Some("America/New_York"), None, None, created).unwrap();
        // The first firing is at once; the DST change does not move the next ones.
        assert_eq!(
            firings(&daily, "2026-03-07T11:59:59Z", 3),
            [
                "2026-03-07T12:00:00Z",
                "2026-03-08T12:00:00Z",
                "2026-03-09T12:00:00Z"
            ]
        );
        let start = at("2026-04-01T00:00:00Z");
        let from_start = Timing::new("rate(5 minutes)", None, Some(start), None, created).unwrap();
        assert_eq!(
            firings(&from_start, "2026-03-07T12:00:00Z", 2),
            ["2026-04-01T00:00:00Z", "2026-04-01T00:05:00Z"]
        );
    }

    #[test]
    fn start_and_end_bound_recurring_schedules_only() {
        let start = at("2026-03-02T10:30:00Z");
        let end = at("2026-03-04T10:00:00Z");
        let timing = Timing::new("cron(0 10 * * ? *)", None, Some(start), Some(end), 0).unwrap();
        assert_eq!(
            firings(&timing, "2026-03-01T00:00:00Z", 5),
            ["2026-03-03T10:00:00Z", "2026-03-04T10:00:00Z"]
        );
        let once = Timing::new(
            "at(2026-03-02T09:00:00)",
            Some("Asia/Tokyo"),
            Some(start),
            Some(start),
            0,
        )
        .unwrap();
        assert_eq!(
            firings(&once, "2026-03-01T00:00:00Z", 3),
            ["2026-03-02T00:00:00Z"]
        );
        assert!(once.next_after(at("2026-03-02T00:00:00Z")).is_none());
        assert_eq!(
            Timing::new("rate(1 minute)", None, Some(end), Some(start), 0).unwrap_err(),
            TimingError::EndBeforeStart
        );
        assert!(matches!(
            Timing::new("rate(1 minute)", Some("Mars/Olympus"), None, None, 0),
            Err(TimingError::Zone(_))
        ));
    }

    #[test]
    fn flexible_offsets_are_stable_and_within_the_window() {
        let arn = "arn:aws:scheduler:us-east-1:000000000000:schedule/default/nightly";
        let offsets: Vec<i64> = (0..50)
            .map(|i| flexible_offset(arn, 1_000_000 + i * 60, 15))
            .collect();
        assert!(offsets.iter().all(|o| (0..15 * 60).contains(o)));
        assert_eq!(offsets[7], flexible_offset(arn, 1_000_000 + 7 * 60, 15));
        assert!(offsets.iter().any(|o| *o != offsets[0]), "offsets spread");
        assert_eq!(flexible_offset(arn, 1_000_000, 0), 0);
    }
}
