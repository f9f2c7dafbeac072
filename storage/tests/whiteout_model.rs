//! Property: random stacks of layers (create file, make dir, delete, make opaque) unpacked in Delete mode give
//! the same tree as a simple in-memory model of the union filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use common::Layer;
use proptest::prelude::*;
use rpod_storage::{unpack_layer, WhiteoutMode};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(u8),
}

#[derive(Debug, Clone)]
enum Op {
    File(Vec<&'static str>, u8),
    Mkdir(Vec<&'static str>),
    Delete(Vec<&'static str>),
    Opaque(Vec<&'static str>),
}

fn path_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..=3)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (path_strategy(), any::<u8>()).prop_map(|(p, c)| Op::File(p, c)),
        path_strategy().prop_map(Op::Mkdir),
        path_strategy().prop_map(Op::Delete),
        path_strategy().prop_map(Op::Opaque),
    ]
}

/// The union filesystem: path → node; a path's ancestors are always directories.
#[derive(Default)]
struct Model {
    tree: BTreeMap<String, Node>,
    /// Paths this layer wrote (with ancestors), which an opaque marker keeps.
    written: BTreeSet<String>,
}

impl Model {
    fn remove_subtree(&mut self, p: &str) {
        let prefix = format!("{p}/");
        self.tree.retain(|k, _| k != p && !k.starts_with(&prefix));
    }

    /// Emits directory entries for every ancestor and applies them.
    fn ancestors(&mut self, l: &mut Layer, parts: &[&str]) {
        for i in 1..parts.len() {
            self.mkdir(l, &parts[..i]);
        }
    }

    fn mkdir(&mut self, l: &mut Layer, parts: &[&str]) {
        let p = parts.join("/");
        l.dir(&format!("{p}/"));
        if self.tree.get(&p) != Some(&Node::Dir) {
            self.remove_subtree(&p);
            self.tree.insert(p.clone(), Node::Dir);
        }
        self.written.insert(p);
    }

    fn apply(&mut self, l: &mut Layer, op: &Op) {
        match op {
            Op::File(parts, c) => {
                self.ancestors(l, parts);
                let p = parts.join("/");
                l.file(&p, &[*c]);
                self.remove_subtree(&p);
                self.tree.insert(p.clone(), Node::File(*c));
                self.written.insert(p);
            }
            Op::Mkdir(parts) => {
                self.ancestors(l, parts);
                self.mkdir(l, parts);
            }
            Op::Delete(parts) => {
                let (name, dir) = parts.split_last().unwrap();
                l.whiteout(&dir.join("/"), name);
                self.remove_subtree(&parts.join("/"));
            }
            Op::Opaque(parts) => {
                self.ancestors(l, parts);
                self.mkdir(l, parts);
                let p = parts.join("/");
                l.opaque(&p);
                let prefix = format!("{p}/");
                let children: Vec<String> = self
                    .tree
                    .keys()
                    .filter(|k| {
                        k.strip_prefix(&prefix)
                            .is_some_and(|rest| !rest.contains('/'))
                    })
                    .cloned()
                    .collect();
                for c in children {
                    if !self.written.contains(&c) {
                        self.remove_subtree(&c);
                    }
                }
            }
        }
    }
}

fn scan(root: &Path, rel: &str, out: &mut BTreeMap<String, Node>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let p = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.insert(p.clone(), Node::Dir);
            scan(root, &p, out);
        } else {
            let data = fs::read(e.path()).unwrap();
            out.insert(p, Node::File(data[0]));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn delete_mode_matches_union_model(layers in prop::collection::vec(prop::collection::vec(op_strategy(), 1..8), 1..5)) {
        let dest = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        for ops in &layers {
            model.written.clear();
            let mut l = Layer::new();
            for op in ops {
                model.apply(&mut l, op);
            }
            unpack_layer(&l.finish()[..], dest.path(), WhiteoutMode::Delete).unwrap();
        }
        let mut got = BTreeMap::new();
        scan(dest.path(), "", &mut got);
        prop_assert_eq!(got, model.tree);
    }
}
