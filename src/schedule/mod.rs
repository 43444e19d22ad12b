//! Scheduled tasks, the pure part: EventBridge Scheduler's expressions (`rate`, `cron`,
//! `at`), when a schedule fires in its time zone (`timing`), the firing decision (`firing`)
//! and schedule time (`clock`). The API (`api::scheduler`) stores schedules and runs the
//! firing loop over these.
//!
//! Architecture invariant: no I/O and no store here; every function is tested on given
//! times.

pub mod clock;
pub mod cron;
pub mod expression;
pub mod firing;
pub mod timing;

pub use clock::ScheduleClock;
pub use expression::{Expression, ExpressionError};
pub use firing::{Action, Decision, Firing, FiringStatus, Policy, decide};
pub use timing::{Timing, TimingError};
