//! # rpod-lock: the lock managers of rpod
//!
//! Every container and pod owns one lock, identified by a `u32` ID. This crate owns the tables of those locks:
//!
//! * [`ShmLockManager`]: robust, process-shared pthread mutexes in a POSIX shared memory segment
//!   (`/dev/shm/rpod_lock`, see [`default_segment_name`]) that every rpod process of a user maps. A holder that dies
//!   is detected and its lock recovered with a warning; a holder that hangs is reported by [`Lock::lock_timeout`]
//!   with its PID. The segment layout is documented in the [`shm`] module.
//! * [`InMemoryLockManager`]: the same behaviour inside one process, for tests of the layers above.
//!
//! Both implement the object-safe [`LockManager`] trait and hand out [`Lock`] handles, whose [`LockGuard`]s
//! unlock on drop. An ID is allocated before the object that records it is written; the table's allocation
//! gate ([`LockManager::hold_allocations`], [`LockManager::try_sweep`]) lets the layer above reclaim the IDs a
//! killed creator leaves behind without racing live creators. All errors are [`LockError`] and say what to do (for example, run `rpod system renumber`).
//!
//! It does **not** know about containers, pods, the state database or the configuration: which ID belongs to
//! which object, when to renumber, and which segment name and lock count to use are decided by the `rpod` facade,
//! which wires this crate in (`Runtime::new` calls [`ShmLockManager::open_or_create`]).
//!
//! ```
//! use rpod_lock::{InMemoryLockManager, LockManager};
//!
//! # fn main() -> Result<(), rpod_lock::LockError> {
//! let manager = InMemoryLockManager::new(2048)?;
//! let lock = manager.allocate()?;
//! {
//!     let _guard = lock.lock()?;
//!     // ... critical section ...
//! }
//! lock.free()?;
//! # Ok(())
//! # }
//! ```
//!
//! All `unsafe` code lives in one private module (`sys`).
#![deny(unsafe_code)]

mod error;
mod gate;
mod manager;
mod memory;
mod naming;
pub mod shm;
mod sys;

pub use error::{LockError, SegmentOp};
pub use gate::{AllocationGuard, SweepGuard};
pub use manager::{HeldLock, Lock, LockCounts, LockGuard, LockManager};
pub use memory::InMemoryLockManager;
pub use naming::{
    default_segment_name, segment_path, validate_segment_name, DEFAULT_ROOTLESS_SEGMENT_PREFIX,
    DEFAULT_SEGMENT_NAME, MAX_SEGMENT_NAME_LEN,
};
pub use nix::errno::Errno;
pub use shm::{ShmLockManager, MAX_LOCKS};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_and_managers_are_send_and_sync() {
        send_sync::<Lock>();
        send_sync::<ShmLockManager>();
        send_sync::<InMemoryLockManager>();
        send_sync::<std::sync::Arc<dyn LockManager>>();
        send_sync::<LockError>();
    }
}
