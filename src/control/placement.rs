//! Task placement as a pure function: which container instance gets a task, given what each
//! has left, the task's needs, and the service's placement strategies and constraints.
//!
//! Constraints filter (`distinctInstance`: no other task of the same group on the instance);
//! strategies order what is left, the first strategy first, later ones breaking ties:
//! `binpack` (field `memory` or `cpu`: the least of it left, so hosts fill up one by one),
//! `spread` (field `instanceId`: the fewest tasks of the group), `random`. Without a strategy,
//! tasks spread by instance.

use crate::records::service::{PlacementConstraint, PlacementStrategy};

/// One container instance as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The host's id.
    pub id: String,
    pub arn: String,
    pub free_cpu: u64,
    pub free_memory: u64,
    /// How many more tasks it can hold (`u64::MAX` when only CPU and memory bound it).
    pub free_tasks: u64,
    /// Tasks of the group being placed (the service's, or RunTask's `group`) already on it.
    pub group_tasks: u32,
    /// Its attributes (name, value; empty when it has none), as memberOf and spread see them.
    pub attributes: Vec<(String, String)>,
}

impl Candidate {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A cluster query language expression (memberOf constraints, ListContainerInstances
/// filters): clauses `SUBJECT == V`, `!= V`, `in [V, ...]`, `not_in [V, ...]`, `exists`,
/// joined by `and` / `or` (`and` binds first); the subject is `attribute:NAME` or
/// `ec2InstanceId`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    /// Alternatives of conjunctions.
    any_of: Vec<Vec<Clause>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Clause {
    /// `None`: the instance id.
    attribute: Option<String>,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
}

impl Expression {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut any_of = Vec::new();
        for alternative in split_words(text, "or") {
            let mut all_of = Vec::new();
            for clause in split_words(&alternative, "and") {
                all_of.push(Clause::parse(clause.trim())?);
            }
            any_of.push(all_of);
        }
        Ok(Self { any_of })
    }

    /// Whether a host with id `id` and `attributes` satisfies it.
    pub fn matches(&self, id: &str, attributes: &[(String, String)]) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|clause| {
                let value = match &clause.attribute {
                    None => Some(id),
                    Some(name) => attributes
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.as_str()),
                };
                match (&clause.test, value) {
                    (Test::Exists, found) => found.is_some(),
                    (Test::Equals(want), Some(v)) => v == want,
                    (Test::NotEquals(want), found) => found != Some(want.as_str()),
                    (Test::In(list), Some(v)) => list.iter().any(|w| w == v),
                    (Test::NotIn(list), found) => {
                        found.is_none_or(|v| !list.iter().any(|w| w == v))
                    }
                    (_, None) => false,
                }
            })
        })
    }
}

/// `text` split at the whole word `word` (case-insensitive).
fn split_words(text: &str, word: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    for token in text.split_whitespace() {
        if token.eq_ignore_ascii_case(word) {
            parts.push(String::new());
        } else {
            let last = parts.last_mut().expect("never empty");
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(token);
        }
    }
    parts
}

impl Clause {
    fn parse(text: &str) -> Result<Self, String> {
        let (subject, rest) = text
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("\"{text}\": expected SUBJECT OPERATOR [VALUE]"))?;
        let attribute = match subject {
            "ec2InstanceId" => None,
            other => match other.strip_prefix("attribute:") {
                Some(name) if !name.is_empty() => Some(name.to_string()),
                _ => {
                    return Err(format!(
                        "\"{subject}\": the subject must be attribute:NAME or ec2InstanceId"
                    ));
                }
            },
        };
        let rest = rest.trim();
        let list = |values: &str| -> Result<Vec<String>, String> {
            let inner = values
                .trim()
                .strip_prefix(['[', '('])
                .and_then(|v| v.strip_suffix([']', ')']))
                .ok_or_else(|| format!("\"{values}\": expected a list [A, B]"))?;
            Ok(inner
                .split(',')
                .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
                .filter(|v| !v.is_empty())
                .collect())
        };
        let value = |v: &str| v.trim().trim_matches(['"', '\'']).to_string();
        let test = if rest == "exists" {
            Test::Exists
        } else if let Some(v) = rest.strip_prefix("==") {
            Test::Equals(value(v))
        } else if let Some(v) = rest.strip_prefix("!=") {
            Test::NotEquals(value(v))
        } else if let Some(v) = rest.strip_prefix("not_in") {
            Test::NotIn(list(v)?)
        } else if let Some(v) = rest.strip_prefix("in") {
            Test::In(list(v)?)
        } else {
            return Err(format!(
                "\"{text}\": the operator must be ==, !=, in, not_in or exists"
            ));
        };
        Ok(Self { attribute, test })
    }
}

/// Why a task fits nowhere, as ECS words placement failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFit {
    /// `RESOURCE:MEMORY`, `RESOURCE:CPU`, `RESOURCE:TASKS` (the host holds all the tasks it
    /// can), `CONSTRAINT:memberOf` or `CONSTRAINT:distinctInstance`.
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
        ) || (strategy.kind == "spread"
            && strategy
                .field
                .as_deref()
                .is_some_and(|f| f.len() > "attribute:".len() && f.starts_with("attribute:")));
        if !ok {
            return Err(format!(
                "placementStrategy[{i}]: expected binpack (field memory or cpu), spread (field \
                 instanceId or attribute:NAME) or random (no field); got type {:?} field {:?}",
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
            "memberOf" => match constraint.expression.as_deref() {
                Some(text) => {
                    Expression::parse(text)
                        .map_err(|why| format!("placementConstraints[{i}].expression: {why}"))?;
                }
                None => {
                    return Err(format!(
                        "placementConstraints[{i}]: memberOf needs an expression"
                    ));
                }
            },
            other => {
                return Err(format!(
                    "placementConstraints[{i}]: type {other:?} is not supported (wasmgate \
                     supports distinctInstance and memberOf)"
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
    let member_of: Vec<Expression> = constraints
        .iter()
        .filter(|c| c.kind == "memberOf")
        .filter_map(|c| c.expression.as_deref())
        .filter_map(|text| Expression::parse(text).ok())
        .collect();
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
        } else if candidate.free_tasks == 0 {
            failure = NoFit {
                reason: "RESOURCE:TASKS",
                closest: Some(candidate.arn.clone()),
            };
        } else if !member_of
            .iter()
            .all(|e| e.matches(&candidate.id, &candidate.attributes))
        {
            failure = NoFit {
                reason: "CONSTRAINT:memberOf",
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
            ("spread", field) if field.starts_with("attribute:") => {
                // The value with the fewest tasks of the group first (a host without the
                // attribute counts as its own value).
                let name = &strategy.field.as_deref().unwrap_or_default()["attribute:".len()..];
                let per_value = |value: Option<&str>| -> u32 {
                    candidates
                        .iter()
                        .filter(|c| c.attribute(name) == value)
                        .map(|c| c.group_tasks)
                        .sum()
                };
                fitting.sort_by_key(|&i| {
                    (
                        per_value(candidates[i].attribute(name)),
                        candidates[i].group_tasks,
                    )
                });
            }
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
            id: name.into(),
            arn: name.into(),
            free_cpu: cpu,
            free_memory: memory,
            free_tasks: u64::MAX,
            group_tasks,
            attributes: vec![("zone".into(), format!("z-{}", name.len() % 2))],
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
            expression: Some("attribute:x ~= y".into()),
        };
        assert!(
            validate(&[], &[member_of])
                .unwrap_err()
                .starts_with("placementConstraints[0].expression")
        );
    }

    #[test]
    fn member_of_keeps_hosts_whose_attributes_match() {
        let mut hosts = vec![
            candidate("a", 4096, 8000, 0),
            candidate("b", 4096, 8000, 0),
            candidate("c", 4096, 8000, 0),
        ];
        hosts[1].attributes.push(("tier".into(), "gpu".into()));
        hosts[2].attributes.push(("tier".into(), "cpu".into()));
        let only = |expression: &str| {
            let constraint = [PlacementConstraint {
                kind: "memberOf".into(),
                expression: Some(expression.into()),
            }];
            (0..3)
                .filter(|&skip| {
                    let mut left = hosts.clone();
                    left.remove(skip);
                    choose(&left, 1, 1, &[], &constraint, 0).is_err()
                })
                .collect::<Vec<usize>>()
        };
        // Removing the one host that matches leaves nothing that fits.
        assert_eq!(only("attribute:tier == gpu"), vec![1]);
        assert_eq!(
            only("attribute:tier in [gpu, cpu] and attribute:tier != cpu"),
            vec![1]
        );
        assert_eq!(
            only("ec2InstanceId == a or attribute:tier == cpu"),
            Vec::<usize>::new()
        );
        let nothing = [PlacementConstraint {
            kind: "memberOf".into(),
            expression: Some("attribute:tier == tpu".into()),
        }];
        assert_eq!(
            choose(&hosts, 1, 1, &[], &nothing, 0).unwrap_err().reason,
            "CONSTRAINT:memberOf"
        );
        let e = Expression::parse("attribute:tier exists").unwrap();
        assert!(!e.matches("a", &hosts[0].attributes) && e.matches("b", &hosts[1].attributes));
    }

    #[test]
    fn a_host_that_holds_all_the_tasks_it_can_gets_no_more() {
        let mut hosts = [candidate("a", 4096, 8000, 0), candidate("b", 4096, 8000, 0)];
        hosts[0].free_tasks = 0;
        assert_eq!(choose(&hosts, 1, 1, &[], &[], 0), Ok(1));
        hosts[1].free_tasks = 0;
        assert_eq!(
            choose(&hosts, 1, 1, &[], &[], 0).unwrap_err().reason,
            "RESOURCE:TASKS"
        );
    }

    #[test]
    fn spread_by_attribute_balances_the_values() {
        // a and c share zone z-1; b is alone in z-0... all names have length 1 → z-1.
        let mut hosts = vec![
            candidate("a", 4096, 8000, 1),
            candidate("b", 4096, 8000, 0),
            candidate("c", 4096, 8000, 0),
        ];
        hosts[0].attributes = vec![("zone".into(), "east".into())];
        hosts[1].attributes = vec![("zone".into(), "east".into())];
        hosts[2].attributes = vec![("zone".into(), "west".into())];
        let spread = [strategy("spread", Some("attribute:zone"))];
        // east already holds one task of the group, so west's host goes first.
        assert_eq!(choose(&hosts, 1, 1, &spread, &[], 0), Ok(2));
    }
}
