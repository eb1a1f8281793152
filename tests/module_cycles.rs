//! Layering inside each crate: no two modules use each other, directly or around a loop.
//!
//! A module is a source file (`train/unet.rs` is `train::unet`, a `mod.rs` its folder); it uses
//! another when it names a `crate::` path into it outside its `#[cfg(test)] mod tests` (the
//! longest module prefix of the path counts, a module's own ancestors do not). A cycle means the
//! two halves cannot be read, tested or moved apart: the fix is a third module both use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `train/unet.rs` → `train::unet`; `lib.rs`, `main.rs` → the crate root (``).
fn module_name(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The `crate::` paths a source names outside comments and its test module: `crate::a::b::C`
/// gives `a::b::C`, `crate::{a::B, c}` gives `a::B` and `c`.
fn crate_paths(text: &str) -> Vec<String> {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
    let path_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let items = &group[..group.find('}').unwrap_or(group.len())];
            paths.extend(items.split(',').map(|i| i.trim().split("::{").next().unwrap_or_default().to_string()));
        } else {
            paths.push(rest.chars().take_while(|&c| path_char(c)).collect());
        }
    }
    paths.into_iter().map(|p| p.trim_end_matches(':').to_string()).filter(|p| !p.is_empty()).collect()
}

/// Each module of the crate at `src` and the modules it uses.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = bioseg_suite::rust_sources(src);
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|f| (module_name(src, f), f.clone())).collect();
    let is_ancestor = |a: &str, m: &str| a.is_empty() || m.starts_with(&format!("{a}::"));
    modules
        .iter()
        .map(|(m, file)| {
            let text = std::fs::read_to_string(file).expect("a source file");
            let used = crate_paths(&text)
                .into_iter()
                .filter_map(|p| {
                    let parts: Vec<&str> = p.split("::").collect();
                    (1..=parts.len()).rev().map(|k| parts[..k].join("::")).find(|c| modules.contains_key(c))
                })
                .filter(|u| u != m && !is_ancestor(u, m))
                .collect();
            (m.clone(), used)
        })
        .collect()
}

/// One loop through `start` (the modules in order, back to `start`), if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((m, path)) = stack.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.to_string()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

fn cycles(src: &Path) -> Vec<String> {
    let graph = module_graph(src);
    graph.keys().filter_map(|m| cycle_through(&graph, m)).map(|c| c.join(" → ")).collect()
}

#[test]
fn no_crate_has_modules_that_use_each_other() {
    let crates = bioseg_suite::root().join("crates");
    let mut found = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).expect("the crates folder") {
        let src = entry.expect("an entry").path().join("src");
        if src.is_dir() {
            checked += 1;
            let name = src.parent().and_then(|p| p.file_name()).unwrap_or_default().to_string_lossy().into_owned();
            found.extend(cycles(&src).into_iter().map(|c| format!("{name}: {c}")));
        }
    }
    assert!(checked >= 5, "crates under {}", crates.display());
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

/// The checker itself: it finds a loop of three modules, a `crate::{…}` group and a path to an
/// item, and ignores test modules, comments and ancestors.
#[test]
fn the_cycle_check_finds_loops_and_ignores_tests_and_comments() {
    let dir = std::env::temp_dir().join(format!("bioseg-module-cycles-{}", std::process::id()));
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod e;\n");
    write("a.rs", "use crate::{b::Thing, e};\n");
    write("b/mod.rs", "pub mod inner;\nfn f() { crate::c::g(); }\n");
    write("b/inner.rs", "use crate::b::Other; // an ancestor\n");
    write("c.rs", "pub fn g() { crate::a::h(); }\n");
    write("d.rs", "// crate::e::x in a comment\n#[cfg(test)]\nmod tests {\n    use crate::e::y;\n}\n");
    write("e.rs", "use crate::d::Z;\n");
    let graph = module_graph(&dir);
    assert_eq!(graph["a"], BTreeSet::from(["b".to_string(), "e".to_string()]));
    assert!(graph["b::inner"].is_empty(), "{graph:?}");
    assert!(graph["d"].is_empty(), "{graph:?}");
    let found = cycles(&dir);
    assert_eq!(found, ["a → b → c → a", "b → c → a → b", "c → a → b → c"], "{graph:?}");
    write("c.rs", "pub fn g() {}\n");
    assert!(cycles(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
