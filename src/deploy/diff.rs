//! What changes in a resource's properties, per property path, old → new, for a person to
//! read before a deploy: `DesiredCount: 1 → 2`,
//! `ContainerDefinitions[web].Environment[LOG_LEVEL].Value: "info" → "debug"`. Lists of
//! objects that carry a `Name` (or `Key`) are matched by it, so adding one entry is one line,
//! not a shift of every later index; a resource to be created lists every leaf. Pure.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One property that changes; a missing side is `None` (added or removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyChange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The changes from `old` to `new` properties, in the order of their paths as written.
pub fn property_changes(old: &Value, new: &Value) -> Vec<PropertyChange> {
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    out
}

/// Every property of a resource to be created, one per leaf value (lists of named objects
/// by name, other lists whole).
pub fn every_property(new: &Value) -> Vec<PropertyChange> {
    let mut out = Vec::new();
    leaves("", new, &mut out);
    out
}

fn leaves(at: &str, value: &Value, out: &mut Vec<PropertyChange>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, member) in map {
                leaves(&join(at, key), member, out);
            }
        }
        Value::Array(items) if !items.is_empty() => match names(items) {
            Some(names) => {
                for (name, item) in names.iter().zip(items) {
                    let at = format!("{at}[{name}]");
                    // The name is in the path already.
                    let rest: serde_json::Map<String, Value> = item
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, v)| v.as_str() != Some(name))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if rest.is_empty() {
                        leaves(&at, item, out);
                    } else {
                        leaves(&at, &Value::Object(rest), out);
                    }
                }
            }
            None => out.push(PropertyChange {
                path: at.to_string(),
                old: None,
                new: Some(value.clone()),
            }),
        },
        _ => out.push(PropertyChange {
            path: at.to_string(),
            old: None,
            new: Some(value.clone()),
        }),
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// The name an item of a list is known by.
fn item_name(item: &Value) -> Option<&str> {
    ["Name", "Key", "name", "key"]
        .iter()
        .find_map(|k| item.get(*k).and_then(Value::as_str))
}

/// The names of a list's items, if every item has one.
fn names(items: &[Value]) -> Option<Vec<&str>> {
    items.iter().map(item_name).collect()
}

fn walk(at: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<PropertyChange>) {
    match (old, new) {
        (Some(a), Some(b)) if a == b => {}
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (key, value) in a {
                walk(&join(at, key), Some(value), b.get(key), out);
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    walk(&join(at, key), None, Some(value), out);
                }
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => match (names(a), names(b)) {
            (Some(names_a), Some(names_b)) => {
                for (name, item) in names_a.iter().zip(a) {
                    let other = names_b.iter().position(|n| n == name).map(|i| &b[i]);
                    walk(&format!("{at}[{name}]"), Some(item), other, out);
                }
                for (name, item) in names_b.iter().zip(b) {
                    if !names_a.contains(name) {
                        walk(&format!("{at}[{name}]"), None, Some(item), out);
                    }
                }
            }
            _ if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(&format!("{at}[{i}]"), Some(x), Some(y), out);
                }
            }
            _ => out.push(PropertyChange {
                path: at.to_string(),
                old: Some(Value::Array(a.clone())),
                new: Some(Value::Array(b.clone())),
            }),
        },
        (old, new) => out.push(PropertyChange {
            path: at.to_string(),
            old: old.cloned(),
            new: new.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(old: Value, new: Value) -> Vec<String> {
        property_changes(&old, &new)
            .into_iter()
            .map(|c| {
                let show = |v: Option<Value>| v.map_or("(none)".to_string(), |v| v.to_string());
                format!("{}: {} → {}", c.path, show(c.old), show(c.new))
            })
            .collect()
    }

    #[test]
    fn changes_are_named_by_path_and_list_items_by_name() {
        let old = json!({
            "DesiredCount": 1,
            "ContainerDefinitions": [{"Name": "web", "Environment": [
                {"Name": "A", "Value": "1"}, {"Name": "B", "Value": "2"}
            ]}],
            "Gone": true,
        });
        let new = json!({
            "DesiredCount": 2,
            "ContainerDefinitions": [{"Name": "web", "Environment": [
                {"Name": "A", "Value": "1"}, {"Name": "AA", "Value": "new"}, {"Name": "B", "Value": "3"}
            ]}],
            "Command": ["x", "y"],
        });
        assert_eq!(
            lines(old, new),
            [
                "DesiredCount: 1 → 2",
                "ContainerDefinitions[web].Environment[B].Value: \"2\" → \"3\"",
                "ContainerDefinitions[web].Environment[AA]: (none) → {\"Name\":\"AA\",\"Value\":\"new\"}",
                "Gone: true → (none)",
                "Command: (none) → [\"x\",\"y\"]",
            ]
        );
        assert!(property_changes(&json!({"a": [1, 2]}), &json!({"a": [1, 2]})).is_empty());
        assert_eq!(
            lines(json!({"a": [1, 2]}), json!({"a": [1, 3]})),
            ["a[1]: 2 → 3"]
        );
        assert_eq!(
            lines(json!({"a": [1]}), json!({"a": [1, 3]})),
            ["a: [1] → [1,3]"]
        );
    }

    #[test]
    fn a_created_resource_lists_every_leaf() {
        let created = every_property(&json!({
            "Family": "web",
            "ContainerDefinitions": [{"Name": "web", "Environment": [{"Name": "A", "Value": "1"}],
                                      "Command": ["serve"]}],
        }));
        let paths: Vec<(String, Value)> = created
            .into_iter()
            .map(|c| (c.path, c.new.unwrap()))
            .collect();
        assert_eq!(
            paths,
            [
                ("Family".to_string(), json!("web")),
                (
                    "ContainerDefinitions[web].Environment[A].Value".to_string(),
                    json!("1")
                ),
                (
                    "ContainerDefinitions[web].Command".to_string(),
                    json!(["serve"])
                ),
            ]
        );
    }
}
