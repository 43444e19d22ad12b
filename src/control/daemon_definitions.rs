//! Daemon task definition revisions as stored: `daemon-taskdefs/FAMILY/REVISION` (zero-padded)
//! holding `{family, revision, status, registeredAt, document, daemon, tags,
//! taskDefinitionArn}`: `document` is the runnable task definition (validated by
//! `crate::taskdef` like any other, so the agent runs it unchanged), `daemon` the members only
//! a daemon task definition has (`pidMode`, `ipcMode`), and `taskDefinitionArn` the daemon task
//! definition's own ARN, which its tasks carry.
//!
//! Architecture invariant: a separate key space from `taskdefs/`, so a daemon family never
//! shadows a task definition family of the same name.

use serde_json::Value;

use super::ControlError;
use crate::store::Store;

/// The part of an ARN that names a daemon task definition.
pub const ARN_KIND: &str = "daemon-task-definition";

/// The store key of a revision.
pub fn key(family: &str, revision: u64) -> String {
    format!("daemon-taskdefs/{family}/{revision:010}")
}

/// A daemon task definition's ARN.
pub fn arn(scope: &crate::arn::ArnScope, family: &str, revision: u64) -> String {
    format!(
        "arn:aws:ecs:{}:{}:{ARN_KIND}/{family}:{revision}",
        scope.region, scope.account
    )
}

/// The stored record `given` names: `family` (its latest ACTIVE revision), `family:revision`
/// or an ARN; with its store revision.
pub fn find(store: &dyn Store, given: &str) -> Result<(Value, u64), ControlError> {
    let name = crate::arn::resource_name(given, ARN_KIND);
    let not_found = || {
        ControlError::NotFound(format!(
            "Unable to describe daemon task definition: {given}"
        ))
    };
    match name.rsplit_once(':') {
        Some((family, revision)) => {
            let revision: u64 = revision.parse().map_err(|_| {
                ControlError::Invalid(format!(
                    "daemonTaskDefinition: \"{given}\" is not family, family:revision or an ARN"
                ))
            })?;
            let found = store.get(&key(family, revision))?.ok_or_else(not_found)?;
            Ok((found.value, found.revision))
        }
        None => store
            .list(&format!("daemon-taskdefs/{name}/"))?
            .into_iter()
            .rev()
            .find(|(_, v)| v.value["status"] == "ACTIVE")
            .map(|(_, v)| (v.value, v.revision))
            .ok_or_else(not_found),
    }
}

/// The runnable document of the revision an ARN names, if it is a daemon task definition's;
/// `Some(None)` when it is one but is gone.
pub fn document_of_arn(store: &dyn Store, arn: &str) -> Option<Option<Value>> {
    if !arn.contains(&format!(":{ARN_KIND}/")) {
        return None;
    }
    Some(
        find(store, arn)
            .ok()
            .map(|(record, _)| record["document"].clone()),
    )
}
