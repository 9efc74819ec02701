//! The shape of `src/`: no files that import each other in a circle, and the
//! executors' boundaries (shards and federation meet only in `mesh/` and
//! `process.rs`; the mesh vocabulary imports none of its handlers). The imports are
//! read from the source text: `use` trees and inline paths from `crate::`, `super::`
//! or a child module's name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module of `src/`, by path, with its source text.
fn modules() -> BTreeMap<Module, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Module = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            found.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
    found
}

/// The text without line comments (a `//` not part of `://`).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let bytes = line.as_bytes();
            let cut = (1..bytes.len())
                .find(|&i| {
                    bytes[i - 1] == b'/' && bytes[i] == b'/' && (i < 2 || bytes[i - 2] != b':')
                })
                .map_or(line.len(), |i| i - 1);
            &line[..cut]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths of a `use` tree, braces expanded.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tree[start..]);
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        let split = |p: &str| -> Vec<String> {
            p.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match (item.find('{'), item.rfind('}')) {
            (Some(open), Some(close)) => {
                let mut inner = prefix.to_vec();
                inner.extend(split(&item[..open]));
                expand(&inner, &item[open + 1..close], out);
            }
            _ => {
                let mut path = prefix.to_vec();
                path.extend(split(item.split(" as ").next().unwrap()));
                out.push(path);
            }
        }
    }
}

/// Every path a module's text names: its `use` trees and its inline paths
/// (`crate::`, `super::`, or a child module's name, as in `copy::copy(..)`).
fn named_paths(text: &str) -> Vec<Vec<String>> {
    let text = strip_comments(text);
    let mut paths = Vec::new();
    // The character before a match is read from the whole text: the second
    // `super::` of `super::super::x` starts no path of its own.
    for (at, _) in text.match_indices("use ") {
        let before = text[..at].chars().next_back();
        let after = &text[at + 4..];
        if before.is_none_or(|c| !is_ident(c))
            && let Some(end) = after.find(';')
        {
            expand(&[], &after[..end], &mut paths);
        }
    }
    // An inline path starts where an identifier does, unless it continues a path;
    // `imports` keeps those that name a module of the crate.
    let mut before = None;
    for (at, c) in text.char_indices() {
        let starts = is_ident(c) && before.is_none_or(|b: char| !is_ident(b) && b != ':');
        before = Some(c);
        if !starts {
            continue;
        }
        let tail = &text[at..];
        let end = tail
            .find(|c: char| !is_ident(c) && c != ':')
            .unwrap_or(tail.len());
        if tail[..end].contains("::") {
            paths.push(
                tail[..end]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
    }
    paths
}

/// The modules each module imports (itself and its own children left out).
fn imports() -> BTreeMap<Module, BTreeSet<Module>> {
    let modules = modules();
    let resolve = |path: &[String]| -> Option<Module> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains_key(m))
    };
    let mut edges = BTreeMap::new();
    for (module, text) in &modules {
        let mut targets = BTreeSet::new();
        for path in named_paths(text) {
            let Some(first) = path.first() else { continue };
            let absolute = match first.as_str() {
                "crate" => path[1..].to_vec(),
                "super" | "self" => {
                    let mut base = module.clone();
                    let mut rest = &path[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    if rest.first().is_some_and(|s| s == "self") {
                        rest = &rest[1..];
                    }
                    base.extend_from_slice(rest);
                    base
                }
                _ => {
                    // A child module named relative to its parent.
                    let mut child = module.clone();
                    child.push(first.clone());
                    if !modules.contains_key(&child) {
                        continue;
                    }
                    let mut full = module.clone();
                    full.extend_from_slice(&path);
                    full
                }
            };
            if let Some(target) = resolve(&absolute)
                && target != *module
            {
                targets.insert(target);
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// Groups of more than one module that import each other in a circle (Tarjan).
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.edges[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    group.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn name(module: &Module) -> String {
    module.join("/")
}

#[test]
fn no_two_files_of_src_import_each_other_in_a_circle() {
    let edges = imports();
    let found: Vec<Vec<String>> = circles(&edges)
        .iter()
        .map(|group| group.iter().map(name).collect())
        .collect();
    assert!(found.is_empty(), "import circles: {found:?}");
}

#[test]
fn shards_and_federation_meet_only_in_the_mesh_and_the_process_types() {
    let edges = imports();
    let under = |module: &Module, top: &str| module.first().is_some_and(|m| m == top);
    for (module, targets) in &edges {
        for target in targets {
            let crossing = (under(module, "shard") && under(target, "federation"))
                || (under(module, "federation") && under(target, "shard"))
                || ((under(module, "mesh") || under(module, "process"))
                    && (under(target, "shard") || under(target, "federation")));
            assert!(!crossing, "{} imports {}", name(module), name(target));
        }
    }
}

#[test]
fn the_reader_sees_circles_and_crossings() {
    // The checks above must be able to fail: a planted circle is found, and the
    // reader sees every kind of path the tree uses.
    let planted: BTreeMap<Module, BTreeSet<Module>> = [
        (vec!["a".into()], BTreeSet::from([vec!["b".into()]])),
        (vec!["b".into()], BTreeSet::from([vec!["a".into()]])),
        (vec!["c".into()], BTreeSet::from([vec!["a".into()]])),
    ]
    .into_iter()
    .collect();
    assert_eq!(circles(&planted).len(), 1);
    let paths = named_paths(
        "use super::{Shard, x::{y, z as w}};\nlet _ = crate::mesh::Post; // crate::gone\nuse child::Item;\nlet _ = child::call(&other::Thing);",
    );
    let text: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    for expected in [
        "super::Shard",
        "super::x::y",
        "super::x::z",
        "crate::mesh::Post",
        "child::Item",
        "child::call",
        "other::Thing",
    ] {
        assert!(
            text.contains(&expected.to_owned()),
            "{expected} in {text:?}"
        );
    }
    assert!(
        !text.iter().any(|p| p.contains("gone")),
        "comments are not read"
    );
    // A path that climbs two levels names the grandparent's child, not the
    // parent's: reading `super::x` out of it made every child of
    // `federation/link/` import its parent.
    let climbing: Vec<String> = named_paths("let _ = super::super::x::Y;")
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(climbing, ["super::super::x::Y"]);
    let edges = imports();
    let shard_imports = &edges[&vec!["shard".to_owned(), "dispatch".to_owned()]];
    assert!(shard_imports.contains(&vec!["shard".to_owned(), "owner".to_owned()]));
    assert!(
        shard_imports.contains(&vec!["mesh".to_owned(), "messages".to_owned()])
            || shard_imports.contains(&vec!["mesh".to_owned()])
    );
}
