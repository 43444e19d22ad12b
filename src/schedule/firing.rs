//! The firing decision, pure: from a schedule's timing, its retry policy, what it has fired
//! so far and the time now, what to do (fire, record missed firings, recover a firing a
//! crash left half done, retry a failed launch, give up on one) and when to look again.
//!
//! Architecture invariant: a scheduled time is decided once. `cursor` is the latest
//! scheduled time decided (fired, missed); the next firing is always after it, and the
//! firer moves it in the same compare-and-swap write that records the firing, before any
//! task is launched.

use serde::{Deserialize, Serialize};

use super::timing::{Timing, flexible_offset};

/// At most this many scheduled times are walked in one decision (a schedule that was off for
/// months at `rate(1 minute)`); the rest are counted as missed at the next decision.
const WALK_LIMIT: usize = 100_000;
/// The longest wait between two launch attempts of one firing.
const MAX_BACKOFF: i64 = 300;

/// A firing's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FiringStatus {
    /// Recorded; its tasks are being launched (or a crash interrupted the launch).
    Launching,
    /// A launch failed; it is tried again at `retry_at`.
    Retrying,
    /// Every task it asked for was launched.
    Launched,
    /// Its retries or its age ran out.
    Failed,
}

/// One firing of a schedule: a scheduled time and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firing {
    /// The time the expression names (epoch seconds, schedule time).
    pub scheduled: i64,
    /// When it was due: `scheduled` plus its flexible-window offset.
    pub due: i64,
    pub status: FiringStatus,
    /// Launch attempts that failed.
    #[serde(default)]
    pub attempts: u32,
    /// The tasks launched for it so far.
    #[serde(default)]
    pub task_arns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// The last failure's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Firing {
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            FiringStatus::Launching | FiringStatus::Retrying
        )
    }
}

/// EventBridge's RetryPolicy and FlexibleTimeWindow, as the decision needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// MaximumRetryAttempts (0-185, default 185).
    pub max_retries: u32,
    /// MaximumEventAgeInSeconds (60-86400, default 86400).
    pub max_age: i64,
    /// MaximumWindowInMinutes when FLEXIBLE; 0 when OFF.
    pub window_minutes: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_retries: 185,
            max_age: 86_400,
            window_minutes: 0,
        }
    }
}

/// What to do now for one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The firing at this index was recorded but its launch may not have happened (the
    /// process stopped between the two writes): launch only what no task shows.
    Recover(usize),
    /// The firing at this index failed to launch before and its retry is due.
    Retry(usize),
    /// The firing at this index has no retries or age left.
    GiveUp { index: usize, reason: String },
    /// Scheduled times that passed while nothing fired them (the server was down), too old
    /// or superseded by a later one.
    Missed { first: i64, last: i64, count: usize },
    /// Fire the scheduled time `scheduled`, due at `due`.
    Fire { scheduled: i64, due: i64 },
}

/// The decision for one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// The cursor after the actions (the latest scheduled time decided).
    pub cursor: i64,
    /// When to decide again at the latest; `None` when nothing more will happen.
    pub wake_at: Option<i64>,
}

/// The delay before launch attempt `attempts + 1` of a firing.
pub fn backoff(attempts: u32) -> i64 {
    1i64.checked_shl(attempts.min(20))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Decides for one schedule at `now`. `enabled` is its State; a disabled schedule fires
/// nothing new (its open firings still finish).
pub fn decide(
    timing: &Timing,
    policy: Policy,
    schedule_arn: &str,
    cursor: i64,
    firings: &[Firing],
    now: i64,
    enabled: bool,
) -> Decision {
    let mut actions = Vec::new();
    let mut wake_at: Option<i64> = None;
    let mut wake = |at: i64| wake_at = Some(wake_at.map_or(at, |w: i64| w.min(at)));
    for (index, firing) in firings.iter().enumerate() {
        match firing.status {
            FiringStatus::Launching => actions.push(Action::Recover(index)),
            FiringStatus::Retrying => {
                let at = firing.retry_at.unwrap_or(now);
                if now - firing.scheduled > policy.max_age {
                    actions.push(Action::GiveUp {
                        index,
                        reason: format!(
                            "the firing is older than MaximumEventAgeInSeconds ({} s)",
                            policy.max_age
                        ),
                    });
                } else if firing.attempts > policy.max_retries {
                    actions.push(Action::GiveUp {
                        index,
                        reason: format!(
                            "{} attempts failed (MaximumRetryAttempts {})",
                            firing.attempts, policy.max_retries
                        ),
                    });
                } else if at <= now {
                    actions.push(Action::Retry(index));
                } else {
                    wake(at);
                }
            }
            FiringStatus::Launched | FiringStatus::Failed => {}
        }
    }
    let mut cursor = cursor;
    if enabled {
        let due_of = |scheduled: i64| {
            scheduled + flexible_offset(schedule_arn, scheduled, policy.window_minutes)
        };
        // Every scheduled time after the cursor that is due by now: the latest is fired if
        // it is young enough; the others are missed.
        let mut due_now: Option<(i64, i64)> = None;
        let mut missed: Option<(i64, i64, usize)> = None;
        let mut at = cursor;
        let mut walked = 0;
        while let Some(next) = timing.next_after(at) {
            let due = due_of(next);
            if due > now {
                wake(due);
                break;
            }
            walked += 1;
            if walked > WALK_LIMIT {
                // Too many to walk at once: these are all missed, and the next decision
                // (at once) goes on from here.
                if let Some((latest, _)) = due_now.take() {
                    missed = Some(match missed {
                        None => (latest, latest, 1),
                        Some((first, _, count)) => (first, latest, count + 1),
                    });
                }
                wake(now);
                break;
            }
            if let Some((earlier, _)) = due_now.replace((next, due)) {
                missed = Some(match missed {
                    None => (earlier, earlier, 1),
                    Some((first, _, count)) => (first, earlier, count + 1),
                });
            }
            at = next;
        }
        if let Some((scheduled, _)) = due_now
            && now - scheduled > policy.max_age
        {
            missed = Some(match missed {
                None => (scheduled, scheduled, 1),
                Some((first, _, count)) => (first, scheduled, count + 1),
            });
            due_now = None;
        }
        if let Some((first, last, count)) = missed {
            actions.push(Action::Missed { first, last, count });
        }
        if let Some((scheduled, due)) = due_now {
            actions.push(Action::Fire { scheduled, due });
        }
        cursor = at;
    }
    Decision {
        actions,
        cursor,
        wake_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:scheduler:us-east-1:000000000000:schedule/default/s";

    fn minutely(anchor: i64) -> Timing {
        Timing::new("rate(1 minute)", None, None, None, anchor).unwrap()
    }

    fn firing(
        scheduled: i64,
        status: FiringStatus,
        attempts: u32,
        retry_at: Option<i64>,
    ) -> Firing {
        Firing {
            scheduled,
            due: scheduled,
            status,
            attempts,
            task_arns: Vec::new(),
            retry_at,
            reason: None,
        }
    }

    #[test]
    fn a_due_time_fires_once_and_the_next_is_awaited() {
        let timing = minutely(600);
        let decision = decide(&timing, Policy::default(), ARN, 599, &[], 600, true);
        assert_eq!(
            decision.actions,
            [Action::Fire {
                scheduled: 600,
                due: 600
            }]
        );
        assert_eq!((decision.cursor, decision.wake_at), (600, Some(660)));
        // Decided again with the cursor moved: nothing, until the next minute.
        let again = decide(&timing, Policy::default(), ARN, 600, &[], 630, true);
        assert_eq!((again.actions, again.wake_at), (vec![], Some(660)));
    }

    #[test]
    fn after_downtime_the_latest_young_firing_fires_and_the_others_are_missed() {
        let timing = minutely(600);
        let policy = Policy {
            max_age: 300,
            ..Policy::default()
        };
        // Down from 600 to 1210: 600..=1200 passed (11 times); 1200 is young enough.
        let decision = decide(&timing, policy, ARN, 599, &[], 1210, true);
        assert_eq!(
            decision.actions,
            [
                Action::Missed {
                    first: 600,
                    last: 1140,
                    count: 10
                },
                Action::Fire {
                    scheduled: 1200,
                    due: 1200
                }
            ]
        );
        assert_eq!(decision.cursor, 1200);
        // The latest is older than the maximum age: all of them are missed.
        let hourly = Timing::new("rate(1 hour)", None, None, None, 0).unwrap();
        let late = decide(&hourly, policy, ARN, -1, &[], 3600 + 400, true);
        assert_eq!(
            late.actions,
            [Action::Missed {
                first: 0,
                last: 3600,
                count: 2
            }]
        );
        assert_eq!((late.cursor, late.wake_at), (3600, Some(7200)));
    }

    #[test]
    fn open_firings_are_recovered_retried_or_given_up() {
        let timing = minutely(0);
        let policy = Policy {
            max_retries: 2,
            max_age: 600,
            window_minutes: 0,
        };
        let firings = [
            firing(0, FiringStatus::Launched, 0, None),
            firing(60, FiringStatus::Launching, 0, None),
            firing(120, FiringStatus::Retrying, 1, Some(125)),
            firing(180, FiringStatus::Retrying, 1, Some(200)),
            firing(240, FiringStatus::Retrying, 3, Some(245)),
            firing(-1000, FiringStatus::Retrying, 1, Some(130)),
        ];
        let decision = decide(&timing, policy, ARN, 240, &firings, 130, false);
        assert_eq!(
            decision.actions,
            [
                Action::Recover(1),
                Action::Retry(2),
                Action::GiveUp {
                    index: 4,
                    reason: "3 attempts failed (MaximumRetryAttempts 2)".into()
                },
                Action::GiveUp {
                    index: 5,
                    reason: "the firing is older than MaximumEventAgeInSeconds (600 s)".into()
                },
            ]
        );
        // Disabled: no new firing, but the pending retry still wakes it.
        assert_eq!(decision.wake_at, Some(200));
    }

    #[test]
    fn a_flexible_window_delays_each_firing_by_its_own_offset() {
        let timing = minutely(0);
        let policy = Policy {
            window_minutes: 10,
            ..Policy::default()
        };
        let offset = flexible_offset(ARN, 60, 10);
        let early = decide(&timing, policy, ARN, 0, &[], 60 + offset - 1, true);
        assert!(early.actions.is_empty());
        assert_eq!(early.wake_at.map(|w| w >= 60 + offset), Some(true));
        let on_time = decide(&timing, policy, ARN, 0, &[], 60 + offset, true);
        assert!(on_time.actions.contains(&Action::Fire {
            scheduled: 60,
            due: 60 + offset
        }));
    }

    #[test]
    fn a_one_time_schedule_has_nothing_after_its_firing() {
        let timing = Timing::new("at(1970-01-01T00:10:00)", None, None, None, 0).unwrap();
        let decision = decide(&timing, Policy::default(), ARN, 0, &[], 600, true);
        assert_eq!(
            decision.actions,
            [Action::Fire {
                scheduled: 600,
                due: 600
            }]
        );
        let after = decide(&timing, Policy::default(), ARN, 600, &[], 700, true);
        assert_eq!((after.actions, after.wake_at), (vec![], None));
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(
            (0..12).map(backoff).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
    }
}
