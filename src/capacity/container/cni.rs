//! A CNI client: runs the standard CNI plugins (Debian's `containernetworking-plugins` in
//! `/usr/lib/cni`) by the CNI spec's exec protocol. A plugin is a binary named by its config's
//! `type`, found in `CNI_PATH`; it is told what to do in the environment (`CNI_COMMAND` ADD, DEL
//! or CHECK, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH`), reads its config on
//! stdin and answers a result (ADD) or an error object on stdout.
//!
//! A network configuration list runs its plugins in order for ADD, each given the one before's
//! result as `prevResult`; CHECK runs them in order and DEL in reverse, each given the result
//! ADD ended with. `runtimeConfig` reaches only the plugins that declare the capability.
//!
//! Architecture invariant: only this module spawns CNI plugins; it knows nothing of tasks.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The CNI spec version wasmgate speaks (Debian 12's plugins, 1.1.1, speak it).
pub const CNI_VERSION: &str = "1.0.0";

/// A network configuration list: the plugins one attachment chains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfList {
    pub cni_version: String,
    pub name: String,
    pub plugins: Vec<Value>,
}

/// One attachment of a container to a network: the spec's runtime arguments.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub container_id: &'a str,
    /// The network namespace's path (a bind mount of its nsfs file).
    pub netns: &'a Path,
    pub ifname: &'a str,
}

/// The CNI operations, as `CNI_COMMAND` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Add,
    Check,
    Del,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Check => "CHECK",
            Self::Del => "DEL",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a plugin did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("network {network}: plugins[{index}] has no \"type\"")]
    NoType { network: String, index: usize },
    #[error(
        "CNI plugin {plugin} is not in CNI_PATH {path} (install containernetworking-plugins, or pass --cni-path)"
    )]
    NotFound { plugin: String, path: String },
    #[error("CNI plugin {plugin} {operation}: cannot run it: {source}")]
    Exec {
        plugin: String,
        operation: Operation,
        #[source]
        source: std::io::Error,
    },
    /// The plugin's own error object (spec: `code`, `msg`, `details`).
    #[error("CNI plugin {plugin} {operation}: {msg}{details} (error code {code})")]
    Plugin {
        plugin: String,
        operation: Operation,
        code: u64,
        msg: String,
        details: String,
    },
    #[error("CNI plugin {plugin} {operation}: {why}")]
    Malformed {
        plugin: String,
        operation: Operation,
        why: String,
    },
}

/// The plugins of this host: where to find them.
#[derive(Debug, Clone)]
pub struct Cni {
    path: Vec<PathBuf>,
}

impl Cni {
    /// Plugins looked up in `path`, in order (`CNI_PATH`).
    pub fn new(path: Vec<PathBuf>) -> Self {
        Self { path }
    }

    fn path_var(&self) -> String {
        std::env::join_paths(&self.path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The binary of plugin `kind`, if CNI_PATH has it.
    pub fn find(&self, kind: &str) -> Option<PathBuf> {
        if kind.contains('/') {
            return None;
        }
        self.path
            .iter()
            .map(|dir| dir.join(kind))
            .find(|candidate| candidate.is_file())
    }

    /// ADD: runs every plugin of `list` in order, each given the result before; returns the
    /// last result, which CHECK and DEL are to be given.
    pub fn add(
        &self,
        list: &ConfList,
        at: Attachment<'_>,
        runtime_config: &Value,
    ) -> Result<Value, CniError> {
        let mut previous: Option<Value> = None;
        for index in 0..list.plugins.len() {
            let result = self.exec(
                Operation::Add,
                list,
                index,
                at,
                runtime_config,
                previous.as_ref(),
            )?;
            let Some(result) = result else {
                return Err(CniError::Malformed {
                    plugin: plugin_type(list, index).unwrap_or_default().to_string(),
                    operation: Operation::Add,
                    why: "succeeded without a result".into(),
                });
            };
            previous = Some(result);
        }
        Ok(previous.unwrap_or_else(|| json!({"cniVersion": list.cni_version})))
    }

    /// CHECK: asks every plugin in order whether the attachment is still as ADD left it.
    pub fn check(
        &self,
        list: &ConfList,
        at: Attachment<'_>,
        runtime_config: &Value,
        result: &Value,
    ) -> Result<(), CniError> {
        for index in 0..list.plugins.len() {
            self.exec(
                Operation::Check,
                list,
                index,
                at,
                runtime_config,
                Some(result),
            )?;
        }
        Ok(())
    }

    /// DEL: runs every plugin in reverse order, each given ADD's result when known. Every
    /// plugin is asked even if one before failed (a DEL releases what it can); the first
    /// error is returned.
    pub fn del(
        &self,
        list: &ConfList,
        at: Attachment<'_>,
        runtime_config: &Value,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first_error = None;
        for index in (0..list.plugins.len()).rev() {
            if let Err(error) = self.exec(Operation::Del, list, index, at, runtime_config, result) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs plugin `index` of `list` once; its result, if it printed one.
    fn exec(
        &self,
        operation: Operation,
        list: &ConfList,
        index: usize,
        at: Attachment<'_>,
        runtime_config: &Value,
        previous: Option<&Value>,
    ) -> Result<Option<Value>, CniError> {
        let kind = plugin_type(list, index).ok_or_else(|| CniError::NoType {
            network: list.name.clone(),
            index,
        })?;
        let plugin = kind.to_string();
        let binary = self.find(kind).ok_or_else(|| CniError::NotFound {
            plugin: plugin.clone(),
            path: self.path_var(),
        })?;
        let config = plugin_config(list, index, runtime_config, previous);
        let mut child = Command::new(&binary)
            .env("CNI_COMMAND", operation.as_str())
            .env("CNI_CONTAINERID", at.container_id)
            .env("CNI_NETNS", at.netns)
            .env("CNI_IFNAME", at.ifname)
            .env("CNI_PATH", self.path_var())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CniError::Exec {
                plugin: plugin.clone(),
                operation,
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits without reading its config fails below, by its own answer.
            let _ = stdin.write_all(config.to_string().as_bytes());
        }
        let output = child.wait_with_output().map_err(|source| CniError::Exec {
            plugin: plugin.clone(),
            operation,
            source,
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let answer: Option<Value> = serde_json::from_str(stdout.trim()).ok();
        if output.status.success() {
            return Ok(answer.filter(|v| v.is_object()));
        }
        match answer {
            Some(error) if error.get("msg").is_some() || error.get("code").is_some() => {
                Err(CniError::Plugin {
                    plugin,
                    operation,
                    code: error["code"].as_u64().unwrap_or(999),
                    msg: error["msg"].as_str().unwrap_or("failed").to_string(),
                    details: error["details"]
                        .as_str()
                        .filter(|d| !d.is_empty())
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default(),
                })
            }
            _ => Err(CniError::Malformed {
                plugin,
                operation,
                why: format!(
                    "{} without an error object: {}{}",
                    output.status,
                    stdout.trim(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            }),
        }
    }
}

fn plugin_type(list: &ConfList, index: usize) -> Option<&str> {
    list.plugins.get(index)?.get("type")?.as_str()
}

/// What plugin `index` reads on stdin: its own object with the list's `cniVersion` and
/// `name`, the `runtimeConfig` members its `capabilities` ask for, and `prevResult`.
pub fn plugin_config(
    list: &ConfList,
    index: usize,
    runtime_config: &Value,
    previous: Option<&Value>,
) -> Value {
    let mut config = list
        .plugins
        .get(index)
        .cloned()
        .unwrap_or_else(|| json!({}));
    config["cniVersion"] = json!(list.cni_version);
    config["name"] = json!(list.name);
    let wanted: serde_json::Map<String, Value> = config
        .get("capabilities")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(key, _)| Some((key.clone(), runtime_config.get(key)?.clone())))
        .collect();
    if !wanted.is_empty() {
        config["runtimeConfig"] = Value::Object(wanted);
    }
    if let Some(previous) = previous {
        config["prevResult"] = previous.clone();
    }
    config
}

/// The parts of a CNI result wasmgate reads (spec 1.0 "Success" result).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<ResultInterface>,
    #[serde(default)]
    pub ips: Vec<ResultIp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResultInterface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    /// Set for an interface inside the container's namespace.
    #[serde(default)]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResultIp {
    /// `A.B.C.D/N`.
    pub address: String,
    #[serde(default)]
    pub gateway: Option<String>,
    /// An index into `interfaces`.
    #[serde(default)]
    pub interface: Option<usize>,
}

impl CniResult {
    /// The first IPv4 address on interface `ifname` inside the namespace: (address, prefix
    /// length, gateway, MAC).
    pub fn ipv4_of(
        &self,
        ifname: &str,
    ) -> Option<(std::net::Ipv4Addr, u8, Option<std::net::Ipv4Addr>, String)> {
        self.ips.iter().find_map(|ip| {
            let interface = ip.interface.and_then(|i| self.interfaces.get(i));
            if interface.is_some_and(|i| i.name != ifname || i.sandbox.is_none()) {
                return None;
            }
            let (address, prefix) = ip.address.split_once('/')?;
            Some((
                address.parse().ok()?,
                prefix.parse().ok()?,
                ip.gateway.as_deref().and_then(|g| g.parse().ok()),
                interface.map(|i| i.mac.clone()).unwrap_or_default(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn list() -> ConfList {
        ConfList {
            cni_version: CNI_VERSION.into(),
            name: "net".into(),
            plugins: vec![
                json!({"type": "first", "x": 1}),
                json!({"type": "second", "capabilities": {"portMappings": true, "bandwidth": false}}),
            ],
        }
    }

    #[test]
    fn a_plugin_gets_the_lists_version_and_name_its_capabilities_and_the_previous_result() {
        let runtime = json!({"portMappings": [{"hostPort": 8080}], "bandwidth": {"x": 1}});
        let first = plugin_config(&list(), 0, &runtime, None);
        assert_eq!(
            first,
            json!({"type": "first", "x": 1, "cniVersion": "1.0.0", "name": "net"})
        );
        let previous = json!({"cniVersion": "1.0.0", "ips": []});
        let second = plugin_config(&list(), 1, &runtime, Some(&previous));
        assert_eq!(
            second["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080}]})
        );
        assert_eq!(second["prevResult"], previous);
    }

    /// A fake plugin: appends its command, container id and config to LOG, then answers.
    fn fake(dir: &Path, name: &str, answer: &str, exit: i32) {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nconfig=$(cat)\necho \"$CNI_COMMAND {name} $CNI_CONTAINERID $CNI_IFNAME $config\" >> {}/log\necho '{answer}'\nexit {exit}\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn add_chains_results_and_del_runs_in_reverse_with_adds_result() {
        let dir = tempfile::tempdir().unwrap();
        fake(
            dir.path(),
            "first",
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24","interface":0}],"interfaces":[{"name":"eth0","mac":"aa","sandbox":"/ns"}]}"#,
            0,
        );
        fake(
            dir.path(),
            "second",
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1","interface":0}],"interfaces":[{"name":"eth0","mac":"aa","sandbox":"/ns"}]}"#,
            0,
        );
        let cni = Cni::new(vec![dir.path().join("missing"), dir.path().to_path_buf()]);
        let at = Attachment {
            container_id: "c1",
            netns: Path::new("/ns"),
            ifname: "eth0",
        };
        let result = cni.add(&list(), at, &json!({})).unwrap();
        let parsed: CniResult = serde_json::from_value(result.clone()).unwrap();
        let (ip, prefix, gateway, mac) = parsed.ipv4_of("eth0").unwrap();
        assert_eq!(
            (ip.to_string(), prefix, gateway.map(|g| g.to_string()), mac),
            ("10.1.0.2".into(), 24, Some("10.1.0.1".into()), "aa".into())
        );
        cni.del(&list(), at, &json!({}), Some(&result)).unwrap();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert!(lines[0].starts_with("ADD first c1 eth0 {"), "{log}");
        assert!(!lines[0].contains("prevResult"), "{log}");
        assert!(lines[1].starts_with("ADD second c1 eth0 {"), "{log}");
        assert!(lines[1].contains(r#""prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24","interface":0}]"#), "{log}");
        assert!(lines[2].starts_with("DEL second"), "{log}");
        assert!(lines[3].starts_with("DEL first"), "{log}");
        assert!(lines[3].contains(r#""gateway":"10.1.0.1""#), "{log}");
    }

    #[test]
    fn a_plugins_error_object_is_the_error_and_del_still_asks_every_plugin() {
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path(), "first", "", 0);
        fake(
            dir.path(),
            "second",
            r#"{"cniVersion":"1.0.0","code":11,"msg":"no addresses left","details":"range full"}"#,
            1,
        );
        let cni = Cni::new(vec![dir.path().to_path_buf()]);
        let at = Attachment {
            container_id: "c1",
            netns: Path::new("/ns"),
            ifname: "eth0",
        };
        let error = cni.del(&list(), at, &json!({}), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "CNI plugin second DEL: no addresses left (range full) (error code 11)"
        );
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(log.contains("DEL first"), "{log}");
        let missing = Cni::new(vec![dir.path().join("none")]);
        let error = missing.add(&list(), at, &json!({})).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("CNI plugin first is not in CNI_PATH"),
            "{error}"
        );
    }
}
