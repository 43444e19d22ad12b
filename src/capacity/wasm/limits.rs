//! The memory limit of one guest: every linear memory and table growth passes here, is counted
//! against the container's cap, and is reported as the container's memory use.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use crate::capacity::StatsCell;

/// Bytes a table element is counted as (a pointer-sized reference).
const TABLE_ELEMENT_BYTES: u64 = 8;
/// Instances, memories and tables one guest may create; generous for components, finite for
/// hostile ones.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 64;
const MAX_TABLES: usize = 64;

/// A growth the limiter refused: the guest's memory would have passed its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub limit_bytes: u64,
    /// What the guest would have held had the growth been allowed.
    pub wanted_bytes: u64,
}

/// Counts the guest's memory and enforces its cap.
pub struct MemoryLimiter {
    limit_bytes: Option<u64>,
    held_bytes: u64,
    denial: Option<Denial>,
    stats: Arc<StatsCell>,
    /// Where growths are also added, when several instances share one container's figures
    /// (the requests of an HTTP worker).
    aggregate: Option<Arc<StatsCell>>,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: Option<u64>, stats: Arc<StatsCell>) -> Self {
        Self {
            limit_bytes,
            held_bytes: 0,
            denial: None,
            stats,
            aggregate: None,
        }
    }

    /// Also adds every growth to `aggregate` (see [`Self::release`]).
    pub fn with_aggregate(mut self, aggregate: Arc<StatsCell>) -> Self {
        self.aggregate = Some(aggregate);
        self
    }

    /// The bytes held now.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Gives this instance's memory back to the aggregate (the instance is gone).
    pub fn release(&mut self) {
        if let Some(aggregate) = &self.aggregate {
            aggregate.release_memory(self.held_bytes);
        }
        self.held_bytes = 0;
    }

    /// The first growth that was refused, if any.
    pub fn denial(&self) -> Option<Denial> {
        self.denial
    }

    fn grow(&mut self, current: u64, desired: u64) -> bool {
        let wanted = self
            .held_bytes
            .saturating_sub(current)
            .saturating_add(desired);
        if let Some(limit) = self.limit_bytes
            && wanted > limit
        {
            self.denial.get_or_insert(Denial {
                limit_bytes: limit,
                wanted_bytes: wanted,
            });
            return false;
        }
        if let Some(aggregate) = &self.aggregate {
            aggregate.add_memory(wanted.saturating_sub(self.held_bytes));
        }
        self.held_bytes = wanted;
        self.stats.set_memory(wanted);
        true
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current as u64, desired as u64))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // A growth past the engine's own ceiling is an out-of-memory stop as well.
        let limit = self.limit_bytes.unwrap_or(self.held_bytes);
        self.denial.get_or_insert(Denial {
            limit_bytes: limit,
            wanted_bytes: self.held_bytes,
        });
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        ))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_growth_past_the_cap_and_remembers_it() {
        let stats = Arc::new(StatsCell::default());
        let mut limiter = MemoryLimiter::new(Some(100), stats.clone());
        assert!(limiter.grow(0, 60));
        assert!(limiter.grow(60, 100));
        assert!(!limiter.grow(100, 160));
        assert_eq!(
            limiter.denial(),
            Some(Denial {
                limit_bytes: 100,
                wanted_bytes: 160
            })
        );
        assert_eq!(stats.snapshot().memory_bytes, 100);
        assert_eq!(stats.snapshot().memory_peak_bytes, 100);
    }
}
