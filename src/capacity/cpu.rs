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
        Self::starting_at(units, Instant::now())
    }

    /// A budget whose bucket starts empty at `now`; the tests pass their own clock.
    fn starting_at(units: u32, now: Instant) -> Self {
        Self {
            units: units.max(1),
            state: Mutex::new(Bucket {
                credit: 0.0,
                refilled_at: now,
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
        self.charge_at(used, Instant::now())
    }

    /// [`CpuBudget::charge`] at the instant `now`: the budget logic on a clock the caller
    /// controls, so that it can be tested without measuring time.
    fn charge_at(&self, used: Duration, now: Instant) -> Duration {
        let share = self.share();
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

    const MS: Duration = Duration::from_millis(1);

    /// Asserts a pause equals `expected` to within float rounding (the bucket counts seconds as
    /// f64).
    #[track_caller]
    fn assert_pause(actual: Duration, expected: Duration) {
        let off = actual.abs_diff(expected);
        assert!(
            off <= Duration::from_micros(1),
            "{actual:?} != {expected:?}"
        );
    }

    /// A budget of `units` and a clock at its start, advanced by hand.
    fn budget(units: u32) -> (CpuBudget, Instant) {
        let start = Instant::now();
        (CpuBudget::starting_at(units, start), start)
    }

    #[test]
    fn quarter_share_pauses_three_times_as_long_as_it_runs() {
        let (budget, start) = budget(256);
        // 10 ms of CPU at once, no time passed: the debt is 10 ms of CPU, repaid at 0.25 s per s.
        assert_pause(budget.charge_at(10 * MS, start), 40 * MS);
    }

    #[test]
    fn time_passing_pays_the_debt_back() {
        let (budget, start) = budget(256);
        assert_pause(budget.charge_at(10 * MS, start), 40 * MS);
        // After the 40 ms pause the debt is paid: running 1 ms more costs a 4 ms pause.
        assert_pause(budget.charge_at(MS, start + 40 * MS), 4 * MS);
    }

    #[test]
    fn within_share_never_pauses() {
        let (budget, start) = budget(2048);
        // 5 ms of wall time at two cores earns 10 ms of CPU.
        assert_eq!(budget.charge_at(MS, start + 5 * MS), Duration::ZERO);
        assert_eq!(budget.charge_at(8 * MS, start + 5 * MS), Duration::ZERO);
        // 11 ms used of 10 earned: 1 ms of debt, repaid at two cores.
        assert_pause(budget.charge_at(2 * MS, start + 5 * MS), MS / 2);
    }

    #[test]
    fn idle_time_buys_at_most_the_credit_cap() {
        let (budget, start) = budget(1024);
        // An hour idle saves up only MAX_CREDIT: using it is free, one more ms is not.
        let later = start + Duration::from_secs(3600);
        assert_eq!(budget.charge_at(MAX_CREDIT, later), Duration::ZERO);
        assert_pause(budget.charge_at(MS, later), MS);
    }

    #[test]
    fn pauses_are_capped() {
        let (budget, start) = budget(1);
        assert_eq!(budget.charge_at(Duration::from_secs(10), start), MAX_PAUSE);
    }

    #[test]
    fn a_budget_shared_by_two_holders_counts_both() {
        let (budget, start) = budget(512);
        // Two containers drawing 5 ms each at the same instant owe 10 ms at half a core.
        assert_pause(budget.charge_at(5 * MS, start), 10 * MS);
        assert_pause(budget.charge_at(5 * MS, start), 20 * MS);
    }
}
