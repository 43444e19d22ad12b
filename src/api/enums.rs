//! ECS's enums, checked on every request before an operation runs: each request member that
//! botocore's ECS model types as an enum (`ecs_enums.json`, written by
//! `scripts/gen-ecs-enums.py`) must hold one of its values, or the call is an
//! InvalidParameterException naming the member's path and the values it takes, as ECS
//! answers (`ListTaskDefinitions status=ALL` is refused, not an empty list).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use super::ApiError;

/// Per operation: (member path, allowed values).
type Table = HashMap<String, Vec<(String, Vec<String>)>>;

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let model: Value = serde_json::from_str(include_str!("ecs_enums.json")).unwrap_or_default();
    let mut table = Table::new();
    for (operation, members) in model["operations"].as_object().into_iter().flatten() {
        let members = members
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let path = entry[0].as_str()?.to_string();
                let values = entry[1]
                    .as_array()?
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                Some((path, values))
            })
            .collect();
        table.insert(operation.clone(), members);
    }
    table
});

/// Checks every enum member of a request to `operation` (an ECS action name).
pub fn check(operation: &str, body: &Value) -> Result<(), ApiError> {
    let Some(members) = TABLE.get(operation) else {
        return Ok(());
    };
    for (path, allowed) in members {
        check_path(body, path, String::new(), allowed)?;
    }
    Ok(())
}

/// Walks `path` (`a.b[].c`, `m{}` for a map's values) from `value`, checking what it reaches;
/// `at` is the concrete path so far, for the error.
fn check_path(value: &Value, path: &str, at: String, allowed: &[String]) -> Result<(), ApiError> {
    if path.is_empty() {
        return match value {
            Value::Null => Ok(()),
            Value::String(text) if allowed.iter().any(|a| a == text) => Ok(()),
            other => Err(ApiError::invalid(format!(
                "{at}: must be one of {} (got {other})",
                allowed.join(", ")
            ))),
        };
    }
    let (head, rest) = match path.find(['.', '[', '{']) {
        Some(0) => ("", path),
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    if !head.is_empty() {
        let Some(member) = value.get(head) else {
            return Ok(());
        };
        let at = if at.is_empty() {
            head.to_string()
        } else {
            format!("{at}.{head}")
        };
        return check_path(member, rest, at, allowed);
    }
    if let Some(rest) = rest.strip_prefix('.') {
        return check_path(value, rest, at, allowed);
    }
    if let Some(rest) = rest.strip_prefix("[]") {
        for (i, item) in value.as_array().into_iter().flatten().enumerate() {
            check_path(item, rest, format!("{at}[{i}]"), allowed)?;
        }
        return Ok(());
    }
    if let Some(rest) = rest.strip_prefix("{}") {
        for (key, item) in value.as_object().into_iter().flatten() {
            check_path(item, rest, format!("{at}.{key}"), allowed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_of_the_model_are_checked_by_path() {
        assert!(check("ListTaskDefinitions", &json!({"status": "ACTIVE"})).is_ok());
        let error = check("ListTaskDefinitions", &json!({"status": "ALL"})).unwrap_err();
        assert_eq!(
            error.message,
            "status: must be one of ACTIVE, INACTIVE, DELETE_IN_PROGRESS (got \"ALL\")"
        );
        let error = check(
            "RunTask",
            &json!({"placementConstraints": [{"type": "memberOf"}, {"type": "nearby"}]}),
        )
        .unwrap_err();
        assert!(
            error
                .message
                .starts_with("placementConstraints[1].type: must be one of"),
            "{}",
            error.message
        );
        let error = check(
            "RegisterTaskDefinition",
            &json!({"containerDefinitions": [{"logConfiguration": {"logDriver": "carrier-pigeon"}}]}),
        )
        .unwrap_err();
        assert!(
            error
                .message
                .starts_with("containerDefinitions[0].logConfiguration.logDriver"),
            "{}",
            error.message
        );
        assert!(check("DescribeClusters", &json!({"include": ["TAGS", 3]})).is_err());
        assert!(check("NoSuchOperation", &json!({"status": "x"})).is_ok());
    }
}
