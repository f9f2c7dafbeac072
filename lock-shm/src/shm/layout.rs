//! [`Layout`]: the sizes and offsets of a segment with a given number of locks (see the table in the
//! [`shm`](super) module documentation).

use crate::sys::{HEADER_SIZE, SLOT_SIZE};
use crate::LockError;

use super::MAX_LOCKS;

/// Sizes and offsets of a segment with a given number of locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    /// Lock slots, a multiple of 32.
    pub(super) num_locks: u32,
    /// 32-bit allocation bitmaps: `num_locks / 32`.
    pub(super) num_bitmaps: u32,
    /// Offset of the first bitmap (right after the header).
    pub(super) bitmaps_offset: usize,
    /// Offset of the first lock slot (after the bitmaps, rounded up to 64).
    pub(super) slots_offset: usize,
    /// Size of the whole segment in bytes.
    pub(super) size: usize,
}

impl Layout {
    /// The layout for `requested` locks, rounded up to a multiple of 32.
    pub(super) fn for_requested(requested: u32) -> Result<Self, LockError> {
        if requested == 0 || requested > MAX_LOCKS {
            return Err(LockError::InvalidCount {
                requested,
                max: MAX_LOCKS,
            });
        }
        Ok(Self::for_exact(requested.div_ceil(32) * 32))
    }

    /// The layout for `num_locks` (already a multiple of 32 and at most [`MAX_LOCKS`]).
    fn for_exact(num_locks: u32) -> Self {
        let num_bitmaps = num_locks / 32;
        let bitmaps_offset = HEADER_SIZE;
        let bitmap_bytes = (num_bitmaps as usize * 4).div_ceil(64) * 64;
        let slots_offset = bitmaps_offset + bitmap_bytes;
        Self {
            num_locks,
            num_bitmaps,
            bitmaps_offset,
            slots_offset,
            size: slots_offset + num_locks as usize * SLOT_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sizes() {
        let l = Layout::for_requested(2048).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.num_locks, 2048);
        assert_eq!(l.num_bitmaps, 64);
        assert_eq!(l.slots_offset, 128 + 256);
        assert_eq!(l.size, 131_456);
        let l = Layout::for_requested(1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (l.num_locks, l.slots_offset, l.size),
            (32, 192, 192 + 32 * 64)
        );
        assert_eq!(Layout::for_requested(33).map(|l| l.num_locks), Ok(64));
        assert!(matches!(
            Layout::for_requested(0),
            Err(LockError::InvalidCount { .. })
        ));
        assert!(matches!(
            Layout::for_requested(MAX_LOCKS + 1),
            Err(LockError::InvalidCount { .. })
        ));
    }
}
