//! Task placement as a pure function: which container instance gets a task, given what each
//! has left, the task's needs, and the service's placement strategies and constraints.
//!
//! Constraints filter (`distinctInstance`: no other task of the same group on the instance);
//! strategies order what is left, the first strategy first, later ones breaking ties:
//! `binpack` (field `memory` or `cpu`: the least of it left, so hosts fill up one by one),
//! `spread` (field `instanceId`: the fewest tasks of the group), `random`. Without a strategy,
//! tasks spread by instance.

use super::model::{PlacementConstraint, PlacementStrategy};

/// One container instance as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub arn: String,
    pub free_cpu: u64,
    pub free_memory: u64,
    /// Tasks of the group being placed (the service's, or RunTask's `group`) already on it.
    pub group_tasks: u32,
}

/// Why a task fits nowhere, as ECS words placement failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFit {
    /// `RESOURCE:MEMORY`, `RESOURCE:CPU` or `CONSTRAINT:distinctInstance`.
    pub reason: &'static str,
    /// The candidate that came closest, if any.
    pub closest: Option<String>,
}

/// Checks strategies and constraints as CreateService and RunTask accept them.
pub fn validate(
    strategies: &[PlacementStrategy],
    constraints: &[PlacementConstraint],
) -> Result<(), String> {
    for (i, strategy) in strategies.iter().enumerate() {
        let field = strategy.field.as_deref().map(str::to_ascii_lowercase);
        let ok = matches!(
            (strategy.kind.as_str(), field.as_deref()),
            ("binpack", Some("memory" | "cpu"))
                | ("spread", Some("instanceid" | "host"))
                | ("random", None)
        );
        if !ok {
            return Err(format!(
                "placementStrategy[{i}]: expected binpack (field memory or cpu), spread (field \
                 instanceId) or random (no field); got type {:?} field {:?}",
                strategy.kind, strategy.field
            ));
        }
    }
    for (i, constraint) in constraints.iter().enumerate() {
        match constraint.kind.as_str() {
            "distinctInstance" if constraint.expression.is_none() => {}
            "distinctInstance" => {
                return Err(format!(
                    "placementConstraints[{i}]: distinctInstance takes no expression"
                ));
            }
            other => {
                return Err(format!(
                    "placementConstraints[{i}]: type {other:?} is not supported (wasmgate \
                     supports distinctInstance)"
                ));
            }
        }
    }
    Ok(())
}

/// The index of the candidate that gets a task needing (`cpu`, `memory`), or why none can.
/// `random` draws from `seed`.
pub fn choose(
    candidates: &[Candidate],
    cpu: u64,
    memory: u64,
    strategies: &[PlacementStrategy],
    constraints: &[PlacementConstraint],
    seed: u64,
) -> Result<usize, NoFit> {
    let distinct = constraints.iter().any(|c| c.kind == "distinctInstance");
    let mut fitting: Vec<usize> = Vec::new();
    let mut failure = NoFit {
        reason: "RESOURCE:MEMORY",
        closest: None,
    };
    for (index, candidate) in candidates.iter().enumerate() {
        if memory > candidate.free_memory {
            failure = NoFit {
                reason: "RESOURCE:MEMORY",
                closest: Some(candidate.arn.clone()),
            };
        } else if cpu > candidate.free_cpu {
            failure = NoFit {
                reason: "RESOURCE:CPU",
                closest: Some(candidate.arn.clone()),
            };
        } else if distinct && candidate.group_tasks > 0 {
            failure = NoFit {
                reason: "CONSTRAINT:distinctInstance",
                closest: Some(candidate.arn.clone()),
            };
        } else {
            fitting.push(index);
        }
    }
    if fitting.is_empty() {
        return Err(failure);
    }
    let default = [PlacementStrategy {
        kind: "spread".into(),
        field: Some("instanceId".into()),
    }];
    let strategies = if strategies.is_empty() {
        &default[..]
    } else {
        strategies
    };
    // Sort by each strategy's key in turn; a stable sort keeps earlier strategies first.
    for strategy in strategies.iter().rev() {
        let field = strategy
            .field
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match (strategy.kind.as_str(), field.as_str()) {
            ("binpack", "cpu") => fitting.sort_by_key(|&i| candidates[i].free_cpu),
            ("binpack", _) => fitting.sort_by_key(|&i| candidates[i].free_memory),
            ("spread", _) => fitting.sort_by_key(|&i| candidates[i].group_tasks),
            ("random", _) => {
                let pick = (seed % fitting.len() as u64) as usize;
                fitting.swap(0, pick);
            }
            _ => {}
        }
    }
    Ok(fitting[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, cpu: u64, memory: u64, group_tasks: u32) -> Candidate {
        Candidate {
            arn: name.into(),
            free_cpu: cpu,
            free_memory: memory,
            group_tasks,
        }
    }

    fn strategy(kind: &str, field: Option<&str>) -> PlacementStrategy {
        PlacementStrategy {
            kind: kind.into(),
            field: field.map(Into::into),
        }
    }

    #[test]
    fn binpack_fills_the_fullest_host_that_fits() {
        let hosts = [
            candidate("a", 4096, 8000, 0),
            candidate("b", 4096, 600, 3),
            candidate("c", 4096, 100, 0),
        ];
        let binpack = [strategy("binpack", Some("memory"))];
        assert_eq!(choose(&hosts, 256, 512, &binpack, &[], 0), Ok(1));
    }

    #[test]
    fn spread_picks_the_host_with_fewest_tasks_of_the_group() {
        let hosts = [
            candidate("a", 4096, 8000, 2),
            candidate("b", 4096, 8000, 0),
            candidate("c", 4096, 8000, 1),
        ];
        let spread = [strategy("spread", Some("instanceId"))];
        assert_eq!(choose(&hosts, 256, 512, &spread, &[], 0), Ok(1));
        assert_eq!(choose(&hosts, 256, 512, &[], &[], 0), Ok(1));
    }

    #[test]
    fn random_draws_among_those_that_fit() {
        let hosts = [
            candidate("a", 4096, 8000, 0),
            candidate("b", 0, 8000, 0),
            candidate("c", 4096, 8000, 0),
        ];
        let random = [strategy("random", None)];
        let picks: std::collections::HashSet<usize> = (0..10)
            .map(|seed| choose(&hosts, 256, 512, &random, &[], seed).unwrap())
            .collect();
        assert_eq!(picks, [0, 2].into());
    }

    #[test]
    fn distinct_instance_and_resources_say_why_nothing_fits() {
        let distinct = [PlacementConstraint {
            kind: "distinctInstance".into(),
            expression: None,
        }];
        let hosts = [candidate("a", 4096, 8000, 1)];
        assert_eq!(
            choose(&hosts, 256, 512, &[], &distinct, 0)
                .unwrap_err()
                .reason,
            "CONSTRAINT:distinctInstance"
        );
        assert_eq!(
            choose(&hosts, 256, 9000, &[], &[], 0).unwrap_err(),
            NoFit {
                reason: "RESOURCE:MEMORY",
                closest: Some("a".into())
            }
        );
        assert_eq!(
            choose(&hosts, 9000, 512, &[], &[], 0).unwrap_err().reason,
            "RESOURCE:CPU"
        );
    }

    #[test]
    fn validation_names_the_bad_entry() {
        assert!(validate(&[strategy("binpack", Some("memory"))], &[]).is_ok());
        let bad = validate(&[strategy("binpack", Some("disk"))], &[]).unwrap_err();
        assert!(bad.starts_with("placementStrategy[0]"), "{bad}");
        let member_of = PlacementConstraint {
            kind: "memberOf".into(),
            expression: Some("attribute:x == y".into()),
        };
        assert!(
            validate(&[], &[member_of])
                .unwrap_err()
                .contains("not supported")
        );
    }
}
