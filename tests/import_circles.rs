//! No import circles: within each crate (the library, and each binary with modules of its own),
//! no two modules use each other, directly or through others. A circle means neither module
//! can be read, tested or moved without the other; the layers in `src/http/mod.rs` and the
//! one-way flow README.md's "Reading the code" describes depend on there being none.
//!
//! The check reads the sources: every path a module names outside its tests (`use` trees,
//! `crate::…`, `super::…`, `self::…`, and paths that start with one of its child modules),
//! resolved to the file that defines the module. The crate root (`lib.rs`, `main.rs`) is left
//! out: it declares every module and starts them. Any circle fails the test, with the paths
//! that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module, as its path from the crate root (`["upstream", "replicas"]`; `[]` is the root).
type Module = Vec<String>;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines, from its path below the crate's root directory.
fn module_of(root: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(root).expect("a file under the root");
    let mut parts: Module = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The source without its tests and comments.
fn code_of(source: &str) -> String {
    let source = source.split("#[cfg(test)]").next().unwrap_or(source);
    source
        .lines()
        .map(|line| {
            let code = match line.find("//") {
                Some(at) => &line[..at],
                None => line,
            };
            format!("{code}\n")
        })
        .collect()
}

/// The paths one `use` tree names: `a::{b, c::{d, self}}` is `a::b`, `a::c::d` and `a::c`.
fn expand_tree(tree: &str) -> Vec<Vec<String>> {
    // `Name as Other` names `Name`: drop every `as` and the word after it, then the spaces.
    let mut words = tree.split_whitespace();
    let mut tree = String::new();
    while let Some(word) = words.next() {
        if word == "as" {
            let renamed = words.next().unwrap_or_default();
            tree.extend(renamed.chars().filter(|c| matches!(c, ',' | '}')));
        } else {
            tree.push_str(word);
        }
    }
    let Some(open) = tree.find('{') else {
        return vec![tree.split("::").map(str::to_owned).collect()];
    };
    let prefix: Vec<String> = tree[..open]
        .trim_end_matches(':')
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let mut paths = Vec::new();
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        for sub in expand_tree(part) {
            let mut path = prefix.clone();
            if sub != ["self"] {
                path.extend(sub);
            }
            paths.push(path);
        }
    }
    paths
}

/// Every path `code` names: its `use` trees, and the `a::b` paths in its expressions.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    for (at, _) in code.match_indices("use ") {
        if at > 0 && is_ident(bytes[at - 1]) {
            continue;
        }
        let rest = &code[at + 4..];
        if let Some(end) = rest.find(';') {
            paths.extend(expand_tree(&rest[..end]));
        }
    }
    let mut at = 0;
    while at < bytes.len() {
        let starts_word = is_ident(bytes[at]) && (at == 0 || !is_ident(bytes[at - 1]));
        let after_colons = at >= 2 && &bytes[at - 2..at] == b"::";
        if !starts_word || after_colons {
            at += 1;
            continue;
        }
        let mut end = at;
        let mut path = Vec::new();
        loop {
            let word_end = (end..bytes.len())
                .find(|&i| !is_ident(bytes[i]))
                .unwrap_or(bytes.len());
            path.push(code[end..word_end].to_owned());
            if code[word_end..].starts_with("::")
                && bytes.get(word_end + 2).is_some_and(|&b| is_ident(b))
            {
                end = word_end + 2;
            } else {
                end = word_end;
                break;
            }
        }
        if path.len() > 1 {
            paths.push(path);
        }
        at = end.max(at + 1);
    }
    paths
}

/// The module file a path from `here` leads to: the longest prefix that is a module of the
/// crate. `None` for a path into another crate, or into `here` itself.
fn resolve(path: &[String], here: &Module, modules: &BTreeSet<Module>) -> Option<Module> {
    let first = path.first()?;
    let (mut current, rest): (Module, &[String]) = match first.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (here.clone(), &path[1..]),
        "super" => {
            let mut current = here.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                current.pop();
                rest = &rest[1..];
            }
            (current, rest)
        }
        child => {
            let mut candidate = here.clone();
            candidate.push(child.to_owned());
            if !modules.contains(&candidate) {
                return None;
            }
            (here.clone(), path)
        }
    };
    let mut found = modules.contains(&current).then(|| current.clone());
    for segment in rest {
        current.push(segment.clone());
        if modules.contains(&current) {
            found = Some(current.clone());
        } else {
            break;
        }
    }
    found.filter(|m| m != here && !m.is_empty())
}

/// The modules each module of the crate under `root` uses (`skip`: a directory to leave out).
fn graph(root: &Path, skip: Option<&Path>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.retain(|f| skip.is_none_or(|s| !f.starts_with(s)));
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(root, f)).collect();
    files
        .iter()
        .map(|file| {
            let here = module_of(root, file);
            let code = code_of(&fs::read_to_string(file).expect("read a source file"));
            let uses = paths_in(&code)
                .iter()
                .filter_map(|path| resolve(path, &here, &modules))
                .collect();
            (here, uses)
        })
        .collect()
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
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
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

/// Every crate with modules: the library, and each binary that is a directory.
fn crates() -> Vec<(String, BTreeMap<Module, BTreeSet<Module>>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bin = src.join("bin");
    let mut all = vec![("lib".to_owned(), graph(&src, Some(&bin)))];
    let mut dirs: Vec<PathBuf> = fs::read_dir(&bin)
        .expect("src/bin")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        all.push((format!("bin {name}"), graph(&dir, None)));
    }
    all
}

#[test]
fn no_two_modules_use_each_other() {
    let mut unknown = Vec::new();
    for (name, graph) in crates() {
        assert!(graph.len() > 1, "{name}: no modules found");
        for circle in circles(&graph) {
            let names: Vec<String> = circle
                .iter()
                .map(|m| format!("{name}: {}", m.join("::")))
                .collect();
            let edges: Vec<String> = circle
                .iter()
                .map(|m| {
                    let to: Vec<String> = graph[m]
                        .iter()
                        .filter(|t| circle.contains(t))
                        .map(|t| t.join("::"))
                        .collect();
                    format!("  {} uses {}", m.join("::"), to.join(", "))
                })
                .collect();
            unknown.push(format!("{}\n{}", names.join(" ↔ "), edges.join("\n")));
        }
    }
    assert!(
        unknown.is_empty(),
        "import circles:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_check_sees_a_circle_and_its_kinds_of_path() {
    let modules: BTreeSet<Module> = [
        vec![],
        vec!["a".to_owned()],
        vec!["a".to_owned(), "b".to_owned()],
        vec!["c".to_owned()],
    ]
    .into_iter()
    .collect();
    let a = vec!["a".to_owned()];
    let ab = vec!["a".to_owned(), "b".to_owned()];
    let c = vec!["c".to_owned()];
    let uses = |code: &str, here: &Module| -> BTreeSet<Module> {
        paths_in(&code_of(code))
            .iter()
            .filter_map(|p| resolve(p, here, &modules))
            .collect()
    };
    // A child by a bare path, a sibling through `crate::`, a parent through `super::`, the
    // items of a `use` tree, and nothing from a comment, a test or another crate.
    assert_eq!(uses("use b::Thing;", &a), [ab.clone()].into());
    assert_eq!(uses("let x = crate::c::f();", &a), [c.clone()].into());
    assert_eq!(uses("use super::{helper, Type};", &ab), [a.clone()].into());
    assert_eq!(
        uses("use crate::{a::b::{self, X}, c};", &c),
        [ab.clone()].into()
    );
    assert_eq!(
        uses("// crate::c::f()\n#[cfg(test)]\nuse crate::c;", &a),
        BTreeSet::new()
    );
    assert_eq!(
        uses("use std::fmt; use serde_json::json;", &a),
        BTreeSet::new()
    );
    assert_eq!(
        uses("use std::fmt::Write as _;\nuse crate::c::{f as g, h};", &a),
        [c.clone()].into()
    );
    let graph: BTreeMap<Module, BTreeSet<Module>> = [
        (a.clone(), [c.clone()].into()),
        (c.clone(), [ab.clone()].into()),
        (ab.clone(), [a.clone()].into()),
        (vec![], [a.clone()].into()),
    ]
    .into_iter()
    .collect();
    assert_eq!(circles(&graph), vec![vec![a, ab, c]]);
}
