//! ECS ARNs: `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`, `task-definition/FAMILY:REV`, ...

/// Where ARNs say this control plane lives.
#[derive(Debug, Clone)]
pub struct ArnScope {
    pub region: String,
    pub account: String,
}

impl Default for ArnScope {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account: "000000000000".into(),
        }
    }
}

impl ArnScope {
    /// A scope for `region` and `account`, checked as AWS spells them (`us-east-1`, twelve
    /// digits).
    pub fn new(region: &str, account: &str) -> Result<Self, String> {
        if !is_region(region) {
            return Err(format!(
                "--region {region}: not a region name (lowercase letters, digits and hyphens, e.g. us-east-1)"
            ));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("--account-id {account}: must be 12 digits"));
        }
        Ok(Self {
            region: region.into(),
            account: account.into(),
        })
    }

    /// The same scope in `region`.
    pub fn in_region(&self, region: &str) -> Self {
        Self {
            region: region.into(),
            account: self.account.clone(),
        }
    }

    /// The prefix of every ECS ARN of this scope.
    pub fn prefix(&self) -> String {
        format!("arn:aws:ecs:{}:{}:", self.region, self.account)
    }

    fn arn(&self, resource: &str) -> String {
        format!("arn:aws:ecs:{}:{}:{resource}", self.region, self.account)
    }

    pub fn cluster(&self, name: &str) -> String {
        self.arn(&format!("cluster/{name}"))
    }

    pub fn capacity_provider(&self, name: &str) -> String {
        self.arn(&format!("capacity-provider/{name}"))
    }

    pub fn container_instance(&self, cluster: &str, id: &str) -> String {
        self.arn(&format!("container-instance/{cluster}/{id}"))
    }

    /// A host of the shared pool: in no cluster (the ARN format without one).
    pub fn pool_container_instance(&self, id: &str) -> String {
        self.arn(&format!("container-instance/{id}"))
    }

    pub fn service(&self, cluster: &str, name: &str) -> String {
        self.arn(&format!("service/{cluster}/{name}"))
    }

    pub fn task(&self, cluster: &str, task_id: &str) -> String {
        self.arn(&format!("task/{cluster}/{task_id}"))
    }

    pub fn task_definition(&self, family: &str, revision: u64) -> String {
        self.arn(&format!("task-definition/{family}:{revision}"))
    }
}

/// Whether `text` looks like an AWS region name (`us-east-1`, `eu-central-2`, `us-gov-west-1`).
pub fn is_region(text: &str) -> bool {
    (4..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && text.contains('-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// The resource part of an ARN (`cluster/NAME` → `NAME` for kind `cluster`), or the text
/// itself when it is not an ARN.
pub fn resource_name<'a>(text: &'a str, kind: &str) -> &'a str {
    if !text.starts_with("arn:") {
        return text;
    }
    let resource = text.splitn(6, ':').nth(5).unwrap_or(text);
    resource
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(resource)
}

/// ECS's rule for cluster and service names: 1-255 letters, digits, hyphens and underscores;
/// the reason, naming `member`, when `name` breaks it.
pub fn check_resource_name(member: &str, name: &str) -> Result<(), String> {
    let valid = (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{member}: must be 1-255 letters, digits, hyphens and underscores (got \"{name}\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_arns_and_plain_names() {
        let scope = ArnScope::default();
        assert_eq!(resource_name(&scope.cluster("prod"), "cluster"), "prod");
        assert_eq!(resource_name("prod", "cluster"), "prod");
        assert_eq!(
            resource_name(&scope.task_definition("web", 3), "task-definition"),
            "web:3"
        );
    }
}
