//! CloudFormation templates as `cdk synth` writes them: parameters (with defaults and
//! `AllowedValues`), conditions, resources with `DependsOn` and `Condition`, outputs, and the
//! intrinsic functions a CDK app uses (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`,
//! `Fn::Select`, `Fn::Split`, `Fn::If`, `Fn::Equals`, `Fn::And`, `Fn::Or`, `Fn::Not`,
//! `Fn::Base64`, `Fn::GetAZs`), and the pseudo parameters. Pure: no I/O; what a resource's
//! `Ref` and attributes are comes from the caller, once it created the resource.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// Why a template cannot be deployed, naming the logical id or member at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template is not a JSON object with Resources: {0}")]
    Shape(String),
    #[error("Parameters.{0}: {1}")]
    Parameter(String, String),
    #[error("Conditions.{0}: {1}")]
    Condition(String, String),
    #[error("Resources.{0}: {1}")]
    Resource(String, String),
    #[error("{0}: {1}")]
    Function(String, String),
    #[error("the resources depend on each other in a cycle: {0}")]
    Cycle(String),
}

/// One resource of a template, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: String,
    pub properties: Value,
    pub depends_on: Vec<String>,
    pub condition: Option<String>,
    /// What happens to it when it leaves the stack (removed, or the stack deleted).
    pub deletion_policy: Policy,
    /// What happens to the old one when it is replaced.
    pub update_replace_policy: Policy,
}

/// A `DeletionPolicy` or `UpdateReplacePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Policy {
    #[default]
    Delete,
    Retain,
    /// Retained, except when the deploy that created it is rolled back.
    RetainExceptOnCreate,
    /// A snapshot, then deleted: only for resources that have snapshots.
    Snapshot,
}

impl Policy {
    fn parse(id: &str, member: &str, value: &Value) -> Result<Self, TemplateError> {
        match value {
            Value::Null => Ok(Self::Delete),
            Value::String(text) => match text.as_str() {
                "Delete" => Ok(Self::Delete),
                "Retain" => Ok(Self::Retain),
                "RetainExceptOnCreate" => Ok(Self::RetainExceptOnCreate),
                "Snapshot" => Ok(Self::Snapshot),
                other => Err(TemplateError::Resource(
                    id.to_string(),
                    format!(
                        "{member}: {other} is not one of Delete, Retain, RetainExceptOnCreate, \
                         Snapshot"
                    ),
                )),
            },
            _ => Err(TemplateError::Resource(
                id.to_string(),
                format!("{member}: a string"),
            )),
        }
    }

    pub fn is_delete(&self) -> bool {
        *self == Self::Delete
    }
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub parameters: Map<String, Value>,
    pub conditions: Map<String, Value>,
    pub resources: BTreeMap<String, Resource>,
    pub outputs: Map<String, Value>,
}

impl Template {
    pub fn parse(document: &Value) -> Result<Self, TemplateError> {
        let object = document
            .as_object()
            .ok_or_else(|| TemplateError::Shape("not an object".into()))?;
        let section = |name: &str| -> Result<Map<String, Value>, TemplateError> {
            match object.get(name) {
                None => Ok(Map::new()),
                Some(Value::Object(map)) => Ok(map.clone()),
                Some(_) => Err(TemplateError::Shape(format!("{name} is not an object"))),
            }
        };
        let mut resources = BTreeMap::new();
        for (id, resource) in section("Resources")? {
            let kind = resource["Type"]
                .as_str()
                .ok_or_else(|| TemplateError::Resource(id.clone(), "Type: required".into()))?
                .to_string();
            let depends_on = match &resource["DependsOn"] {
                Value::Null => Vec::new(),
                Value::String(one) => vec![one.clone()],
                Value::Array(many) => many
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or_else(|| {
                            TemplateError::Resource(
                                id.clone(),
                                "DependsOn: not a list of ids".into(),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(TemplateError::Resource(
                        id,
                        "DependsOn: a logical id or a list of them".into(),
                    ));
                }
            };
            let condition = resource["Condition"].as_str().map(str::to_string);
            let deletion_policy =
                Policy::parse(&id, "DeletionPolicy", &resource["DeletionPolicy"])?;
            let update_replace_policy =
                Policy::parse(&id, "UpdateReplacePolicy", &resource["UpdateReplacePolicy"])?;
            resources.insert(
                id,
                Resource {
                    kind,
                    properties: resource
                        .get("Properties")
                        .cloned()
                        .unwrap_or_else(|| json!({})),
                    depends_on,
                    condition,
                    deletion_policy,
                    update_replace_policy,
                },
            );
        }
        if resources.is_empty() {
            return Err(TemplateError::Shape("Resources is empty".into()));
        }
        let template = Self {
            parameters: section("Parameters")?,
            conditions: section("Conditions")?,
            resources,
            outputs: section("Outputs")?,
        };
        for (id, resource) in &template.resources {
            for needed in &resource.depends_on {
                if !template.resources.contains_key(needed) {
                    return Err(TemplateError::Resource(
                        id.clone(),
                        format!("DependsOn names {needed}, which is not a resource"),
                    ));
                }
            }
            if let Some(condition) = &resource.condition
                && !template.conditions.contains_key(condition)
            {
                return Err(TemplateError::Resource(
                    id.clone(),
                    format!("Condition names {condition}, which is not a condition"),
                ));
            }
        }
        Ok(template)
    }

    /// The resources in the order they can be created (each after what it references or
    /// `DependsOn`); deleting goes in the reverse order.
    pub fn creation_order(&self) -> Result<Vec<String>, TemplateError> {
        let mut needs: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (id, resource) in &self.resources {
            let mut set: BTreeSet<String> = resource.depends_on.iter().cloned().collect();
            references(&resource.properties, &mut set);
            set.retain(|r| self.resources.contains_key(r) && r != id);
            needs.insert(id, set);
        }
        let mut order = Vec::new();
        let mut done: BTreeSet<String> = BTreeSet::new();
        while order.len() < self.resources.len() {
            let ready: Vec<String> = needs
                .iter()
                .filter(|(id, set)| !done.contains(**id) && set.iter().all(|n| done.contains(n)))
                .map(|(id, _)| id.to_string())
                .collect();
            if ready.is_empty() {
                let stuck: Vec<&str> = needs
                    .keys()
                    .filter(|id| !done.contains(**id))
                    .copied()
                    .collect();
                return Err(TemplateError::Cycle(stuck.join(", ")));
            }
            for id in ready {
                done.insert(id.clone());
                order.push(id);
            }
        }
        Ok(order)
    }
}

/// The logical ids `value` references through `Ref`, `Fn::GetAtt` and `Fn::Sub`.
pub fn references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (name, argument) = map.iter().next().expect("one member");
            match (name.as_str(), argument) {
                ("Ref", Value::String(id)) => {
                    out.insert(id.clone());
                }
                ("Fn::GetAtt", Value::Array(parts)) => {
                    if let Some(id) = parts.first().and_then(Value::as_str) {
                        out.insert(id.to_string());
                    }
                }
                ("Fn::GetAtt", Value::String(dotted)) => {
                    if let Some((id, _)) = dotted.split_once('.') {
                        out.insert(id.to_string());
                    }
                }
                ("Fn::Sub", Value::String(text)) => sub_names(text, out),
                ("Fn::Sub", Value::Array(parts)) => {
                    if let Some(text) = parts.first().and_then(Value::as_str) {
                        let mut names = BTreeSet::new();
                        sub_names(text, &mut names);
                        let local = parts.get(1).and_then(Value::as_object);
                        out.extend(
                            names
                                .into_iter()
                                .filter(|n| local.is_none_or(|l| !l.contains_key(n))),
                        );
                    }
                    for part in parts.iter().skip(1) {
                        references(part, out);
                    }
                }
                _ => references(argument, out),
            }
        }
        Value::Object(map) => map.values().for_each(|v| references(v, out)),
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// The logical ids of `${Id}` and `${Id.Attr}` in a `Fn::Sub` string (`${!Literal}` is not
/// one).
fn sub_names(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { break };
        let name = &rest[..end];
        if !name.starts_with('!') {
            let id = name.split('.').next().unwrap_or(name);
            out.insert(id.to_string());
        }
        rest = &rest[end + 1..];
    }
}

/// What `Ref` and `Fn::GetAtt` resolve to while a stack is deployed.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub stack_name: String,
    pub region: String,
    pub account: String,
    /// Parameter values, defaults applied and checked.
    pub parameters: BTreeMap<String, Value>,
    pub conditions: BTreeMap<String, bool>,
    /// Per created resource: its `Ref` value.
    pub physical_ids: BTreeMap<String, String>,
    /// Per created resource: its attributes for `Fn::GetAtt`.
    pub attributes: BTreeMap<String, BTreeMap<String, Value>>,
    /// What other stacks export, by export name, for `Fn::ImportValue`.
    pub exports: BTreeMap<String, Value>,
    /// The export names `Fn::ImportValue` has resolved so far.
    pub imported: std::cell::RefCell<BTreeSet<String>>,
}

/// Marks a property to be dropped (`Ref: AWS::NoValue`).
const NO_VALUE: &str = "\u{0}AWS::NoValue";

impl Context {
    /// A context for `template` with the `given` parameter values (others take their
    /// defaults), every parameter checked and every condition evaluated.
    pub fn new(
        template: &Template,
        stack_name: &str,
        region: &str,
        account: &str,
        given: &BTreeMap<String, String>,
    ) -> Result<Self, TemplateError> {
        let mut context = Self {
            stack_name: stack_name.into(),
            region: region.into(),
            account: account.into(),
            ..Default::default()
        };
        for name in given.keys() {
            if !template.parameters.contains_key(name) {
                return Err(TemplateError::Parameter(
                    name.clone(),
                    "given, but the template has no such parameter".into(),
                ));
            }
        }
        for (name, declaration) in &template.parameters {
            let value = match given.get(name) {
                Some(value) => value.clone(),
                None => match &declaration["Default"] {
                    Value::String(text) => text.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Null => {
                        return Err(TemplateError::Parameter(
                            name.clone(),
                            "has no Default: give it with --parameter NAME=VALUE".into(),
                        ));
                    }
                    other => other.to_string(),
                },
            };
            if let Some(allowed) = declaration["AllowedValues"].as_array()
                && !allowed
                    .iter()
                    .any(|a| a.as_str() == Some(value.as_str()) || scalar(a) == value)
            {
                return Err(TemplateError::Parameter(
                    name.clone(),
                    format!("{value} is not one of its AllowedValues"),
                ));
            }
            let typed = match declaration["Type"].as_str() {
                Some("CommaDelimitedList") | Some("List<Number>") => {
                    json!(value.split(',').map(str::trim).collect::<Vec<_>>())
                }
                Some("Number") => {
                    if value.parse::<f64>().is_err() {
                        return Err(TemplateError::Parameter(
                            name.clone(),
                            format!("{value} is not a Number"),
                        ));
                    }
                    json!(value)
                }
                _ => json!(value),
            };
            context.parameters.insert(name.clone(), typed);
        }
        // Conditions may use one another: evaluate until all are known.
        let mut pending: Vec<&String> = template.conditions.keys().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut still = Vec::new();
            for name in pending {
                match context.condition(&template.conditions[name], &template.conditions) {
                    Ok(Some(value)) => {
                        context.conditions.insert(name.clone(), value);
                    }
                    Ok(None) => still.push(name),
                    Err(why) => return Err(TemplateError::Condition(name.clone(), why)),
                }
            }
            if still.len() == before {
                return Err(TemplateError::Condition(
                    still[0].clone(),
                    "refers to itself through other conditions".into(),
                ));
            }
            pending = still;
        }
        Ok(context)
    }

    /// Whether resource or output with `condition` is in the stack.
    pub fn included(&self, condition: Option<&str>) -> bool {
        condition.is_none_or(|c| self.conditions.get(c).copied().unwrap_or(false))
    }

    /// A condition's value; `None` while a condition it uses is not evaluated yet.
    fn condition(&self, value: &Value, all: &Map<String, Value>) -> Result<Option<bool>, String> {
        let Some((name, argument)) = value
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next())
        else {
            return Err(format!("not a condition function: {value}"));
        };
        let list = |n: usize| -> Result<&Vec<Value>, String> {
            argument
                .as_array()
                .filter(|a| n == 0 || a.len() == n)
                .ok_or_else(|| {
                    format!(
                        "{name} takes a list{}",
                        if n > 0 {
                            format!(" of {n}")
                        } else {
                            String::new()
                        }
                    )
                })
        };
        Ok(Some(match name.as_str() {
            "Fn::Equals" => {
                let args = list(2)?;
                let a = self
                    .resolve(&args[0], "Fn::Equals")
                    .map_err(|e| e.to_string())?;
                let b = self
                    .resolve(&args[1], "Fn::Equals")
                    .map_err(|e| e.to_string())?;
                scalar(&a) == scalar(&b)
            }
            "Fn::Not" => {
                let args = list(1)?;
                match self.condition(&args[0], all)? {
                    Some(v) => !v,
                    None => return Ok(None),
                }
            }
            "Fn::And" | "Fn::Or" => {
                let mut values = Vec::new();
                for arg in list(0)? {
                    match self.condition(arg, all)? {
                        Some(v) => values.push(v),
                        None => return Ok(None),
                    }
                }
                if name == "Fn::And" {
                    values.iter().all(|v| *v)
                } else {
                    values.iter().any(|v| *v)
                }
            }
            "Condition" => {
                let other = argument
                    .as_str()
                    .ok_or("Condition takes a condition's name")?;
                if !all.contains_key(other) {
                    return Err(format!("Condition names {other}, which is not a condition"));
                }
                match self.conditions.get(other) {
                    Some(v) => *v,
                    None => return Ok(None),
                }
            }
            other => return Err(format!("{other} is not a condition function")),
        }))
    }

    /// `value` with every intrinsic function resolved; `at` names where it is, for errors.
    pub fn resolve(&self, value: &Value, at: &str) -> Result<Value, TemplateError> {
        let resolved = self.resolve_inner(value, at)?;
        Ok(strip_no_value(resolved).unwrap_or(Value::Null))
    }

    fn resolve_inner(&self, value: &Value, at: &str) -> Result<Value, TemplateError> {
        let fail = |why: String| TemplateError::Function(at.to_string(), why);
        match value {
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve_inner(v, at))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Object(map) if map.len() == 1 && is_function(map) => {
                let (name, argument) = map.iter().next().expect("one member");
                match name.as_str() {
                    "Ref" => {
                        let target = argument
                            .as_str()
                            .ok_or_else(|| fail("Ref takes a name".into()))?;
                        self.reference(target).ok_or_else(|| {
                            fail(format!("Ref {target}: no such parameter or resource (or it is not created yet)"))
                        })
                    }
                    "Fn::GetAtt" => {
                        let (id, attribute) = match argument {
                            Value::Array(parts) if parts.len() == 2 => (
                                parts[0].as_str().unwrap_or_default().to_string(),
                                self.resolve_inner(&parts[1], at)?
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                            ),
                            Value::String(dotted) => match dotted.split_once('.') {
                                Some((id, attribute)) => (id.to_string(), attribute.to_string()),
                                None => {
                                    return Err(fail("Fn::GetAtt takes [Id, Attribute]".into()));
                                }
                            },
                            _ => return Err(fail("Fn::GetAtt takes [Id, Attribute]".into())),
                        };
                        self.attributes
                            .get(&id)
                            .and_then(|a| a.get(&attribute))
                            .cloned()
                            .ok_or_else(|| fail(format!("Fn::GetAtt {id}.{attribute}: no such attribute (or {id} is not created yet)")))
                    }
                    "Fn::Sub" => {
                        let (text, locals) = match argument {
                            Value::String(text) => (text.clone(), Map::new()),
                            Value::Array(parts) if parts.len() == 2 => {
                                let text = parts[0]
                                    .as_str()
                                    .ok_or_else(|| fail("Fn::Sub takes a string first".into()))?;
                                let mut locals = Map::new();
                                for (k, v) in parts[1].as_object().into_iter().flatten() {
                                    locals.insert(k.clone(), self.resolve_inner(v, at)?);
                                }
                                (text.to_string(), locals)
                            }
                            _ => {
                                return Err(fail(
                                    "Fn::Sub takes a string or [string, variables]".into(),
                                ));
                            }
                        };
                        self.substitute(&text, &locals)
                            .map(Value::String)
                            .map_err(fail)
                    }
                    "Fn::Join" => {
                        let parts = argument
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .ok_or_else(|| fail("Fn::Join takes [separator, list]".into()))?;
                        let separator = parts[0].as_str().unwrap_or_default();
                        let list = self.resolve_inner(&parts[1], at)?;
                        let items: Vec<String> = list
                            .as_array()
                            .ok_or_else(|| {
                                fail("Fn::Join: the second member is not a list".into())
                            })?
                            .iter()
                            .filter(|v| v.as_str() != Some(NO_VALUE))
                            .map(scalar)
                            .collect();
                        Ok(json!(items.join(separator)))
                    }
                    "Fn::Select" => {
                        let parts = argument
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .ok_or_else(|| fail("Fn::Select takes [index, list]".into()))?;
                        let index: usize = scalar(&self.resolve_inner(&parts[0], at)?)
                            .parse()
                            .map_err(|_| fail("Fn::Select: the index is not a number".into()))?;
                        let list = self.resolve_inner(&parts[1], at)?;
                        list.as_array()
                            .and_then(|l| l.get(index).cloned())
                            .ok_or_else(|| fail(format!("Fn::Select: no item {index}")))
                    }
                    "Fn::Split" => {
                        let parts = argument
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .ok_or_else(|| fail("Fn::Split takes [separator, string]".into()))?;
                        let separator = parts[0].as_str().unwrap_or_default();
                        let text = scalar(&self.resolve_inner(&parts[1], at)?);
                        Ok(json!(text.split(separator).collect::<Vec<_>>()))
                    }
                    "Fn::If" => {
                        let parts = argument
                            .as_array()
                            .filter(|p| p.len() == 3)
                            .ok_or_else(|| fail("Fn::If takes [condition, then, else]".into()))?;
                        let name = parts[0].as_str().unwrap_or_default();
                        let chosen = match self.conditions.get(name) {
                            Some(true) => &parts[1],
                            Some(false) => &parts[2],
                            None => return Err(fail(format!("Fn::If: no condition {name}"))),
                        };
                        self.resolve_inner(chosen, at)
                    }
                    "Fn::Base64" => {
                        use base64::Engine as _;
                        let text = scalar(&self.resolve_inner(argument, at)?);
                        Ok(json!(
                            base64::engine::general_purpose::STANDARD.encode(text)
                        ))
                    }
                    "Fn::ImportValue" => {
                        let name = self.resolve_inner(argument, at)?;
                        let name = name
                            .as_str()
                            .ok_or_else(|| fail("Fn::ImportValue takes an export name".into()))?;
                        let value = self.exports.get(name).cloned().ok_or_else(|| {
                            fail(format!("Fn::ImportValue {name}: no stack exports it"))
                        })?;
                        self.imported.borrow_mut().insert(name.to_string());
                        Ok(value)
                    }
                    "Fn::GetAZs" => Ok(json!([
                        format!("{}a", self.region),
                        format!("{}b", self.region),
                        format!("{}c", self.region)
                    ])),
                    other => Err(fail(format!("{other} is not supported here"))),
                }
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.resolve_inner(v, &format!("{at}.{k}"))?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    /// What `Ref name` is: a parameter, a pseudo parameter, or a created resource's id.
    fn reference(&self, name: &str) -> Option<Value> {
        if let Some(value) = self.parameters.get(name) {
            return Some(value.clone());
        }
        if let Some(id) = self.physical_ids.get(name) {
            return Some(json!(id));
        }
        Some(json!(match name {
            "AWS::StackName" => self.stack_name.clone(),
            "AWS::Region" => self.region.clone(),
            "AWS::AccountId" => self.account.clone(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::StackId" => format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/wasmgate",
                self.region, self.account, self.stack_name
            ),
            "AWS::NoValue" => NO_VALUE.into(),
            _ => return None,
        }))
    }

    fn substitute(&self, text: &str, locals: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            rest = &rest[start + 2..];
            let end = rest
                .find('}')
                .ok_or_else(|| format!("Fn::Sub: unclosed ${{ in {text:?}"))?;
            let name = &rest[..end];
            rest = &rest[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
                continue;
            }
            let value = if let Some(local) = locals.get(name) {
                local.clone()
            } else if let Some((id, attribute)) = name.split_once('.')
                && !name.starts_with("AWS::")
            {
                self.attributes
                    .get(id)
                    .and_then(|a| a.get(attribute))
                    .cloned()
                    .ok_or_else(|| format!("Fn::Sub: ${{{name}}}: no such attribute"))?
            } else {
                self.reference(name)
                    .ok_or_else(|| format!("Fn::Sub: ${{{name}}}: no such parameter or resource"))?
            };
            out.push_str(&scalar(&value));
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn is_function(map: &Map<String, Value>) -> bool {
    map.keys()
        .next()
        .is_some_and(|k| k == "Ref" || k.starts_with("Fn::"))
}

/// A value as text, as intrinsic functions join and compare it.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Drops every member and item that is `Ref: AWS::NoValue`.
fn strip_no_value(value: Value) -> Option<Value> {
    match value {
        Value::String(text) if text == NO_VALUE => None,
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(strip_no_value).collect(),
        )),
        Value::Object(map) => Some(Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| strip_no_value(v).map(|v| (k, v)))
                .collect(),
        )),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template::parse(&json!({
            "Parameters": {
                "Env": {"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"]},
                "Count": {"Type": "Number", "Default": 2},
            },
            "Conditions": {
                "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
                "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
            },
            "Resources": {
                "Service": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "Cluster": {"Ref": "Cluster"},
                        "TaskDefinition": {"Ref": "Task"},
                        "DesiredCount": {"Fn::If": ["IsProd", 4, {"Ref": "Count"}]},
                        "ServiceName": {"Fn::Sub": "${AWS::StackName}-web-${Env}"},
                        "Extra": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]},
                    },
                },
                "Task": {
                    "Type": "AWS::ECS::TaskDefinition",
                    "Properties": {"Family": {"Fn::Join": ["-", ["web", {"Ref": "Env"}]]}},
                },
                "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": "c"}},
                "Role": {"Type": "AWS::IAM::Role", "DependsOn": "Cluster", "Condition": "NotProd"},
            },
            "Outputs": {"Arn": {"Value": {"Fn::GetAtt": ["Cluster", "Arn"]}}},
        }))
        .unwrap()
    }

    #[test]
    fn resources_are_created_after_what_they_reference() {
        let order = template().creation_order().unwrap();
        let at = |id: &str| order.iter().position(|o| o == id).unwrap();
        assert!(at("Cluster") < at("Service") && at("Task") < at("Service"));
        assert!(at("Cluster") < at("Role"));
        let cycle = Template::parse(&json!({"Resources": {
            "A": {"Type": "T", "Properties": {"X": {"Ref": "B"}}},
            "B": {"Type": "T", "Properties": {"X": {"Fn::GetAtt": ["A", "Arn"]}}},
        }}))
        .unwrap();
        assert_eq!(
            cycle.creation_order(),
            Err(TemplateError::Cycle("A, B".into()))
        );
    }

    #[test]
    fn parameters_conditions_and_functions_resolve() {
        let t = template();
        let given = BTreeMap::from([("Env".to_string(), "prod".to_string())]);
        let mut context = Context::new(&t, "shop", "us-east-1", "000000000000", &given).unwrap();
        assert!(context.conditions["IsProd"]);
        assert!(!context.included(t.resources["Role"].condition.as_deref()));
        context.physical_ids.insert("Cluster".into(), "c".into());
        context
            .physical_ids
            .insert("Task".into(), "arn:td:1".into());
        let service = context
            .resolve(&t.resources["Service"].properties, "Service")
            .unwrap();
        assert_eq!(
            service,
            json!({"Cluster": "c", "TaskDefinition": "arn:td:1", "DesiredCount": 4,
                   "ServiceName": "shop-web-prod", "Extra": "x"})
        );
        let dev = Context::new(&t, "shop", "us-east-1", "0", &BTreeMap::new()).unwrap();
        let mut dev = dev;
        dev.physical_ids = context.physical_ids.clone();
        let service = dev
            .resolve(&t.resources["Service"].properties, "Service")
            .unwrap();
        assert_eq!(service["DesiredCount"], json!("2"));
        assert!(
            service.get("Extra").is_none(),
            "AWS::NoValue drops the member"
        );
        assert_eq!(
            dev.resolve(&t.resources["Task"].properties, "Task")
                .unwrap(),
            json!({"Family": "web-dev"})
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let t = template();
        let bad = BTreeMap::from([("Env".to_string(), "qa".to_string())]);
        assert_eq!(
            Context::new(&t, "s", "r", "a", &bad)
                .unwrap_err()
                .to_string(),
            "Parameters.Env: qa is not one of its AllowedValues"
        );
        let unknown = BTreeMap::from([("Nope".to_string(), "1".to_string())]);
        assert!(Context::new(&t, "s", "r", "a", &unknown).is_err());
        let context = Context::new(&t, "s", "r", "a", &BTreeMap::new()).unwrap();
        let error = context
            .resolve(
                &json!({"X": {"Fn::GetAtt": ["Cluster", "Arn"]}}),
                "Outputs.Arn",
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("Outputs.Arn.X: Fn::GetAtt Cluster.Arn"),
            "{error}"
        );
        assert_eq!(
            context
                .resolve(&json!({"Fn::Sub": ["${A}-${!Literal}", {"A": "x"}]}), "p")
                .unwrap(),
            json!("x-${Literal}")
        );
        assert_eq!(
            context
                .resolve(
                    &json!({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}),
                    "p"
                )
                .unwrap(),
            json!("b")
        );
        let missing =
            Template::parse(&json!({"Resources": {"A": {"Type": "T", "DependsOn": "Z"}}}));
        assert_eq!(
            missing.unwrap_err().to_string(),
            "Resources.A: DependsOn names Z, which is not a resource"
        );
    }
}
