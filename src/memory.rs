//! Giving the C allocator's free memory back to the system once a burst of work is over.
//!
//! glibc's malloc keeps what a burst freed (a ramp of a thousand tasks parses and copies
//! records by the thousand, over up to 8 arenas per core) for reuse, and returns it only from
//! the top of each heap; `benches/service-scale.sh` with 1,000 idle tasks found 45 MB in use
//! in 86-100 MB that malloc held. `malloc_trim` hands the free pages of every arena back.
//!
//! Architecture invariant: called only when the process has gone quiet (never on a request's
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
