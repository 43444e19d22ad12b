//! Task definition revisions as stored: `taskdefs/FAMILY/REVISION` (zero-padded, so keys sort
//! by revision) holding `{family, revision, status, registeredAt, document, tags}`, the
//! document as registered.

use serde_json::Value;

use super::ControlError;
use crate::taskdef::TaskDefinition;

/// The store key of a revision.
pub fn key(family: &str, revision: u64) -> String {
    format!("taskdefs/{family}/{revision:010}")
}

/// The stored record a `taskDefinition` reference names: `family` (its latest ACTIVE
/// revision), `family:revision`, or an ARN; with its store revision.
pub fn find(store: &dyn crate::store::Store, given: &str) -> Result<(Value, u64), ControlError> {
    let name = crate::arn::resource_name(given, "task-definition");
    let not_found =
        || ControlError::NotFound(format!("Unable to describe task definition: {given}"));
    match name.rsplit_once(':') {
        Some((family, revision)) => {
            let revision: u64 = revision.parse().map_err(|_| {
                ControlError::Invalid(format!(
                    "taskDefinition: \"{given}\" is not family, family:revision or an ARN"
                ))
            })?;
            let found = store.get(&key(family, revision))?.ok_or_else(not_found)?;
            Ok((found.value, found.revision))
        }
        None => store
            .list(&format!("taskdefs/{name}/"))?
            .into_iter()
            .rev()
            .find(|(_, v)| v.value["status"] == "ACTIVE")
            .map(|(_, v)| (v.value, v.revision))
            .ok_or_else(not_found),
    }
}

/// The validated definition of a stored record (a record that no longer validates, after an
/// upgrade tightened a rule, is named).
pub fn definition_of(record: &Value, given: &str) -> Result<TaskDefinition, ControlError> {
    TaskDefinition::from_value(record["document"].clone()).map_err(|e| {
        ControlError::NotFound(format!(
            "the stored task definition {given} no longer validates: {e}"
        ))
    })
}
