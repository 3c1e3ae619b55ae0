//! The direction of the arrows (ARCHITECTURE.md): the cockpit sees the
//! engine only through the protocol, so the same cockpit runs in the
//! engine's process, over the socket and over SSH.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("source directory reads") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Lines of `dir`'s sources naming any of `modules`, as `file:line: text`.
fn uses_of(dir: &str, modules: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found = Vec::new();
    for file in rust_files(&root) {
        let text = std::fs::read_to_string(&file).expect("source reads");
        for (n, line) in text.lines().enumerate() {
            if modules.iter().any(|m| line.contains(m)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_cockpit_knows_the_engine_only_through_the_protocol() {
    let forbidden =
        ["crate::engine", "crate::backend", "crate::metrics", "crate::fleet", "crate::share", "flightdeck::engine"];
    let found = uses_of("src/ui", &forbidden);
    assert!(found.is_empty(), "src/ui reaches past the protocol:\n{}", found.join("\n"));
}

#[test]
fn the_protocol_knows_no_engine_internals() {
    let found = uses_of("src/protocol", &["crate::engine", "crate::backend", "crate::ui", "crate::share"]);
    assert!(found.is_empty(), "src/protocol depends on a layer above it:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_forbidden_use() {
    // The scan itself must work: the engine's sources do name the backend.
    assert!(!uses_of("src/engine", &["crate::backend"]).is_empty());
}
