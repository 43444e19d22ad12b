//! Schedule time: the wall clock, or (for tests, `--clock-rate N`) a clock that runs N
//! times faster, so that `rate(1 minute)` fires every second without a test sleeping
//! minutes. Schedule times (firings, cursors, a rate's anchor) are read from this clock;
//! the records' own dates (CreationDate, task timestamps) stay wall-clock.

use std::time::Duration;

/// A clock `rate` times the wall clock's speed, equal to `origin_schedule` at the wall-clock
/// instant `origin_wall` (epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleClock {
    pub rate: f64,
    pub origin_wall: f64,
    pub origin_schedule: f64,
}

impl ScheduleClock {
    /// The wall clock itself.
    pub fn wall() -> Self {
        Self {
            rate: 1.0,
            origin_wall: 0.0,
            origin_schedule: 0.0,
        }
    }

    /// Schedule time at wall-clock time `wall`.
    pub fn at(&self, wall: f64) -> f64 {
        self.origin_schedule + (wall - self.origin_wall) * self.rate
    }

    /// Schedule time now, in whole seconds.
    pub fn now(&self) -> i64 {
        self.at(crate::records::timestamp()).floor() as i64
    }

    /// How long on the wall clock until schedule time `at` (zero when it has passed).
    pub fn wait_until(&self, at: i64) -> Duration {
        let wall_now = crate::records::timestamp();
        let ahead = (at as f64 - self.at(wall_now)) / self.rate;
        Duration::from_secs_f64(ahead.clamp(0.0, 86_400.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_runs_rate_times_the_wall_clock() {
        let clock = ScheduleClock {
            rate: 60.0,
            origin_wall: 1000.0,
            origin_schedule: 5000.0,
        };
        assert_eq!(clock.at(1000.0), 5000.0);
        assert_eq!(clock.at(1001.5), 5090.0);
        assert_eq!(ScheduleClock::wall().at(1234.5), 1234.5);
    }
}
