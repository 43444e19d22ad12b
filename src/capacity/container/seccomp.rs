//! Docker's default seccomp profile, as data, turned into runc's `linux.seccomp` for one
//! container: the profile's rules kept or left out by their `includes`/`excludes` (the
//! capabilities the container has, this machine's architecture and kernel), its `archMap`
//! narrowed to this machine's architectures.
//!
//! `seccomp-default.json` is `profiles/seccomp/default.json` of Docker 20.10.24, as Debian
//! bookworm ships it in `golang-github-docker-docker-dev` (20.10.24+dfsg1-1+deb12u1), unchanged:
//! a call the profile does not allow fails with EPERM, `clone` may not make namespaces without
//! CAP_SYS_ADMIN, `clone3` is ENOSYS (so libc falls back to `clone`).
//!
//! Architecture invariant: the profile is data read as Docker reads it (moby's
//! `profiles/seccomp` `setupSeccomp`); nothing here adds or removes a system call by hand.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Value, json};

/// The profile, embedded at build time.
const PROFILE: &str = include_str!("seccomp-default.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Value>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What decides whether a rule applies: the container's capabilities (`CAP_…`), the machine.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub capabilities: &'a [String],
    /// Go's name of the architecture (`amd64`, `arm64`), as the profile's `arches` use.
    pub arch: &'static str,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Target<'_> {
    /// This machine, with `capabilities`.
    pub fn here(capabilities: &[String]) -> Target<'_> {
        Target {
            capabilities,
            arch: go_arch(),
            kernel: kernel_version(),
        }
    }
}

fn profile() -> Result<&'static Profile, String> {
    static PARSED: OnceLock<Result<Profile, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| {
            serde_json::from_str(PROFILE)
                .map_err(|e| format!("the built-in seccomp profile does not parse: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// runc's `linux.seccomp` for a container on `target`.
pub fn linux_seccomp(target: &Target<'_>) -> Result<Value, String> {
    let profile = profile()?;
    let native = scmp_arch(target.arch);
    let architectures: Vec<&str> = profile
        .arch_map
        .iter()
        .filter(|map| Some(map.architecture.as_str()) == native)
        .flat_map(|map| {
            std::iter::once(map.architecture.as_str())
                .chain(map.sub_architectures.iter().flatten().map(String::as_str))
        })
        .collect();
    let syscalls: Vec<Value> = profile
        .syscalls
        .iter()
        .filter(|rule| applies(rule, target))
        .map(|rule| {
            let mut out = json!({"names": rule.names, "action": rule.action});
            if let Some(errno) = rule.errno_ret {
                out["errnoRet"] = json!(errno);
            }
            if let Some(args) = rule.args.as_ref().filter(|a| !a.is_empty()) {
                out["args"] = json!(args);
            }
            out
        })
        .collect();
    let mut seccomp = json!({
        "defaultAction": profile.default_action,
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(errno) = profile.default_errno_ret {
        seccomp["defaultErrnoRet"] = json!(errno);
    }
    Ok(seccomp)
}

/// Docker's reading of a rule: every included capability present, the architecture among
/// the included ones, the kernel new enough; no excluded capability, not an excluded
/// architecture.
fn applies(rule: &Rule, target: &Target<'_>) -> bool {
    let has = |cap: &String| target.capabilities.contains(cap);
    let includes = &rule.includes;
    if !includes.caps.iter().all(has) {
        return false;
    }
    if !includes.arches.is_empty() && !includes.arches.iter().any(|a| a == target.arch) {
        return false;
    }
    if let Some(min) = includes.min_kernel.as_deref().and_then(parse_kernel)
        && target.kernel < min
    {
        return false;
    }
    let excludes = &rule.excludes;
    if excludes.caps.iter().any(has) {
        return false;
    }
    !excludes.arches.iter().any(|a| a == target.arch)
}

fn parse_kernel(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Go's GOARCH for this build's architecture.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// libseccomp's name of a Go architecture (the profile's `archMap` keys).
fn scmp_arch(go: &str) -> Option<&'static str> {
    Some(match go {
        "amd64" => "SCMP_ARCH_X86_64",
        "386" => "SCMP_ARCH_X86",
        "arm64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "s390x" => "SCMP_ARCH_S390X",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => return None,
    })
}

/// The running kernel's (major, minor), from its release string; (0, 0) if it cannot be read, which
/// only leaves out rules that need a newer kernel.
fn kernel_version() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|text| parse_kernel(text.trim()))
            .unwrap_or((0, 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_allowed(seccomp: &Value) -> Vec<String> {
        seccomp["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    fn target(caps: &[String]) -> Target<'_> {
        Target {
            capabilities: caps,
            arch: "amd64",
            kernel: (6, 1),
        }
    }

    #[test]
    fn the_profile_parses_and_denies_by_default_on_this_architecture() {
        let seccomp = linux_seccomp(&target(&[])).unwrap();
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            seccomp["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let allowed = names_allowed(&seccomp);
        for name in ["read", "execve", "arch_prctl", "ptrace"] {
            assert!(allowed.contains(&name.to_string()), "{name}");
        }
        // Namespaces, mounts and modules need capabilities a default container lacks.
        for name in [
            "mount",
            "unshare",
            "setns",
            "init_module",
            "bpf",
            "s390_runtime_instr",
        ] {
            assert!(!allowed.contains(&name.to_string()), "{name}");
        }
    }

    #[test]
    fn rules_follow_the_containers_capabilities() {
        let admin = vec!["CAP_SYS_ADMIN".to_string()];
        let with = linux_seccomp(&target(&admin)).unwrap();
        let allowed = names_allowed(&with);
        assert!(allowed.contains(&"mount".to_string()));
        assert!(allowed.contains(&"clone3".to_string()));
        // The masked clone (no namespace flags) is only for containers without SYS_ADMIN.
        let masked_clone = |s: &Value| {
            s["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["names"] == json!(["clone"]) && r.get("args").is_some())
        };
        assert!(!masked_clone(&with));
        assert!(masked_clone(&linux_seccomp(&target(&[])).unwrap()));
        let old = Target {
            kernel: (4, 4),
            ..target(&[])
        };
        assert!(!names_allowed(&linux_seccomp(&old).unwrap()).contains(&"ptrace".to_string()));
    }
}
