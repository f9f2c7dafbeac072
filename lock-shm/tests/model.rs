//! Random allocate / allocate_given / free / free_all sequences give the same results on both managers and on a
//! `BTreeSet` model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::TestSegment;
use proptest::prelude::*;
use rpod_lock::{InMemoryLockManager, LockError, LockManager, ShmLockManager};

const NUM_LOCKS: u32 = 64;

#[derive(Debug, Clone)]
enum Op {
    Allocate,
    AllocateGiven(u32),
    Free(u32),
    FreeAll,
}

fn op() -> impl Strategy<Value = Op> {
    // IDs up to 80 so that out-of-range IDs are exercised too.
    prop_oneof![
        6 => Just(Op::Allocate),
        3 => (0..80u32).prop_map(Op::AllocateGiven),
        4 => (0..80u32).prop_map(Op::Free),
        1 => Just(Op::FreeAll),
    ]
}

/// The expected result of `op` on the model, which it updates.
fn model_apply(model: &mut BTreeSet<u32>, op: &Op) -> Result<Option<u32>, LockError> {
    let in_range = |id: u32| {
        if id < NUM_LOCKS {
            Ok(())
        } else {
            Err(LockError::OutOfRange {
                id,
                total: NUM_LOCKS,
            })
        }
    };
    match *op {
        Op::Allocate => {
            let id = (0..NUM_LOCKS)
                .find(|id| !model.contains(id))
                .ok_or(LockError::Exhausted { total: NUM_LOCKS })?;
            model.insert(id);
            Ok(Some(id))
        }
        Op::AllocateGiven(id) => {
            in_range(id)?;
            if !model.insert(id) {
                return Err(LockError::AlreadyAllocated { id });
            }
            Ok(Some(id))
        }
        Op::Free(id) => {
            in_range(id)?;
            if !model.remove(&id) {
                return Err(LockError::NotAllocated { id });
            }
            Ok(None)
        }
        Op::FreeAll => {
            model.clear();
            Ok(None)
        }
    }
}

fn apply(m: &dyn LockManager, op: &Op) -> Result<Option<u32>, LockError> {
    match *op {
        Op::Allocate => m.allocate().map(|l| Some(l.id())),
        Op::AllocateGiven(id) => m.allocate_given(id).map(|l| Some(l.id())),
        Op::Free(id) => m.free(id).map(|()| None),
        Op::FreeAll => m.free_all().map(|()| None),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn managers_match_model(ops in proptest::collection::vec(op(), 1..300)) {
        let segment = TestSegment::new();
        let shm = ShmLockManager::create(&segment.name, NUM_LOCKS).unwrap();
        let memory = InMemoryLockManager::new(NUM_LOCKS).unwrap();
        let mut model = BTreeSet::new();
        for (step, op) in ops.iter().enumerate() {
            let expected = model_apply(&mut model, op);
            prop_assert_eq!(&apply(&shm, op), &expected, "shm, step {} {:?}", step, op);
            prop_assert_eq!(&apply(&memory, op), &expected, "memory, step {} {:?}", step, op);
        }
        let allocated = model.len() as u32;
        for m in [&shm as &dyn LockManager, &memory] {
            let counts = m.counts().unwrap();
            prop_assert_eq!(counts.allocated, allocated);
            prop_assert_eq!(counts.free, NUM_LOCKS - allocated);
        }
    }
}
