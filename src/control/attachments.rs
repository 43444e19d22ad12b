//! A task's network as ECS shows it in DescribeTasks: for awsvpc an `ElasticNetworkInterface`
//! attachment (subnetId, networkInterfaceId, macAddress, privateDnsName, privateIPv4Address)
//! and each container's `networkInterfaces`; for bridge and host each container's
//! `networkBindings`. The ids are derived from the task id and the subnet, so a report that
//! arrives twice writes the same members.

use serde_json::{Value, json};

use crate::capacity::container::network::{NetworkAttachment, TaskNetworkMode};
use crate::records::TaskRecord;

const ENI: &str = "ElasticNetworkInterface";

/// Writes `network` into the task's record.
pub fn record_network(task: &mut TaskRecord, network: &NetworkAttachment) {
    let task_id = task.id().to_string();
    if let (TaskNetworkMode::Awsvpc, Some(interface)) = (network.mode, &network.interface) {
        let address = interface.ipv4.to_string();
        let attachment_id = uuid_of(&format!("eni-attachment:{task_id}"));
        let region = task.task_arn.split(':').nth(3).unwrap_or("us-east-1");
        let details = json!([
            {"name": "subnetId", "value": format!("subnet-{}", &hex_of(&interface.subnet)[..17])},
            {"name": "networkInterfaceId", "value": format!("eni-{}", &hex_of(&task_id)[..17])},
            {"name": "macAddress", "value": interface.mac},
            {"name": "privateDnsName", "value": format!("ip-{}.{region}.compute.internal", address.replace('.', "-"))},
            {"name": "privateIPv4Address", "value": address},
        ]);
        let attachments = task.shape.entry("attachments").or_insert_with(|| json!([]));
        if let Some(list) = attachments.as_array_mut() {
            list.retain(|a| a["type"] != ENI);
            list.push(json!({
                "id": attachment_id,
                "type": ENI,
                "status": "ATTACHED",
                "details": details,
            }));
        }
        for container in &mut task.containers {
            container.shape.insert(
                "networkInterfaces".into(),
                json!([{"attachmentId": attachment_id, "privateIpv4Address": address}]),
            );
        }
    }
    if matches!(
        network.mode,
        TaskNetworkMode::Bridge | TaskNetworkMode::Host
    ) {
        for container in &mut task.containers {
            let bindings: Vec<Value> = network
                .bindings
                .iter()
                .filter(|b| b.container == container.name)
                .map(|b| {
                    json!({
                        "bindIP": "0.0.0.0",
                        "containerPort": b.container_port,
                        "hostPort": b.host_port,
                        "protocol": b.protocol.as_str(),
                    })
                })
                .collect();
            container
                .shape
                .insert("networkBindings".into(), Value::Array(bindings));
        }
    }
}

/// A stopped task's interface is gone (ECS shows its attachment DELETED).
pub fn record_network_released(task: &mut TaskRecord) {
    if let Some(list) = task
        .shape
        .get_mut("attachments")
        .and_then(Value::as_array_mut)
    {
        for attachment in list.iter_mut().filter(|a| a["type"] == ENI) {
            attachment["status"] = json!("DELETED");
        }
    }
}

fn hex_of(text: &str) -> String {
    crate::capacity::wasm::sha256_hex(text.as_bytes())
}

/// A UUID-shaped id (8-4-4-4-12 hex digits) derived from `seed`.
fn uuid_of(seed: &str) -> String {
    let hex = hex_of(seed);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::container::network::{PortBinding, Protocol, TaskInterface};

    fn task() -> TaskRecord {
        serde_json::from_value(json!({
            "taskArn": "arn:aws:ecs:eu-west-1:1:task/c/0123456789abcdef0123456789abcdef",
            "clusterArn": "c", "taskDefinitionArn": "d", "createdAt": 0.0,
            "lastStatus": "PENDING", "desiredStatus": "RUNNING",
            "attachments": [{"type": "wasmgate.host", "status": "ATTACHED"}],
            "containers": [{"name": "web", "lastStatus": "PENDING"}, {"name": "side", "lastStatus": "PENDING"}]}))
        .unwrap()
    }

    #[test]
    fn an_awsvpc_task_shows_its_interface_as_ecs_does_and_twice_is_once() {
        let network = NetworkAttachment {
            mode: TaskNetworkMode::Awsvpc,
            interface: Some(TaskInterface {
                ipv4: "10.176.0.7".parse().unwrap(),
                prefix: 16,
                gateway: Some("10.176.0.1".parse().unwrap()),
                mac: "46:8f:c4:2c:67:b7".into(),
                subnet: "10.176.0.0/16".into(),
            }),
            bindings: vec![],
        };
        let mut task = task();
        record_network(&mut task, &network);
        record_network(&mut task, &network);
        let shape = task.to_shape();
        let attachments = shape["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 2, "{shape}");
        let eni = &attachments[1];
        assert_eq!(eni["type"], "ElasticNetworkInterface");
        assert_eq!(eni["status"], "ATTACHED");
        let detail = |name: &str| {
            eni["details"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["name"] == name)
                .map(|d| d["value"].as_str().unwrap().to_string())
                .unwrap()
        };
        assert_eq!(detail("privateIPv4Address"), "10.176.0.7");
        assert_eq!(detail("macAddress"), "46:8f:c4:2c:67:b7");
        assert_eq!(
            detail("privateDnsName"),
            "ip-10-176-0-7.eu-west-1.compute.internal"
        );
        assert!(detail("subnetId").starts_with("subnet-") && detail("subnetId").len() == 24);
        assert!(detail("networkInterfaceId").starts_with("eni-"));
        for container in shape["containers"].as_array().unwrap() {
            assert_eq!(
                container["networkInterfaces"],
                json!([{"attachmentId": eni["id"], "privateIpv4Address": "10.176.0.7"}])
            );
        }
        record_network_released(&mut task);
        assert_eq!(task.to_shape()["attachments"][1]["status"], "DELETED");
        assert_eq!(task.to_shape()["attachments"][0]["status"], "ATTACHED");
    }

    #[test]
    fn a_bridge_task_shows_each_containers_bindings() {
        let network = NetworkAttachment {
            mode: TaskNetworkMode::Bridge,
            interface: None,
            bindings: vec![PortBinding {
                container: "web".into(),
                container_port: 80,
                host_port: 49200,
                protocol: Protocol::Tcp,
            }],
        };
        let mut task = task();
        record_network(&mut task, &network);
        let shape = task.to_shape();
        assert_eq!(
            shape["containers"][0]["networkBindings"],
            json!([{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49200, "protocol": "tcp"}])
        );
        assert_eq!(shape["containers"][1]["networkBindings"], json!([]));
        assert!(shape["containers"][0].get("networkInterfaces").is_none());
    }
}
