//! CPU shares as a token bucket: 1024 units earn one second of CPU per second of wall time.
//!
//! The guest's thread charges the CPU time it used at every epoch tick and pauses for as long as
//! its bucket is in debt, so a spinning 256-unit guest gets about a quarter of a core. Credit is
//! capped so that a long idle spell does not buy a long burst.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most unused CPU time a bucket can save up.
const MAX_CREDIT: Duration = Duration::from_millis(50);
/// The longest single pause, so that a stop request is noticed promptly.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// One CPU allowance, shared by every container that draws from it.
#[derive(Debug)]
pub struct CpuBudget {
    units: u32,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Seconds of CPU the holders may still use; negative when in debt.
    credit: f64,
    refilled_at: Instant,
}

impl CpuBudget {
    /// A budget of `units` CPU units (1024 = one core). Zero units are treated as one.
    pub fn new(units: u32) -> Self {
        Self {
            units: units.max(1),
            state: Mutex::new(Bucket {
                credit: 0.0,
                refilled_at: Instant::now(),
            }),
        }
    }

    pub fn units(&self) -> u32 {
        self.units
    }

    /// The fraction of one core this budget allows.
    fn share(&self) -> f64 {
        f64::from(self.units) / 1024.0
    }

    /// Charges `used` CPU time and returns how long the caller must pause to stay within its
    /// share (zero when it is within it).
    pub fn charge(&self, used: Duration) -> Duration {
        let share = self.share();
        let now = Instant::now();
        // A poisoned lock only means another guest thread panicked mid-update; the numbers are
        // still usable.
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let earned = now.duration_since(bucket.refilled_at).as_secs_f64() * share;
        bucket.refilled_at = now;
        bucket.credit = (bucket.credit + earned).min(MAX_CREDIT.as_secs_f64());
        bucket.credit -= used.as_secs_f64();
        if bucket.credit >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-bucket.credit / share).min(MAX_PAUSE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_share_pauses_three_times_as_long_as_it_runs() {
        let budget = CpuBudget::new(256);
        // Use 10 ms at once: the debt is 10 ms of CPU, repaid at 0.25 s per s.
        let pause = budget.charge(Duration::from_millis(10));
        assert!(
            pause >= Duration::from_millis(39) && pause <= Duration::from_millis(40),
            "{pause:?}"
        );
    }

    #[test]
    fn within_share_never_pauses() {
        let budget = CpuBudget::new(2048);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(budget.charge(Duration::from_millis(1)), Duration::ZERO);
    }

    #[test]
    fn pauses_are_capped() {
        let budget = CpuBudget::new(1);
        assert_eq!(budget.charge(Duration::from_secs(10)), MAX_PAUSE);
    }
}
