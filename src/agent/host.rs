//! What this host offers: CPU units (cores × 1024) and memory (MiB, less a reserve for the
//! agent and the system), as the agent registers them.

/// The resources a container instance registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostResources {
    pub cpu_units: u32,
    pub memory_mib: u32,
    /// The most tasks it can hold at once, when something other than CPU and memory bounds
    /// it (the Wasm instance pool's slots); `None`: no such bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks: Option<u32>,
}

impl HostResources {
    /// This machine's cores and memory, less `reserve_mib`.
    pub fn of_this_host(reserve_mib: u32) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let total_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(1024, |kib| kib / 1024);
        Self {
            cpu_units: u32::try_from(cores * 1024).unwrap_or(u32::MAX),
            memory_mib: u32::try_from(total_mib.saturating_sub(u64::from(reserve_mib)))
                .unwrap_or(u32::MAX),
            max_tasks: None,
        }
    }
}
