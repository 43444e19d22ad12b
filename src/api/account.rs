//! Account settings: PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting,
//! ListAccountSettings, with ECS's names, values and defaults. A setting is stored under
//! `account-settings/PRINCIPAL/NAME`; the account's default is the setting of its root
//! (`arn:aws:iam::ACCOUNT:root`), which is also who every caller is here (wasmgate's keys name
//! no IAM users). Where a setting changes behaviour in ECS it does here: `containerInsights`
//! is the default of a new cluster's `settings`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, page, parse};
use crate::store::Expect;

/// Every setting of ECS's model: its name, the values it takes, and ECS's default.
const SETTINGS: &[(&str, &[&str], &str)] = &[
    ("serviceLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("taskLongArnFormat", &["enabled", "disabled"], "enabled"),
    (
        "containerInstanceLongArnFormat",
        &["enabled", "disabled"],
        "enabled",
    ),
    ("awsvpcTrunking", &["enabled", "disabled"], "disabled"),
    (
        "containerInsights",
        &["enabled", "disabled", "enhanced"],
        "disabled",
    ),
    ("fargateFIPSMode", &["enabled", "disabled"], "disabled"),
    ("tagResourceAuthorization", &["on", "off"], "on"),
    ("fargateTaskRetirementWaitPeriod", &["0", "7", "14"], "7"),
    ("guardDutyActivate", &["on", "off"], "off"),
    (
        "defaultLogDriverMode",
        &["blocking", "non-blocking"],
        "non-blocking",
    ),
    ("fargateEventWindows", &["enabled", "disabled"], "disabled"),
];

/// Settings only AWS manages (`type: aws_managed`): listed, never set by a caller.
const AWS_MANAGED: &[&str] = &["guardDutyActivate"];

fn root(api: &Api) -> String {
    format!("arn:aws:iam::{}:root", api.control.arns.account)
}

fn key(principal: &str, name: &str) -> String {
    format!("account-settings/{principal}/{name}")
}

/// The setting `name` names, or an InvalidParameterException listing the names.
fn known(
    name: &str,
) -> Result<&'static (&'static str, &'static [&'static str], &'static str), ApiError> {
    SETTINGS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = SETTINGS.iter().map(|(n, _, _)| *n).collect();
        ApiError::invalid(format!(
            "name: must be one of {} (got {name})",
            names.join(", ")
        ))
    })
}

fn setting(name: &str, value: &str, principal: &str) -> Value {
    let kind = if AWS_MANAGED.contains(&name) {
        "aws_managed"
    } else {
        "user"
    };
    json!({"name": name, "value": value, "principalArn": principal, "type": kind})
}

/// The value in force of setting `name` for `principal`: its own, else the account's
/// default, else ECS's.
pub fn effective(api: &Api, principal: &str, name: &str) -> Result<String, ApiError> {
    let default = known(name)?.2;
    for who in [principal.to_string(), root(api)] {
        if let Some(found) = api.control.store.get(&key(&who, name))?
            && let Some(value) = found.value["value"].as_str()
        {
            return Ok(value.to_string());
        }
    }
    Ok(default.to_string())
}

/// The `settings` a new cluster gets: those given, and `containerInsights` from the account
/// when not given.
pub fn cluster_settings(api: &Api, given: Value) -> Result<Value, ApiError> {
    let mut settings = match given {
        Value::Array(list) => list,
        Value::Null => Vec::new(),
        _ => {
            return Err(ApiError::invalid(
                "settings: must be a list of {name, value}",
            ));
        }
    };
    if !settings.iter().any(|s| s["name"] == "containerInsights") {
        let value = effective(api, &root(api), "containerInsights")?;
        settings.push(json!({"name": "containerInsights", "value": value}));
    }
    Ok(Value::Array(settings))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutAccountSetting {
    name: String,
    value: String,
    principal_arn: Option<String>,
}

fn put(api: &Api, principal: &str, name: &str, value: &str) -> Result<Value, ApiError> {
    let (_, values, _) = known(name)?;
    if AWS_MANAGED.contains(&name) {
        return Err(ApiError::invalid(format!(
            "name: {name} is managed by AWS and cannot be set"
        )));
    }
    if !values.contains(&value) {
        return Err(ApiError::invalid(format!(
            "value: {name} takes {} (got {value})",
            values.join(", ")
        )));
    }
    let record = setting(name, value, principal);
    api.control
        .store
        .put(&key(principal, name), &record, Expect::Any)?;
    Ok(json!({"setting": record}))
}

pub fn put_setting(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: PutAccountSetting = parse(body)?;
    let principal = request.principal_arn.unwrap_or_else(|| root(api));
    put(api, &principal, &request.name, &request.value)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutAccountSettingDefault {
    name: String,
    value: String,
}

pub fn put_default(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: PutAccountSettingDefault = parse(body)?;
    put(api, &root(api), &request.name, &request.value)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteAccountSetting {
    name: String,
    principal_arn: Option<String>,
}

pub fn delete_setting(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeleteAccountSetting = parse(body)?;
    known(&request.name)?;
    let principal = request.principal_arn.unwrap_or_else(|| root(api));
    let stored = key(&principal, &request.name);
    let Some(found) = api.control.store.get(&stored)? else {
        return Err(ApiError::invalid(format!(
            "name: {principal} has no setting {} of its own to delete",
            request.name
        )));
    };
    api.control
        .store
        .delete(&stored, Expect::Revision(found.revision))?;
    Ok(json!({"setting": found.value}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAccountSettings {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
    #[serde(default)]
    effective_settings: bool,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListAccountSettings = parse(body.clone())?;
    if let Some(name) = &request.name {
        known(name)?;
    }
    if request.value.is_some() && request.name.is_none() {
        return Err(ApiError::invalid("value: can be given only with name"));
    }
    let principal = request.principal_arn.clone().unwrap_or_else(|| root(api));
    let mut settings = Vec::new();
    for (name, _, _) in SETTINGS {
        if request.name.as_deref().is_some_and(|n| n != *name) {
            continue;
        }
        let own = api.control.store.get(&key(&principal, name))?;
        let shown = match own {
            Some(found) => Some(found.value),
            None if request.effective_settings => Some(setting(
                name,
                &effective(api, &principal, name)?,
                &principal,
            )),
            None => None,
        };
        if let Some(shown) = shown
            && request.value.as_deref().is_none_or(|v| shown["value"] == v)
        {
            settings.push(shown);
        }
    }
    let (items, next) = page(&body, settings)?;
    let mut response = json!({"settings": items});
    if let Some(next) = next {
        response["nextToken"] = json!(next);
    }
    Ok(response)
}
