//! Container health checks, on ECS's timings (`interval`, `timeout`, `retries`, `startPeriod`).
//!
//! For a container image's container, `CMD` and `CMD-SHELL` run inside it (`runc exec`), as
//! Docker does. For a Wasm container, `["CMD", ARGS...]` runs a fresh instance of the container's own image
//! with ARGS as its arguments (argv[0] is the container's name, as for the container itself),
//! with the container's environment, mounts and limits, the way `docker exec` runs a command
//! inside a running container: exit 0 is a pass, anything else (or no exit within `timeout`) a
//! failure. `["CMD-SHELL", "a b c"]` is the same with the string split at whitespace, since a
//! Wasm image has no shell. A `wasi:http` component has no arguments to run with: its check is
//! an HTTP GET, as `curl -f http://localhost/PATH` inside it would be (the URL's path, served
//! by a fresh instance; a status below 400 passes). The first check runs as soon as the
//! container starts, then one every `interval`.
//!
//! Status: UNKNOWN until the first pass or until failures count; HEALTHY after a pass; UNHEALTHY
//! after `retries` failures in a row. Failures within `startPeriod` of the start do not count
//! until the container was healthy once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::capacity::{CheckCommand, ContainerSpec, PreparedImage};
use crate::taskdef::HealthCheck;

/// Health as ECS words it (one enum for the agent and the records).
pub use crate::records::HealthStatus;

/// A container's health check, as run.
#[derive(Debug, Clone)]
pub struct HealthProbe {
    /// The arguments of the checking instance (after argv[0]).
    pub args: Vec<String>,
    /// What runs inside a container image's container: the CMD's arguments, or
    /// `/bin/sh -c STRING` for CMD-SHELL.
    pub exec: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl HealthProbe {
    /// The probe of a definition's `healthCheck` (ECS's defaults: interval 30 s, timeout 5 s,
    /// retries 3, startPeriod 0). The definition was validated, so the command has a form.
    pub fn from_definition(check: &HealthCheck) -> Self {
        let args = match check.command.split_first() {
            Some((form, rest)) if form == "CMD-SHELL" => rest
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_string)
                .collect(),
            Some((_, rest)) => rest.to_vec(),
            None => Vec::new(),
        };
        let exec = match check.command.split_first() {
            Some((form, rest)) if form == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            Some((_, rest)) => rest.to_vec(),
            None => Vec::new(),
        };
        let seconds = |value: Option<i64>, default: u64| {
            Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
        };
        Self {
            args,
            exec,
            interval: seconds(check.interval, 30),
            timeout: seconds(check.timeout, 5),
            retries: check
                .retries
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(3)
                .max(1),
            start_period: seconds(check.start_period, 0),
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Pass,
    Fail(String),
}

/// The status machine: one result in, the new status out.
#[derive(Debug, Clone)]
pub struct HealthState {
    pub status: HealthStatus,
    failures: u32,
    been_healthy: bool,
}

impl Default for HealthState {
    fn default() -> Self {
        Self {
            status: HealthStatus::Unknown,
            failures: 0,
            been_healthy: false,
        }
    }
}

impl HealthState {
    pub fn record(&mut self, result: &CheckResult, probe: &HealthProbe, since_start: Duration) {
        match result {
            CheckResult::Pass => {
                self.failures = 0;
                self.been_healthy = true;
                self.status = HealthStatus::Healthy;
            }
            CheckResult::Fail(_) if since_start < probe.start_period && !self.been_healthy => {}
            CheckResult::Fail(_) => {
                self.failures += 1;
                if self.failures >= probe.retries {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
    }
}

/// Checks container `index` until aborted, sending every change of its status.
pub async fn watch(
    index: usize,
    target: Arc<dyn PreparedImage>,
    container: ContainerSpec,
    probe: HealthProbe,
    changes: mpsc::UnboundedSender<(usize, HealthStatus)>,
) {
    let started = Instant::now();
    let mut state = HealthState::default();
    loop {
        let command = CheckCommand {
            args: &probe.args,
            exec: &probe.exec,
            timeout: probe.timeout,
        };
        let result = match target.check(&container, command).await {
            Ok(()) => CheckResult::Pass,
            Err(why) => CheckResult::Fail(why),
        };
        let before = state.status;
        state.record(&result, &probe, started.elapsed());
        tracing::debug!(container = %container.name, ?result, status = state.status.as_str(), "health check");
        if state.status != before && changes.send((index, state.status)).is_err() {
            return;
        }
        tokio::time::sleep(probe.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(retries: u32, start_period: u64) -> HealthProbe {
        HealthProbe {
            args: Vec::new(),
            exec: Vec::new(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            retries,
            start_period: Duration::from_secs(start_period),
        }
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy_and_a_pass_heals() {
        let probe = probe(3, 0);
        let mut state = HealthState::default();
        let fail = CheckResult::Fail("exit 1".into());
        let late = Duration::from_secs(60);
        state.record(&fail, &probe, late);
        state.record(&fail, &probe, late);
        assert_eq!(state.status, HealthStatus::Unknown);
        state.record(&CheckResult::Pass, &probe, late);
        assert_eq!(state.status, HealthStatus::Healthy);
        state.record(&fail, &probe, late);
        state.record(&fail, &probe, late);
        assert_eq!(state.status, HealthStatus::Healthy);
        state.record(&fail, &probe, late);
        assert_eq!(state.status, HealthStatus::Unhealthy);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let probe = probe(1, 10);
        let mut state = HealthState::default();
        let fail = CheckResult::Fail("exit 1".into());
        state.record(&fail, &probe, Duration::from_secs(3));
        assert_eq!(state.status, HealthStatus::Unknown);
        state.record(&fail, &probe, Duration::from_secs(11));
        assert_eq!(state.status, HealthStatus::Unhealthy);
    }

    #[test]
    fn command_forms() {
        let check = |command: &[&str]| HealthCheck {
            command: command.iter().map(|s| s.to_string()).collect(),
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        };
        let probe = HealthProbe::from_definition(&check(&["CMD", "check", "/data/ok"]));
        assert_eq!(probe.args, ["check", "/data/ok"]);
        assert_eq!((probe.interval.as_secs(), probe.retries), (30, 3));
        let shell = HealthProbe::from_definition(&check(&["CMD-SHELL", "check  /data/ok"]));
        assert_eq!(shell.args, ["check", "/data/ok"]);
    }
}
