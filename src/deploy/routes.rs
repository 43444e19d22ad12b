//! Load balancer listener rules in front of a service, as gateway routes.
//!
//! A CDK stack routes HTTP to a service through an Application Load Balancer: a listener whose
//! rule (path pattern, host header) forwards to a target group, and the service's
//! `LoadBalancers` entry that registers a container in that target group. wasmgate has one
//! gateway instead of load balancers, and it routes by the container's `wasmgate.http.path` /
//! `wasmgate.http.host` labels. So before a deploy, a rule that says unambiguously which
//! requests reach which container becomes those labels on that container in the task
//! definition the service runs; the load balancer, listener, rule and target group themselves
//! stay records only (as in `resources::NOT_APPLICABLE`). What cannot be said as one gateway
//! route (several path patterns, wildcards inside a pattern, header or query conditions, a
//! target group forwarded to from two rules) is not routed, and the note says why.
//!
//! This works on the template as written (before intrinsic functions are resolved), following
//! `Ref`s between logical ids, so the labels are part of the task definition's properties: an
//! unchanged template gives the same definition, and a changed rule is an update of it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::template::Template;

const LISTENER: &str = "AWS::ElasticLoadBalancingV2::Listener";
const LISTENER_RULE: &str = "AWS::ElasticLoadBalancingV2::ListenerRule";
const SERVICE: &str = "AWS::ECS::Service";
const TASK_DEFINITION: &str = "AWS::ECS::TaskDefinition";
const LABEL_PREFIX: &str = "wasmgate.http.";

/// Which requests one listener rule (or a listener's default action) forwards.
#[derive(Debug, Clone, PartialEq)]
struct Forward {
    /// The Listener or ListenerRule's logical id.
    from: String,
    /// The gateway route it is, or why it cannot be one.
    route: Result<Route, String>,
}

/// A task definition's logical id and one of its containers' names.
type Container = (String, String);

/// A route a rule gives a container, and the service that registers it.
struct Routed {
    route: Route,
    /// The rule's (or listener's) logical id.
    from: String,
    service: String,
}

/// A gateway route: a path prefix and/or a host.
#[derive(Debug, Clone, PartialEq, Default)]
struct Route {
    path: Option<String>,
    host: Option<String>,
}

impl Route {
    fn describe(&self) -> String {
        match (&self.path, &self.host) {
            (Some(path), Some(host)) => format!("host {host}, path {path}"),
            (Some(path), None) => format!("path {path}"),
            (None, Some(host)) => format!("host {host}"),
            (None, None) => "every request".to_string(),
        }
    }
}

/// Adds the gateway labels that the template's listener rules imply to the containers they
/// forward to. Returns a note per logical id (rules and listeners) saying what it routes, or
/// why it routes nothing; a deploy reports them.
pub fn route_listeners(template: &mut Template) -> BTreeMap<String, String> {
    let mut notes = BTreeMap::new();
    let forwards = forwards_by_target_group(template);
    let mut wanted: BTreeMap<Container, Vec<Routed>> = BTreeMap::new();
    for (service_id, service) in &template.resources {
        if service.kind != SERVICE {
            continue;
        }
        let Some(entries) = service.properties["LoadBalancers"].as_array() else {
            continue;
        };
        for entry in entries {
            let Some(group) = reference(&entry["TargetGroupArn"]) else {
                continue;
            };
            let Some(found) = forwards.get(group) else {
                continue;
            };
            let not_routed = |why: String| {
                found
                    .iter()
                    .map(|f| (f.from.clone(), format!("not routed: {why}")))
                    .collect::<Vec<_>>()
            };
            let (Some(container), Some(definition)) = (
                entry["ContainerName"].as_str(),
                reference(&service.properties["TaskDefinition"]),
            ) else {
                notes.extend(not_routed(format!(
                    "service {service_id}'s load balancer entry names its container or task \
                     definition through a function, not literally"
                )));
                continue;
            };
            if found.len() > 1 {
                let from: Vec<&str> = found.iter().map(|f| f.from.as_str()).collect();
                notes.extend(not_routed(format!(
                    "target group {group} is forwarded to from {} (the gateway gives a \
                     container one route)",
                    from.join(" and ")
                )));
                continue;
            }
            let forward = &found[0];
            match &forward.route {
                Ok(route) => wanted
                    .entry((definition.to_string(), container.to_string()))
                    .or_default()
                    .push(Routed {
                        route: route.clone(),
                        from: forward.from.clone(),
                        service: service_id.clone(),
                    }),
                Err(why) => {
                    notes.insert(forward.from.clone(), format!("not routed: {why}"));
                }
            }
        }
    }
    for ((definition, container), routes) in wanted {
        let Routed { route, service, .. } = &routes[0];
        if routes.iter().any(|other| other.route != *route) {
            for Routed { from, .. } in &routes {
                notes.insert(
                    from.clone(),
                    format!(
                        "not routed: container {container} of task definition {definition} \
                         is a target of rules with different routes"
                    ),
                );
            }
            continue;
        }
        let note = match add_labels(template, &definition, &container, route) {
            Ok(()) => format!(
                "routes {} to service {service} (container {container}) through the gateway",
                route.describe()
            ),
            Err(why) => format!("not routed: {why}"),
        };
        for Routed { from, .. } in &routes {
            notes.insert(from.clone(), note.clone());
        }
    }
    notes
}

/// Every target group forwarded to, with the rules and listeners that forward to it.
fn forwards_by_target_group(template: &Template) -> BTreeMap<String, Vec<Forward>> {
    let mut out: BTreeMap<String, Vec<Forward>> = BTreeMap::new();
    for (id, resource) in &template.resources {
        let (actions, route) = match resource.kind.as_str() {
            LISTENER => (&resource.properties["DefaultActions"], Ok(Route::default())),
            LISTENER_RULE => (
                &resource.properties["Actions"],
                route_of(&resource.properties["Conditions"]),
            ),
            _ => continue,
        };
        for group in forwarded_groups(actions) {
            out.entry(group).or_default().push(Forward {
                from: id.clone(),
                route: route.clone(),
            });
        }
    }
    out
}

/// The target groups (logical ids) the `forward` actions of `actions` send to.
fn forwarded_groups(actions: &Value) -> Vec<String> {
    let mut groups = Vec::new();
    for action in actions.as_array().map_or(&[][..], Vec::as_slice) {
        if action["Type"] != "forward" {
            continue;
        }
        if let Some(group) = reference(&action["TargetGroupArn"]) {
            groups.push(group.to_string());
        }
        for weighted in action["ForwardConfig"]["TargetGroups"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
        {
            if let Some(group) = reference(&weighted["TargetGroupArn"]) {
                groups.push(group.to_string());
            }
        }
    }
    groups.sort();
    groups.dedup();
    groups
}

/// The logical id a `{"Ref": ID}` names.
fn reference(value: &Value) -> Option<&str> {
    value.as_object()?.get("Ref")?.as_str()
}

/// A rule's conditions as one gateway route, or why they are not one.
fn route_of(conditions: &Value) -> Result<Route, String> {
    let mut route = Route::default();
    for condition in conditions.as_array().map_or(&[][..], Vec::as_slice) {
        let field = condition["Field"].as_str().unwrap_or_default();
        let values = |config: &str| -> Result<String, String> {
            let values = condition[config]["Values"]
                .as_array()
                .or_else(|| condition["Values"].as_array())
                .map_or(&[][..], Vec::as_slice);
            match values {
                [one] => one
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("its {field} value is not a literal string")),
                [] => Err(format!("its {field} condition has no values")),
                _ => Err(format!(
                    "its {field} condition has {} values (the gateway routes one)",
                    values.len()
                )),
            }
        };
        match field {
            "path-pattern" => route.path = Some(path_prefix(&values("PathPatternConfig")?)?),
            "host-header" => route.host = Some(host_name(&values("HostHeaderConfig")?)?),
            other => {
                return Err(format!(
                    "its {other} condition has no gateway counterpart (the gateway routes by \
                     path prefix and host)"
                ));
            }
        }
    }
    Ok(route)
}

/// The path prefix a load balancer path pattern is: `/hello*` and `/hello/*` are `/hello`,
/// `/*` is `/`. A pattern without a wildcard becomes the same prefix, which also routes the
/// paths below it. A wildcard anywhere else has no prefix.
fn path_prefix(pattern: &str) -> Result<String, String> {
    let bare = pattern.trim_end_matches('*');
    if !pattern.starts_with('/') && !pattern.starts_with('*') {
        return Err(format!("path pattern {pattern} does not start with /"));
    }
    if bare.contains(['*', '?']) {
        return Err(format!(
            "path pattern {pattern} has a wildcard before its end (the gateway routes path \
             prefixes)"
        ));
    }
    let prefix = bare.trim_end_matches('/');
    Ok(if prefix.is_empty() {
        "/".to_string()
    } else {
        prefix.to_string()
    })
}

/// The host a host-header condition names, when it names one host.
fn host_name(pattern: &str) -> Result<String, String> {
    if pattern.contains(['*', '?']) {
        return Err(format!(
            "host header {pattern} has a wildcard (the gateway routes exact hosts)"
        ));
    }
    Ok(pattern.to_ascii_lowercase())
}

/// Puts `route` on `container` of the task definition `definition` as `wasmgate.http.*`
/// labels, unless the container already has labels of its own (which win).
fn add_labels(
    template: &mut Template,
    definition: &str,
    container: &str,
    route: &Route,
) -> Result<(), String> {
    let resource = template
        .resources
        .get_mut(definition)
        .filter(|r| r.kind == TASK_DEFINITION)
        .ok_or_else(|| format!("{definition} is not a task definition of this template"))?;
    let containers = resource.properties["ContainerDefinitions"]
        .as_array_mut()
        .ok_or_else(|| {
            format!("task definition {definition} lists its containers through a function")
        })?;
    let found = containers
        .iter_mut()
        .find(|c| c["Name"] == container)
        .ok_or_else(|| {
            format!("task definition {definition} has no container named {container}")
        })?;
    let Some(object) = found.as_object_mut() else {
        return Err(format!("container {container} is not an object"));
    };
    let labels = object
        .entry("DockerLabels")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(labels) = labels.as_object_mut() else {
        return Err(format!(
            "container {container}'s DockerLabels are written through a function"
        ));
    };
    if labels.keys().any(|k| k.starts_with(LABEL_PREFIX)) {
        return Err(format!(
            "container {container} has wasmgate.http labels of its own, which win"
        ));
    }
    if let Some(path) = &route.path {
        labels.insert(format!("{LABEL_PREFIX}path"), Value::String(path.clone()));
    }
    if let Some(host) = &route.host {
        labels.insert(format!("{LABEL_PREFIX}host"), Value::String(host.clone()));
    }
    if route.path.is_none() && route.host.is_none() {
        labels.insert(format!("{LABEL_PREFIX}path"), Value::String("/".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape `cdk synth` writes for `listener.addTargets(..., conditions, targets:
    /// [service])`, with the rule's conditions and the container's labels given.
    fn template(conditions: Value, labels: Option<Value>) -> Template {
        let mut container = json!({"Name": "web", "Image": "x.wasm"});
        if let Some(labels) = labels {
            container["DockerLabels"] = labels;
        }
        Template::parse(&json!({"Resources": {
            "TaskDef": {"Type": TASK_DEFINITION, "Properties": {"ContainerDefinitions": [container]}},
            "Service": {"Type": SERVICE, "Properties": {
                "TaskDefinition": {"Ref": "TaskDef"},
                "LoadBalancers": [{"ContainerName": "web", "ContainerPort": 8080,
                                   "TargetGroupArn": {"Ref": "Group"}}]
            }},
            "Lb": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {}},
            "Listener": {"Type": LISTENER, "Properties": {
                "LoadBalancerArn": {"Ref": "Lb"},
                "DefaultActions": [{"Type": "fixed-response",
                                    "FixedResponseConfig": {"StatusCode": "404"}}]
            }},
            "Group": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {}},
            "Rule": {"Type": LISTENER_RULE, "Properties": {
                "ListenerArn": {"Ref": "Listener"},
                "Priority": 10,
                "Actions": [{"Type": "forward", "TargetGroupArn": {"Ref": "Group"}}],
                "Conditions": conditions
            }}
        }}))
        .unwrap()
    }

    fn labels(template: &Template) -> Value {
        template.resources["TaskDef"].properties["ContainerDefinitions"][0]["DockerLabels"].clone()
    }

    #[test]
    fn a_path_pattern_rule_becomes_the_containers_path_route() {
        let mut t = template(
            json!([{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/hello*"]}}]),
            None,
        );
        let notes = route_listeners(&mut t);
        assert_eq!(labels(&t), json!({"wasmgate.http.path": "/hello"}));
        assert_eq!(
            notes["Rule"],
            "routes path /hello to service Service (container web) through the gateway"
        );
        assert!(!notes.contains_key("Listener"));
    }

    #[test]
    fn host_and_path_conditions_make_one_route_and_other_labels_stay() {
        let mut t = template(
            json!([
                {"Field": "host-header", "Values": ["API.example.com"]},
                {"Field": "path-pattern", "Values": ["/v1/*"]}
            ]),
            Some(json!({"team": "web"})),
        );
        route_listeners(&mut t);
        assert_eq!(
            labels(&t),
            json!({"team": "web", "wasmgate.http.host": "api.example.com",
                   "wasmgate.http.path": "/v1"})
        );
    }

    #[test]
    fn what_is_not_one_route_is_reported_and_changes_nothing() {
        for (conditions, why) in [
            (
                json!([{"Field": "path-pattern", "Values": ["/a*", "/b*"]}]),
                "2 values",
            ),
            (
                json!([{"Field": "path-pattern", "Values": ["/a/*/b"]}]),
                "wildcard before its end",
            ),
            (
                json!([{"Field": "host-header", "Values": ["*.example.com"]}]),
                "has a wildcard",
            ),
            (
                json!([{"Field": "query-string", "QueryStringConfig": {"Values": []}}]),
                "query-string condition has no gateway counterpart",
            ),
        ] {
            let mut t = template(conditions, None);
            let notes = route_listeners(&mut t);
            assert_eq!(labels(&t), Value::Null);
            assert!(notes["Rule"].starts_with("not routed: "), "{notes:?}");
            assert!(notes["Rule"].contains(why), "{why}: {notes:?}");
        }
    }

    #[test]
    fn a_containers_own_labels_win() {
        let mut t = template(
            json!([{"Field": "path-pattern", "Values": ["/x*"]}]),
            Some(json!({"wasmgate.http.path": "/mine"})),
        );
        let notes = route_listeners(&mut t);
        assert_eq!(labels(&t), json!({"wasmgate.http.path": "/mine"}));
        assert!(notes["Rule"].contains("labels of its own"), "{notes:?}");
    }

    #[test]
    fn a_listeners_default_forward_routes_every_path() {
        let mut t = template(json!([]), None);
        // The rule forwards elsewhere; the listener's default action forwards to the group.
        t.resources.remove("Rule");
        t.resources.get_mut("Listener").unwrap().properties["DefaultActions"] = json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": {"Ref": "Group"}, "Weight": 1}]}}]);
        let notes = route_listeners(&mut t);
        assert_eq!(labels(&t), json!({"wasmgate.http.path": "/"}));
        assert!(notes["Listener"].contains("every request"), "{notes:?}");
    }

    #[test]
    fn path_patterns_as_prefixes() {
        assert_eq!(path_prefix("/hello*").unwrap(), "/hello");
        assert_eq!(path_prefix("/hello/*").unwrap(), "/hello");
        assert_eq!(path_prefix("/hello").unwrap(), "/hello");
        assert_eq!(path_prefix("/*").unwrap(), "/");
        assert_eq!(path_prefix("*").unwrap(), "/");
        assert!(path_prefix("/a?c").is_err());
        assert!(path_prefix("hello").is_err());
    }
}
