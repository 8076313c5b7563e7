//! The check that flock's modules import each other without cycles (the layering of DESIGN.md:
//! plain data at the bottom, the model layer, the concepts, the runtime, the registry, the
//! executors, the facade on top). A unit test over the source: `cargo test -p flock --lib
//! module_graph` runs it, CI runs it with every test.
//!
//! A *unit* is a top-level module (`flow`, `model`, `observe`, …), or one executor
//! (`executor::local`, `executor::temporal`): what a layer is. An edge is any path in a unit's
//! code that names an item of another unit: `use crate::x::..`, `crate::x::f(..)` in
//! expressions, `super::..` that leaves the unit, and names the crate root re-exports
//! (`crate::Error` is `error`'s). Edges inside a unit (a module and its children) are not
//! counted: a unit is one layer. The crate root and `__private` (the macros' re-exports) sit
//! above everything and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// `visit-mut` is the syn feature the workspace builds with already (`visit` would rebuild every
// proc macro of the workspace with another feature set); nothing is mutated.
use syn::visit_mut::VisitMut;

/// Where one unit names another: the first file, for the report.
type Edges = BTreeMap<(String, String), String>;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file (`src/executor/temporal/mod.rs` → `executor::temporal`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("a file under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The unit a module belongs to.
fn unit_of(module: &[String]) -> Option<String> {
    match module {
        [] => None,
        [first, second, ..] if first == "executor" => Some(format!("executor::{second}")),
        [first, ..] if first == "__private" => None,
        [first, ..] => Some(first.clone()),
    }
}

/// The names the crate root re-exports, with the module each comes from.
fn root_reexports(lib: &syn::File) -> BTreeMap<String, Vec<String>> {
    fn walk(
        tree: &syn::UseTree,
        prefix: &mut Vec<String>,
        out: &mut BTreeMap<String, Vec<String>>,
    ) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                walk(&path.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                out.insert(name.ident.to_string(), prefix.clone());
            }
            syn::UseTree::Rename(rename) => {
                out.insert(rename.rename.to_string(), prefix.clone());
            }
            syn::UseTree::Group(group) => group.items.iter().for_each(|t| walk(t, prefix, out)),
            syn::UseTree::Glob(_) => {}
        }
    }
    let mut out = BTreeMap::new();
    for item in &lib.items {
        if let syn::Item::Use(item) = item
            && matches!(item.vis, syn::Visibility::Public(_))
        {
            let mut prefix = Vec::new();
            walk(&item.tree, &mut prefix, &mut out);
        }
    }
    // only `crate::..` re-exports name a unit
    out.into_iter()
        .filter_map(|(name, path)| match path.split_first() {
            Some((first, rest)) if first == "crate" => Some((name, rest.to_vec())),
            _ => None,
        })
        .collect()
}

/// Collects the paths a file names, as absolute module paths (`crate` dropped).
struct Paths<'a> {
    module: &'a [String],
    found: Vec<Vec<String>>,
}

impl Paths<'_> {
    /// `segments` (from a path or a use tree) made absolute, when it starts at the crate.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "super" | "self" => {
                let mut base = self.module.to_vec();
                let mut rest = segments;
                while let Some((head, tail)) = rest.split_first() {
                    match head.as_str() {
                        "super" => {
                            base.pop()?;
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = tail;
                }
                base.extend(rest.iter().cloned());
                Some(base)
            }
            _ => None,
        }
    }

    fn note(&mut self, segments: Vec<String>) {
        if let Some(path) = self.absolute(&segments) {
            self.found.push(path);
        }
    }

    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(&path.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                let mut full = prefix.clone();
                full.push(name.ident.to_string());
                self.note(full);
            }
            syn::UseTree::Rename(rename) => {
                let mut full = prefix.clone();
                full.push(rename.ident.to_string());
                self.note(full);
            }
            syn::UseTree::Glob(_) => {
                self.note(prefix.clone());
            }
            syn::UseTree::Group(group) => {
                for item in &group.items {
                    self.use_tree(item, prefix);
                }
            }
        }
    }
}

impl VisitMut for Paths<'_> {
    fn visit_item_use_mut(&mut self, item: &mut syn::ItemUse) {
        self.use_tree(&item.tree, &mut Vec::new());
    }

    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.note(segments);
        syn::visit_mut::visit_path_mut(self, path);
    }
}

/// The unit-to-unit edges of the crate in `src`, each with where it was first seen.
fn edges(src: &Path) -> Edges {
    let mut files = Vec::new();
    source_files(src, &mut files);
    let parse = |file: &Path| {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    };
    let reexports = root_reexports(&parse(&src.join("lib.rs")));
    let mut edges = Edges::new();
    for file in &files {
        let module = module_of(src, file);
        let Some(from) = unit_of(&module) else {
            continue;
        };
        let mut paths = Paths {
            module: &module,
            found: Vec::new(),
        };
        paths.visit_file_mut(&mut parse(file));
        for path in paths.found {
            // a name the root re-exports stands for the module it comes from
            let path = match path.as_slice() {
                [name, rest @ ..] if reexports.contains_key(name) => {
                    let mut source = reexports[name].clone();
                    source.extend(rest.iter().cloned());
                    source
                }
                _ => path,
            };
            let Some(to) = unit_of(&path) else { continue };
            if to != from {
                let place = file
                    .strip_prefix(src.parent().unwrap_or(src))
                    .unwrap_or(file)
                    .display()
                    .to_string();
                edges.entry((from.clone(), to)).or_insert(place);
            }
        }
    }
    edges
}

/// The cycles of the graph: its strongly connected components of more than one unit (Tarjan).
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let next = |node: &String| -> Vec<&String> {
        edges
            .keys()
            .filter(|(a, _)| a == node)
            .map(|(_, b)| b)
            .collect()
    };
    struct State<'a> {
        index: BTreeMap<&'a String, usize>,
        low: BTreeMap<&'a String, usize>,
        stack: Vec<&'a String>,
        on_stack: BTreeSet<&'a String>,
        out: Vec<Vec<String>>,
    }
    fn connect<'a>(
        node: &'a String,
        next: &dyn Fn(&String) -> Vec<&'a String>,
        state: &mut State<'a>,
    ) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        for to in next(node) {
            if !state.index.contains_key(to) {
                connect(to, next, state);
                let low = state.low[node].min(state.low[to]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(to) {
                let low = state.low[node].min(state.index[to]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.clone());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.out.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for node in nodes {
        if !state.index.contains_key(node) {
            connect(node, &next, &mut state);
        }
    }
    state.out
}

#[test]
fn the_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    let cycles = cycles(&edges);
    let report: Vec<String> = cycles
        .iter()
        .map(|cycle| {
            let inside: Vec<String> = edges
                .iter()
                .filter(|((a, b), _)| cycle.contains(a) && cycle.contains(b))
                .map(|((a, b), place)| format!("  {a} -> {b} ({place})"))
                .collect();
            format!("{}:\n{}", cycle.join(", "), inside.join("\n"))
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "module cycles (each line: an import and its first place):\n{}",
        report.join("\n")
    );
}

#[test]
fn the_check_finds_a_cycle_and_resolves_relative_paths() {
    let edges: Edges = [
        (("a".into(), "b".into()), "a.rs:1".into()),
        (("b".into(), "c".into()), "b.rs:1".into()),
        (("c".into(), "a".into()), "c.rs:1".into()),
        (("c".into(), "d".into()), "c.rs:2".into()),
    ]
    .into();
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
    let module = vec![
        "executor".to_owned(),
        "temporal".to_owned(),
        "workflow".to_owned(),
    ];
    let paths = Paths {
        module: &module,
        found: Vec::new(),
    };
    let up = |text: &str| paths.absolute(&text.split("::").map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(
        up("super::super::local::LocalRun").and_then(|p| unit_of(&p)),
        Some("executor::local".to_owned())
    );
    assert_eq!(
        up("crate::flock::IdReuse").and_then(|p| unit_of(&p)),
        Some("flock".to_owned())
    );
    assert_eq!(up("serde::Serialize"), None);
}
