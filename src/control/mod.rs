//! The control plane's operations on its records, below both the ECS handlers (`api`, which
//! only translates ECS shapes) and the scheduler (`controller`): placing and launching tasks,
//! asking them to stop, recording what hosts report, the hosts' registry and liveness, the
//! HTTP routes the gateway serves, and the hosts' latest usage figures.
//!
//! ```text
//!   api (ECS JSON) ──┐
//!   controller ──────┼──> Control ──> records (typed) ──> store
//!   gateway ─────────┘       └──> hosts (desired sets, liveness) ──> agents
//! ```
//!
//! Architecture invariant: nothing here knows an ECS request shape, and nothing here calls
//! back into `api` or `controller`.

pub mod attachments;
pub mod daemon_definitions;
pub mod definitions;
pub mod hosts;
pub mod launch;
pub mod leadership;
pub mod placement;
pub mod providers;
pub mod recorder;
pub mod routes;
pub mod usage;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::arn::ArnScope;
use crate::store::{Store, StoreError};
use hosts::{HostError, Hosts};

pub use launch::{Launch, Launched, PlacementFailure, launch};
pub use recorder::{expire_stopped, record_host_lost, record_report};

/// Why an operation of the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hosts(#[from] HostError),
    /// A reference names nothing there is (ECS answers ClientException).
    #[error("{0}")]
    NotFound(String),
    /// A value given is not acceptable (ECS answers InvalidParameterException).
    #[error("{0}")]
    Invalid(String),
}

/// The control plane's state and the locks its writers share.
pub struct Control {
    pub store: Arc<dyn Store>,
    pub arns: ArnScope,
    /// The capacity hosts: their records, desired sets and liveness.
    pub hosts: Arc<Hosts>,
    /// Held from choosing a host until the task is recorded on it, so two launches never
    /// spend the same capacity.
    placement: Arc<Mutex<()>>,
    /// Held by every write of a service record (API and scheduler), so a scheduler pass never
    /// decides on a service the API is changing.
    services: Arc<Mutex<()>>,
    /// Wakes the scheduler at once (a service was created or changed).
    scheduler_wake: Arc<tokio::sync::Notify>,
    /// The hosts' latest memory and CPU reports per task.
    pub usage: Arc<usage::UsageBoard>,
    /// Where task output is kept; `None` for a control plane without logs.
    pub logs: Option<crate::logs::LogStore>,
}

impl Control {
    pub fn new(store: Arc<dyn Store>, arns: ArnScope, hosts: Arc<Hosts>) -> Self {
        Self {
            store,
            arns,
            hosts,
            placement: Arc::default(),
            services: Arc::default(),
            scheduler_wake: Arc::default(),
            usage: Arc::default(),
            logs: None,
        }
    }

    /// The same control plane writing through `store` instead: the scheduler leader's view,
    /// whose every write is fenced by its term (`leadership::Fenced`). Locks, wake-ups and
    /// figures are shared with `self`.
    pub fn writing_through(&self, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            arns: self.arns.clone(),
            hosts: self.hosts.clone(),
            placement: self.placement.clone(),
            services: self.services.clone(),
            scheduler_wake: self.scheduler_wake.clone(),
            usage: self.usage.clone(),
            logs: self.logs.clone(),
        }
    }

    /// Keeps task output in `logs`; deletes the logs of tasks the store no longer has (they
    /// were forgotten while the server was down).
    pub fn with_logs(mut self, logs: crate::logs::LogStore) -> Result<Self, ControlError> {
        for task_id in logs.task_ids() {
            if self
                .store
                .get(&crate::records::task_key(&task_id))?
                .is_none()
            {
                logs.remove(&task_id);
            }
        }
        self.logs = Some(logs);
        Ok(self)
    }

    /// Held while a service record is read, decided on and written.
    pub fn lock_services(&self) -> MutexGuard<'_, ()> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_placement(&self) -> MutexGuard<'_, ()> {
        self.placement.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the scheduler for a pass now.
    pub fn wake_scheduler(&self) {
        self.scheduler_wake.notify_one();
    }

    /// Resolves when someone asked for a scheduler pass.
    pub async fn scheduler_asked(&self) {
        self.scheduler_wake.notified().await
    }

    /// Asks task `task_id` to stop with `stop_code` and `reason`, unless it was already asked;
    /// `None` if there is no such task. Its host hears of it from the store.
    pub fn request_stop(
        &self,
        task_id: &str,
        stop_code: crate::records::StopCode,
        reason: &str,
    ) -> Result<Option<crate::records::TaskRecord>, ControlError> {
        self.request_stop_guarded(task_id, stop_code, reason, &[])
    }

    /// [`request_stop`](Self::request_stop), written only while `guard` holds (the service
    /// record a scheduler pass decided on, at the revision it read).
    pub fn request_stop_guarded(
        &self,
        task_id: &str,
        stop_code: crate::records::StopCode,
        reason: &str,
        guard: &[(String, crate::store::Expect)],
    ) -> Result<Option<crate::records::TaskRecord>, ControlError> {
        let now = crate::records::timestamp();
        Ok(crate::records::update_task_guarded(
            self.store.as_ref(),
            task_id,
            guard,
            |task| task.request_stop(stop_code, reason, now),
        )?)
    }
}
