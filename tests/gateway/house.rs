//! The shape of `src/`: no two files import each other, directly or round a circle.
//!
//! Each file of `src/` is a node; `crate::a::b` (and `super::`, `self::`, and a child module
//! named in a `use`) is an arrow to the file that defines the longest prefix of the path.
//! Comments and `#[cfg(test)]` code are not read; a file naming a module it is inside of
//! (`super::Error`) is not an arrow (a folder's module re-exports its files). A circle means data can flow back up: the
//! lower file must not name the upper file's types (see README, "Architecture").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as a module path (`["mcp", "sse"]`; `mod.rs` and `lib.rs`
/// name their folder) → its file.
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).expect("src/ is readable");
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).expect("under src/");
            let mut segments: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                segments.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                segments.pop();
            }
            if rel == Path::new("main.rs") {
                segments = vec!["<main>".to_owned()];
            }
            out.insert(segments, path);
        }
    }
    out
}

/// The code of a file without comments, string contents or `#[cfg(test)]` items.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        // String literals name paths in messages, not imports.
        let mut in_string = false;
        let mut escaped = false;
        for ch in line.chars() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '"' {
                    in_string = false;
                }
                continue;
            }
            if ch == '"' {
                in_string = true;
                continue;
            }
            out.push(ch);
        }
        out.push('\n');
    }
    out
}

/// Paths of the form `a::b::c` in `code` (identifiers joined by `::`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            segments.push(bytes[start..j].iter().collect::<String>());
            if j + 2 < bytes.len() && bytes[j] == ':' && bytes[j + 1] == ':' && ident(bytes[j + 2])
            {
                j += 2;
            } else if j + 2 < bytes.len()
                && bytes[j] == ':'
                && bytes[j + 1] == ':'
                && bytes[j + 2] == '{'
            {
                // `use a::{b, c::d}`: one path per item of the group (one level deep).
                let close = bytes[j + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|p| j + 2 + p);
                if let Some(close) = close {
                    let group: String = bytes[j + 3..close].iter().collect();
                    for item in group.split(',') {
                        let item: Vec<String> = item
                            .trim()
                            .split("::")
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect();
                        if !item.is_empty() {
                            let mut full = segments.clone();
                            full.extend(item);
                            out.push(full);
                        }
                    }
                    j = close;
                }
                segments.clear();
                break;
            } else {
                break;
            }
        }
        if segments.len() > 1 {
            out.push(segments);
        }
        i = j.max(i + 1);
    }
    out
}

/// The arrows of the crate: file → files it names.
fn arrows(root: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let modules = modules(root);
    let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        let code = code_of(&text);
        let is_folder = file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
        // The module `self::` and a relative path start from.
        let here: Vec<String> = if module == &vec!["<main>".to_owned()] {
            Vec::new()
        } else {
            module.clone()
        };
        let children: BTreeSet<String> = code
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                l.strip_prefix("mod ")?
                    .strip_suffix(';')
                    .map(|n| n.trim().to_owned())
            })
            .collect();
        let targets = graph.entry(file.clone()).or_default();
        for path in paths(&code) {
            let absolute: Vec<String> = match path[0].as_str() {
                "crate" => path[1..].to_vec(),
                "self" => {
                    let mut p = here.clone();
                    if !is_folder {
                        // `self` in a file module is that module.
                    }
                    p.extend_from_slice(&path[1..]);
                    p
                }
                "super" => {
                    let mut p = here.clone();
                    let mut rest = &path[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        p.pop();
                        rest = &rest[1..];
                    }
                    p.extend_from_slice(rest);
                    p
                }
                first if children.contains(first) => {
                    let mut p = here.clone();
                    p.extend_from_slice(&path);
                    p
                }
                _ => continue,
            };
            // The longest prefix that is a file of ours. A file naming its own folder's
            // module (`super::Error`: the folder's shared definitions, which re-export the
            // folder's files) is inside that room, not an arrow.
            let target = (1..=absolute.len())
                .rev()
                .find(|&n| modules.contains_key(&absolute[..n]));
            if let Some(n) = target
                && !(n < here.len() && absolute[..n] == here[..n])
                && let Some(target) = modules.get(&absolute[..n])
                && target != file
            {
                targets.insert(target.clone());
            }
        }
    }
    graph
}

/// Strongly connected components of more than one file (Tarjan).
fn circles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        next: usize,
        found: Vec<Vec<PathBuf>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a PathBuf) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            let graph = self.graph;
            for w in graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
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
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn src_has_no_import_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = arrows(&root);
    assert!(
        graph.len() > 20,
        "the checker found only {} files under {}",
        graph.len(),
        root.display()
    );
    let found = circles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|c| {
            let names: Vec<String> = c
                .iter()
                .map(|f| {
                    let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
                    let to: Vec<String> = graph[f]
                        .iter()
                        .filter(|t| c.contains(t))
                        .map(|t| t.strip_prefix(&root).unwrap_or(t).display().to_string())
                        .collect();
                    format!("{rel} -> {}", to.join(", "))
                })
                .collect();
            names.join("\n    ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles in src/ (each file -> the files of its circle it imports):\n  {}",
        described.join("\n  ")
    );
}

#[test]
fn the_checker_sees_a_circle() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("a")).expect("mkdir");
    for (file, text) in [
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a/mod.rs", "pub mod x;\npub mod y;\nuse x::Thing;\n"),
        ("a/y.rs", "use super::x::Thing;\nuse super::Shared;\n"),
        ("a/x.rs", "use crate::b::B; // crate::c::C in a comment\n"),
        ("b.rs", "use crate::{a::x::Thing, c};\n"),
        ("c.rs", "fn f() { let _ = \"crate::b::B\"; }\n"),
    ] {
        std::fs::write(dir.path().join(file), text).expect("write");
    }
    let graph = arrows(dir.path());
    let found = circles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    let names: Vec<String> = found[0]
        .iter()
        .map(|f| {
            f.strip_prefix(dir.path())
                .unwrap_or(f)
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["a/x.rs", "b.rs"]);
}
