//! ECS's rules for a task definition, each failure named by its field path.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::{
    Compatibility, ContainerCondition, ContainerDefinition, FieldError, NetworkMode,
    TaskDefinitionSpec, units,
};

/// ECS accepts at most this many containers in one task definition.
const MAX_CONTAINERS: usize = 10;
/// Fargate's longest `stopTimeout`, in seconds.
const FARGATE_MAX_STOP_TIMEOUT: u32 = 120;

/// Checks every rule, pushing each failure; returns the parsed task-level cpu units and MiB.
pub(super) fn validate(
    spec: &TaskDefinitionSpec,
    errors: &mut Vec<FieldError>,
) -> (Option<u32>, Option<u32>) {
    check_name("family", &spec.family, errors);

    let cpu = spec.cpu.as_deref().and_then(|text| {
        units::parse_cpu_units(text)
            .map_err(|rule| errors.push(FieldError::new("cpu", rule)))
            .ok()
    });
    let memory = spec.memory.as_deref().and_then(|text| {
        units::parse_memory_mib(text)
            .map_err(|rule| errors.push(FieldError::new("memory", rule)))
            .ok()
    });

    if spec
        .requires_compatibilities
        .contains(&Compatibility::Fargate)
    {
        check_fargate(
            spec,
            spec.cpu.is_some(),
            cpu,
            spec.memory.is_some(),
            memory,
            errors,
        );
    }

    let volume_names = check_volumes(spec, errors);
    check_containers(spec, cpu, memory, &volume_names, errors);
    (cpu, memory)
}

/// `family`, container and volume names: 1-255 letters, digits, `_` and `-`.
fn check_name(path: &str, name: &str, errors: &mut Vec<FieldError>) {
    let valid = (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        errors.push(FieldError::new(
            path,
            format!("must be 1-255 letters, digits, hyphens and underscores (got \"{name}\")"),
        ));
    }
}

/// Fargate's valid task-level cpu → memory (MiB) combinations.
fn fargate_memory_choices(cpu: u32) -> Option<Vec<u32>> {
    let gb = |from: u32, to: u32, step: u32| (from..=to).step_by(step as usize).map(|g| g * 1024);
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => gb(1, 4, 1).collect(),
        1024 => gb(2, 8, 1).collect(),
        2048 => gb(4, 16, 1).collect(),
        4096 => gb(8, 30, 1).collect(),
        8192 => gb(16, 60, 4).collect(),
        16384 => gb(32, 120, 8).collect(),
        _ => return None,
    })
}

fn check_fargate(
    spec: &TaskDefinitionSpec,
    has_cpu: bool,
    cpu: Option<u32>,
    has_memory: bool,
    memory: Option<u32>,
    errors: &mut Vec<FieldError>,
) {
    if !has_cpu {
        errors.push(FieldError::new(
            "cpu",
            "is required when requiresCompatibilities has FARGATE",
        ));
    }
    if !has_memory {
        errors.push(FieldError::new(
            "memory",
            "is required when requiresCompatibilities has FARGATE",
        ));
    }
    if let (Some(cpu), Some(memory)) = (cpu, memory) {
        match fargate_memory_choices(cpu) {
            None => errors.push(FieldError::new(
                "cpu",
                format!(
                    "{cpu} is not a Fargate CPU size (256, 512, 1024, 2048, 4096, 8192, 16384)"
                ),
            )),
            Some(choices) if !choices.contains(&memory) => errors.push(FieldError::new(
                "memory",
                format!(
                    "{memory} MiB is not valid with cpu {cpu} on FARGATE (valid: {})",
                    describe_mib_choices(&choices)
                ),
            )),
            Some(_) => {}
        }
    }
    if spec.network_mode != Some(NetworkMode::Awsvpc) {
        errors.push(FieldError::new(
            "networkMode",
            "must be awsvpc when requiresCompatibilities has FARGATE",
        ));
    }
    for (index, container) in spec.container_definitions.iter().enumerate() {
        if let Some(timeout) = container
            .stop_timeout
            .filter(|t| *t > FARGATE_MAX_STOP_TIMEOUT)
        {
            errors.push(FieldError::new(
                format!("containerDefinitions[{index}].stopTimeout"),
                format!("must be at most {FARGATE_MAX_STOP_TIMEOUT} on FARGATE (got {timeout})"),
            ));
        }
    }
}

fn describe_mib_choices(choices: &[u32]) -> String {
    match choices {
        [first, .., last] if choices.len() > 3 => {
            let step = choices[1] - choices[0];
            format!("{first}-{last} in steps of {step}")
        }
        _ => choices
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Returns the declared volume names.
fn check_volumes(spec: &TaskDefinitionSpec, errors: &mut Vec<FieldError>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (index, volume) in spec.volumes.iter().enumerate() {
        let path = format!("volumes[{index}]");
        match &volume.name {
            None => errors.push(FieldError::new(format!("{path}.name"), "is required")),
            Some(name) => {
                check_name(&format!("{path}.name"), name, errors);
                if !names.insert(name.clone()) {
                    errors.push(FieldError::new(
                        format!("{path}.name"),
                        format!("volume \"{name}\" is declared twice"),
                    ));
                }
            }
        }
        if let Some(source) = volume.host.as_ref().and_then(|h| h.source_path.as_deref())
            && !source.starts_with('/')
        {
            errors.push(FieldError::new(
                format!("{path}.host.sourcePath"),
                format!("must be an absolute path (got \"{source}\")"),
            ));
        }
    }
    names
}

fn check_containers(
    spec: &TaskDefinitionSpec,
    task_cpu: Option<u32>,
    task_memory: Option<u32>,
    volume_names: &BTreeSet<String>,
    errors: &mut Vec<FieldError>,
) {
    let containers = &spec.container_definitions;
    if containers.is_empty() {
        errors.push(FieldError::new(
            "containerDefinitions",
            "must have at least one container",
        ));
        return;
    }
    if containers.len() > MAX_CONTAINERS {
        errors.push(FieldError::new(
            "containerDefinitions",
            format!(
                "must have at most {MAX_CONTAINERS} containers (got {})",
                containers.len()
            ),
        ));
    }
    if !containers.iter().any(ContainerDefinition::is_essential) {
        errors.push(FieldError::new(
            "containerDefinitions",
            "must have at least one essential container",
        ));
    }

    let fargate = spec
        .requires_compatibilities
        .contains(&Compatibility::Fargate);
    let fenced = containers.iter().any(ContainerDefinition::limits_outbound);
    let mut seen_names = HashSet::new();
    let mut seen_ports = BTreeMap::new();
    for (index, container) in containers.iter().enumerate() {
        let path = format!("containerDefinitions[{index}]");
        check_name(&format!("{path}.name"), &container.name, errors);
        if !seen_names.insert(container.name.as_str()) {
            errors.push(FieldError::new(
                format!("{path}.name"),
                format!("container name \"{}\" is used twice", container.name),
            ));
        }
        if container.image.trim().is_empty() {
            errors.push(FieldError::new(
                format!("{path}.image"),
                "must not be empty",
            ));
        }
        check_container_memory(&path, container, task_memory, errors);
        check_container_misc(&path, container, errors);
        super::linux::check(&path, container, fargate, fenced, errors);
        check_mount_points(&path, container, volume_names, errors);
        check_port_mappings(&path, container, spec.network_mode, &mut seen_ports, errors);
        check_health_check(&path, container, errors);
        check_depends_on(&path, container, containers, errors);
    }
    check_totals(containers, task_cpu, task_memory, errors);
    check_dependency_cycles(containers, errors);
}

fn check_container_memory(
    path: &str,
    container: &ContainerDefinition,
    task_memory: Option<u32>,
    errors: &mut Vec<FieldError>,
) {
    for (field, value) in [
        ("memory", container.memory),
        ("memoryReservation", container.memory_reservation),
    ] {
        if value == Some(0) {
            errors.push(FieldError::new(
                format!("{path}.{field}"),
                "must be at least 1 MiB",
            ));
        }
    }
    if let (Some(hard), Some(soft)) = (container.memory, container.memory_reservation)
        && soft >= hard
    {
        errors.push(FieldError::new(
            format!("{path}.memoryReservation"),
            format!("must be below memory ({soft} >= {hard})"),
        ));
    }
    if task_memory.is_none() && container.memory.is_none() && container.memory_reservation.is_none()
    {
        errors.push(FieldError::new(
            format!("{path}.memory"),
            "one of memory or memoryReservation is required when the task has no memory",
        ));
    }
    if let (Some(task), Some(hard)) = (task_memory, container.memory)
        && hard > task
    {
        errors.push(FieldError::new(
            format!("{path}.memory"),
            format!("must not exceed the task's memory ({hard} > {task})"),
        ));
    }
}

fn check_container_misc(path: &str, container: &ContainerDefinition, errors: &mut Vec<FieldError>) {
    super::http::HttpSettings::from_labels(&container.docker_labels, path, errors);
    if let Some(value) = container.docker_labels.get(super::TASK_TIMEOUT_LABEL)
        && super::timeout_seconds(value).is_none()
    {
        errors.push(FieldError::new(
            format!("{path}.dockerLabels[\"{}\"]", super::TASK_TIMEOUT_LABEL),
            format!("must be whole seconds, 1 to 31536000 (got \"{value}\")"),
        ));
    }
    if let Some(dir) = &container.working_directory {
        if !dir.starts_with('/') {
            errors.push(FieldError::new(
                format!("{path}.workingDirectory"),
                format!("must be an absolute path (got \"{dir}\")"),
            ));
        } else if let Some(why) = super::kernel_filesystem_dir(dir) {
            errors.push(FieldError::new(format!("{path}.workingDirectory"), why));
        }
    }
    for (index, variable) in container.environment.iter().enumerate() {
        if variable.name.as_deref().is_none_or(str::is_empty) {
            errors.push(FieldError::new(
                format!("{path}.environment[{index}].name"),
                "is required",
            ));
        }
    }
}

fn check_mount_points(
    path: &str,
    container: &ContainerDefinition,
    volume_names: &BTreeSet<String>,
    errors: &mut Vec<FieldError>,
) {
    let mut seen_paths = HashSet::new();
    for (index, mount) in container.mount_points.iter().enumerate() {
        let path = format!("{path}.mountPoints[{index}]");
        match &mount.source_volume {
            None => errors.push(FieldError::new(
                format!("{path}.sourceVolume"),
                "is required",
            )),
            Some(name) if !volume_names.contains(name) => errors.push(FieldError::new(
                format!("{path}.sourceVolume"),
                format!("names volume \"{name}\", which the task does not declare in volumes"),
            )),
            Some(_) => {}
        }
        match &mount.container_path {
            None => errors.push(FieldError::new(
                format!("{path}.containerPath"),
                "is required",
            )),
            Some(target) if !target.starts_with('/') => errors.push(FieldError::new(
                format!("{path}.containerPath"),
                format!("must be an absolute path (got \"{target}\")"),
            )),
            Some(target) if !seen_paths.insert(target.trim_end_matches('/')) => {
                errors.push(FieldError::new(
                    format!("{path}.containerPath"),
                    format!("\"{target}\" is mounted twice in this container"),
                ))
            }
            Some(_) => {}
        }
    }
}

fn check_port_mappings(
    path: &str,
    container: &ContainerDefinition,
    network_mode: Option<NetworkMode>,
    seen_ports: &mut BTreeMap<(i64, String), String>,
    errors: &mut Vec<FieldError>,
) {
    let port_range = 1..=65535;
    for (index, mapping) in container.port_mappings.iter().enumerate() {
        let path = format!("{path}.portMappings[{index}]");
        if let Some(range) = &mapping.container_port_range {
            if parse_port_range(range).is_none() {
                errors.push(FieldError::new(
                    format!("{path}.containerPortRange"),
                    format!("must be \"FROM-TO\" with 1 <= FROM < TO <= 65535 (got \"{range}\")"),
                ));
            }
            if mapping.container_port.is_some() {
                errors.push(FieldError::new(
                    format!("{path}.containerPort"),
                    "must not be set together with containerPortRange",
                ));
            }
            continue;
        }
        let Some(container_port) = mapping.container_port else {
            errors.push(FieldError::new(
                format!("{path}.containerPort"),
                "is required (or containerPortRange)",
            ));
            continue;
        };
        if !port_range.contains(&container_port) {
            errors.push(FieldError::new(
                format!("{path}.containerPort"),
                format!("must be between 1 and 65535 (got {container_port})"),
            ));
        }
        if let Some(host_port) = mapping.host_port {
            if !(0..=65535).contains(&host_port) {
                errors.push(FieldError::new(
                    format!("{path}.hostPort"),
                    format!("must be between 0 and 65535 (got {host_port})"),
                ));
            } else if matches!(network_mode, Some(NetworkMode::Awsvpc | NetworkMode::Host))
                && host_port != container_port
            {
                errors.push(FieldError::new(
                    format!("{path}.hostPort"),
                    format!(
                        "must equal containerPort in network mode awsvpc or host \
                         ({host_port} != {container_port})"
                    ),
                ));
            }
        }
        let protocol = format!(
            "{:?}",
            mapping.protocol.unwrap_or(super::TransportProtocol::Tcp)
        );
        if let Some(first) = seen_ports.insert((container_port, protocol), path.clone()) {
            errors.push(FieldError::new(
                format!("{path}.containerPort"),
                format!("port {container_port} is already mapped by {first}"),
            ));
        }
    }
}

fn parse_port_range(range: &str) -> Option<(u16, u16)> {
    let (from, to) = range.split_once('-')?;
    let (from, to): (u16, u16) = (from.trim().parse().ok()?, to.trim().parse().ok()?);
    (from >= 1 && from < to).then_some((from, to))
}

fn check_health_check(path: &str, container: &ContainerDefinition, errors: &mut Vec<FieldError>) {
    let Some(check) = &container.health_check else {
        return;
    };
    let path = format!("{path}.healthCheck");
    match check.command.first().map(String::as_str) {
        None => errors.push(FieldError::new(
            format!("{path}.command"),
            "must not be empty",
        )),
        Some("CMD" | "CMD-SHELL") if check.command.len() < 2 => errors.push(FieldError::new(
            format!("{path}.command"),
            "must name what to run after CMD or CMD-SHELL",
        )),
        Some("CMD" | "CMD-SHELL" | "NONE") => {}
        Some(other) => errors.push(FieldError::new(
            format!("{path}.command[0]"),
            format!("must be CMD, CMD-SHELL or NONE (got \"{other}\")"),
        )),
    }
    for (field, value, range) in [
        ("interval", check.interval, 5..=300),
        ("timeout", check.timeout, 2..=60),
        ("retries", check.retries, 1..=10),
        ("startPeriod", check.start_period, 0..=300),
    ] {
        if let Some(value) = value
            && !range.contains(&value)
        {
            errors.push(FieldError::new(
                format!("{path}.{field}"),
                format!(
                    "must be between {} and {} (got {value})",
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
}

fn check_depends_on(
    path: &str,
    container: &ContainerDefinition,
    containers: &[ContainerDefinition],
    errors: &mut Vec<FieldError>,
) {
    for (index, dependency) in container.depends_on.iter().enumerate() {
        let path = format!("{path}.dependsOn[{index}].containerName");
        let name = &dependency.container_name;
        if *name == container.name {
            errors.push(FieldError::new(path, "a container cannot depend on itself"));
            continue;
        }
        let Some(target) = containers.iter().find(|c| c.name == *name) else {
            errors.push(FieldError::new(
                path,
                format!("names no container of this task (\"{name}\")"),
            ));
            continue;
        };
        match dependency.condition {
            ContainerCondition::Healthy if target.health_check.is_none() => {
                errors.push(FieldError::new(
                    path,
                    format!("condition HEALTHY needs a healthCheck on container \"{name}\""),
                ))
            }
            ContainerCondition::Complete | ContainerCondition::Success if target.is_essential() => {
                errors.push(FieldError::new(
                    path,
                    format!(
                        "condition {} cannot wait for essential container \"{name}\"",
                        dependency.condition.as_str()
                    ),
                ))
            }
            _ => {}
        }
    }
}

fn check_totals(
    containers: &[ContainerDefinition],
    task_cpu: Option<u32>,
    task_memory: Option<u32>,
    errors: &mut Vec<FieldError>,
) {
    let total_cpu: u64 = containers.iter().filter_map(|c| c.cpu).map(u64::from).sum();
    if let Some(task_cpu) = task_cpu
        && total_cpu > u64::from(task_cpu)
    {
        errors.push(FieldError::new(
            "containerDefinitions",
            format!(
                "the containers' cpu adds up to {total_cpu}, more than the task's cpu {task_cpu}"
            ),
        ));
    }
    let total_memory: u64 = containers
        .iter()
        .filter_map(|c| c.memory)
        .map(u64::from)
        .sum();
    if let Some(task_memory) = task_memory
        && total_memory > u64::from(task_memory)
    {
        errors.push(FieldError::new(
            "containerDefinitions",
            format!(
                "the containers' memory adds up to {total_memory} MiB, more than the task's \
                 memory {task_memory} MiB"
            ),
        ));
    }
}

/// Reports each dependsOn cycle once, naming its containers in order.
fn check_dependency_cycles(containers: &[ContainerDefinition], errors: &mut Vec<FieldError>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    let index_of = |name: &str| containers.iter().position(|c| c.name == name);
    let mut marks = vec![Mark::Unvisited; containers.len()];

    fn visit(
        node: usize,
        containers: &[ContainerDefinition],
        index_of: &dyn Fn(&str) -> Option<usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        errors: &mut Vec<FieldError>,
    ) {
        marks[node] = Mark::OnPath;
        stack.push(node);
        for dependency in &containers[node].depends_on {
            let Some(next) = index_of(&dependency.container_name) else {
                continue;
            };
            match marks[next] {
                Mark::OnPath => {
                    let start = stack.iter().position(|n| *n == next).unwrap_or(0);
                    let cycle: Vec<&str> = stack[start..]
                        .iter()
                        .chain(std::iter::once(&next))
                        .map(|n| containers[*n].name.as_str())
                        .collect();
                    errors.push(FieldError::new(
                        format!("containerDefinitions[{node}].dependsOn"),
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                    ));
                }
                Mark::Unvisited => visit(next, containers, index_of, marks, stack, errors),
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Done;
    }

    for start in 0..containers.len() {
        if marks[start] == Mark::Unvisited {
            visit(
                start,
                containers,
                &index_of,
                &mut marks,
                &mut Vec::new(),
                errors,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::taskdef::TaskDefinition;

    /// A valid one-container task definition to break one field at a time.
    fn base() -> Value {
        json!({
            "family": "web",
            "memory": "512",
            "containerDefinitions": [{"name": "app", "image": "app.wasm"}]
        })
    }

    fn errors_of(document: Value) -> Vec<String> {
        match TaskDefinition::from_value(document) {
            Ok(_) => Vec::new(),
            Err(error) => error
                .field_errors()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    fn with(mut document: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = document.pointer_mut(parent).unwrap();
        match target {
            Value::Object(map) => {
                map.insert(key.to_string(), value);
            }
            Value::Array(items) => items.push(value),
            _ => panic!("{pointer} is not in an object or array"),
        }
        document
    }

    #[test]
    fn the_base_document_is_valid() {
        assert_eq!(errors_of(base()), Vec::<String>::new());
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let two_containers = with(
            base(),
            "/containerDefinitions/-",
            json!({"name": "side", "image": "s.wasm"}),
        );
        let cases: Vec<(Value, &str)> = vec![
            (
                with(base(), "/family", json!("bad family!")),
                "family: must be 1-255 letters",
            ),
            (with(base(), "/family", json!("")), "family: must be 1-255"),
            (
                with(
                    base(),
                    "/containerDefinitions/0/dockerLabels",
                    json!({"wasmgate.task.timeout": "1h"}),
                ),
                "containerDefinitions[0].dockerLabels[\"wasmgate.task.timeout\"]: must be whole seconds",
            ),
            (
                with(base(), "/containerDefinitions", json!([])),
                "containerDefinitions: must have at least one container",
            ),
            (
                with(base(), "/containerDefinitions/0/essential", json!(false)),
                "containerDefinitions: must have at least one essential container",
            ),
            (
                with(
                    two_containers.clone(),
                    "/containerDefinitions/1/name",
                    json!("app"),
                ),
                "containerDefinitions[1].name: container name \"app\" is used twice",
            ),
            (
                with(
                    with(
                        two_containers.clone(),
                        "/containerDefinitions/1/memory",
                        json!(512),
                    ),
                    "/containerDefinitions/1/memoryReservation",
                    json!(1024),
                ),
                "containerDefinitions[1].memoryReservation: must be below memory (1024 >= 512)",
            ),
            (
                with(base(), "/memory", json!("lots")),
                "memory: \"lots\" has no number",
            ),
            (
                with(base(), "/cpu", json!("2 cores")),
                "cpu: \"2 cores\" has an unknown unit \"cores\"",
            ),
            (
                with(base(), "/requiresCompatibilities", json!(["FARGATE"])),
                "cpu: is required when requiresCompatibilities has FARGATE",
            ),
            (
                with(
                    with(
                        with(
                            with(base(), "/requiresCompatibilities", json!(["FARGATE"])),
                            "/cpu",
                            json!("256"),
                        ),
                        "/memory",
                        json!("4096"),
                    ),
                    "/networkMode",
                    json!("awsvpc"),
                ),
                "memory: 4096 MiB is not valid with cpu 256 on FARGATE (valid: 512, 1024, 2048)",
            ),
            (
                with(
                    with(
                        with(
                            with(base(), "/requiresCompatibilities", json!(["FARGATE"])),
                            "/cpu",
                            json!("1 vCPU"),
                        ),
                        "/memory",
                        json!("1 GB"),
                    ),
                    "/networkMode",
                    json!("awsvpc"),
                ),
                "memory: 1024 MiB is not valid with cpu 1024 on FARGATE (valid: 2048-8192 in steps of 1024)",
            ),
            (
                with(
                    with(
                        with(base(), "/requiresCompatibilities", json!(["FARGATE"])),
                        "/cpu",
                        json!("256"),
                    ),
                    "/memory",
                    json!("512"),
                ),
                "networkMode: must be awsvpc when requiresCompatibilities has FARGATE",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/healthCheck",
                    json!({"command": ["CMD", "x"], "interval": 1}),
                ),
                "containerDefinitions[0].healthCheck.interval: must be between 5 and 300 (got 1)",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/healthCheck",
                    json!({"command": ["CMD", "x"], "retries": 11}),
                ),
                "containerDefinitions[0].healthCheck.retries: must be between 1 and 10 (got 11)",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/healthCheck",
                    json!({"command": ["RUN", "x"]}),
                ),
                "containerDefinitions[0].healthCheck.command[0]: must be CMD, CMD-SHELL or NONE",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/portMappings",
                    json!([{"containerPort": 70000}]),
                ),
                "containerDefinitions[0].portMappings[0].containerPort: must be between 1 and 65535 (got 70000)",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/portMappings",
                    json!([{"containerPort": 80}, {"containerPort": 80}]),
                ),
                "containerDefinitions[0].portMappings[1].containerPort: port 80 is already mapped",
            ),
            (
                with(
                    with(base(), "/networkMode", json!("awsvpc")),
                    "/containerDefinitions/0/portMappings",
                    json!([{"containerPort": 80, "hostPort": 8080}]),
                ),
                "containerDefinitions[0].portMappings[0].hostPort: must equal containerPort in network mode awsvpc",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/dependsOn",
                    json!([{"containerName": "ghost", "condition": "START"}]),
                ),
                "containerDefinitions[0].dependsOn[0].containerName: names no container of this task (\"ghost\")",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/dependsOn",
                    json!([{"containerName": "app", "condition": "START"}]),
                ),
                "containerDefinitions[0].dependsOn[0].containerName: a container cannot depend on itself",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/dependsOn",
                    json!([{"containerName": "app", "condition": "LATER"}]),
                ),
                "containerDefinitions[0].dependsOn[0].condition: unknown variant `LATER`",
            ),
            (
                with(
                    two_containers.clone(),
                    "/containerDefinitions/1/dependsOn",
                    json!([{"containerName": "app", "condition": "SUCCESS"}]),
                ),
                "containerDefinitions[1].dependsOn[0].containerName: condition SUCCESS cannot wait for essential container \"app\"",
            ),
            (
                with(
                    two_containers.clone(),
                    "/containerDefinitions/1/dependsOn",
                    json!([{"containerName": "app", "condition": "HEALTHY"}]),
                ),
                "condition HEALTHY needs a healthCheck on container \"app\"",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/mountPoints",
                    json!([{"sourceVolume": "data", "containerPath": "/data"}]),
                ),
                "containerDefinitions[0].mountPoints[0].sourceVolume: names volume \"data\", which the task does not declare in volumes",
            ),
            (
                with(
                    with(base(), "/volumes", json!([{"name": "data"}])),
                    "/containerDefinitions/0/mountPoints",
                    json!([{"sourceVolume": "data", "containerPath": "data"}]),
                ),
                "containerDefinitions[0].mountPoints[0].containerPath: must be an absolute path (got \"data\")",
            ),
            (
                with(base(), "/volumes", json!([{"name": "v"}, {"name": "v"}])),
                "volumes[1].name: volume \"v\" is declared twice",
            ),
            (
                with(base(), "/containerDefinitions/0/memory", json!(1024)),
                "containerDefinitions[0].memory: must not exceed the task's memory (1024 > 512)",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "a.wasm"}]}),
                "containerDefinitions[0].memory: one of memory or memoryReservation is required when the task has no memory",
            ),
            (
                with(base(), "/containerDefinitions/0/memory", json!("512")),
                "containerDefinitions[0].memory: invalid type: string \"512\", expected u32",
            ),
            (
                with(base(), "/containerDefinitions/0/image", json!("")),
                "containerDefinitions[0].image: must not be empty",
            ),
            (
                with(
                    base(),
                    "/containerDefinitions/0/workingDirectory",
                    json!("app"),
                ),
                "containerDefinitions[0].workingDirectory: must be an absolute path",
            ),
            (
                with(base(), "/containerDefinitions/0/imageName", json!("x")),
                "containerDefinitions[0].imageName: unknown field, not in the ECS task definition model",
            ),
            (
                json!(["not", "an", "object"]),
                "a task definition must be a JSON object",
            ),
            (
                json!({"containerDefinitions": []}),
                "missing field `family`",
            ),
        ];
        for (document, expected) in cases {
            let errors = errors_of(document.clone());
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "expected an error containing {expected:?} for {document}\ngot {errors:?}"
            );
        }
    }

    #[test]
    fn dependency_cycles_are_named_in_order() {
        let document = json!({
            "family": "cycle",
            "memory": "512",
            "containerDefinitions": [
                {"name": "a", "image": "a.wasm", "dependsOn": [{"containerName": "b", "condition": "START"}]},
                {"name": "b", "image": "b.wasm", "dependsOn": [{"containerName": "c", "condition": "START"}]},
                {"name": "c", "image": "c.wasm", "dependsOn": [{"containerName": "a", "condition": "START"}]}
            ]
        });
        let errors = errors_of(document);
        assert_eq!(
            errors,
            ["containerDefinitions[2].dependsOn: dependency cycle: a -> b -> c -> a"]
        );
    }

    #[test]
    fn valid_fargate_pairs_pass() {
        for (cpu, memory) in [
            ("256", "512"),
            ("256", "2 GB"),
            ("512", "4096"),
            ("4096", "30720"),
            ("0.5 vCPU", "1 GB"),
        ] {
            let document = json!({
                "family": "f", "cpu": cpu, "memory": memory, "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "containerDefinitions": [{"name": "a", "image": "a.wasm"}]
            });
            assert_eq!(errors_of(document), Vec::<String>::new(), "{cpu}/{memory}");
        }
    }

    #[test]
    fn fields_not_acted_on_are_kept_as_given() {
        let document = json!({
            "family": "keep",
            "memory": "512",
            "taskRoleArn": "arn:aws:iam::123456789012:role/app",
            "containerDefinitions": [{
                "name": "a", "image": "a.wasm",
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
                "ulimits": [{"name": "nofile", "softLimit": 1, "hardLimit": 2}]
            }]
        });
        let definition = TaskDefinition::from_value(document.clone()).unwrap();
        assert_eq!(definition.raw, document);
        assert_eq!(definition.memory_mib, Some(512));
    }
}
