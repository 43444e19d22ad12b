//! Giving the C allocator's free memory back to the system once a burst of work is over.
//!
//! glibc's malloc keeps what a burst freed (a ramp of a thousand tasks parses and copies
//! records by the thousand, over up to 8 arenas per core) for reuse, and returns it only from
//! the top of each heap; `benches/service-scale.sh` with 1,000 idle tasks found 45 MB in use
//! in 86-100 MB that malloc held. `malloc_trim` hands the free pages of every arena back.
//!
//! The arenas themselves are capped at one per core ([`limit_arenas`]): each arena a thread
//! touched keeps partly used pages of its own, and with 1,000 idle tasks whose allocations
//! were made across the runtime's workers, the guest threads and the blocking pool, fewer
//! arenas means fewer of them (`benches/service-scale.sh`: 78 → 74 KiB per idle task).
//!
//! Architecture invariant: `return_free_memory` is called only when the process has gone quiet (never on a request's
//! path): it locks each arena while it walks it.

/// Returns the allocator's free pages to the system (glibc; elsewhere nothing to do).
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's own free chunks; it takes
    // every arena's lock as it goes, so it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at one per core (its default is eight per core), unless
/// `MALLOC_ARENA_MAX` says otherwise. Called once, before the runtime's threads start.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX bounds arenas made
        // from now on, and no thread but this one exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
