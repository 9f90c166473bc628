//! One architecture (docs/architecture.md, "Façades"): the HTTP front reaches the domain
//! through the actors' façades, never storage. `http/Cargo.toml` has no normal dependency on
//! `ampflow-storage`, no source file of the crate names it, and the database handle the actors
//! crate lends the composition root (`ampflow_actors::database`) is used by the composition
//! root alone: starting the server, the CLI, the configuration and the node id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// The files that open, configure or close the database.
const COMPOSITION_ROOT: &[&str] = &["src/app.rs", "src/main.rs", "src/config.rs", "src/node.rs"];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn http_depends_on_the_facades_not_on_storage() {
    let manifest = std::fs::read_to_string(Path::new(CRATE).join("Cargo.toml")).unwrap();
    let manifest: toml_edit::DocumentMut = manifest.parse().unwrap();
    let dependencies = manifest["dependencies"].as_table().unwrap();
    assert!(
        !dependencies.contains_key("ampflow-storage"),
        "http/Cargo.toml [dependencies] names ampflow-storage: call a façade in ampflow-actors"
    );
    assert!(dependencies.contains_key("ampflow-actors"));

    let mut files = Vec::new();
    sources(&Path::new(CRATE).join("src"), &mut files);
    assert!(files.len() > 20, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let relative = file
            .strip_prefix(CRATE)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        assert!(
            !text.contains("ampflow_storage"),
            "{relative} names ampflow_storage: call a façade in ampflow-actors"
        );
        if text.contains("ampflow_actors::database") {
            assert!(
                COMPOSITION_ROOT.contains(&relative.as_str()),
                "{relative} uses the database handle of the composition root: call a façade"
            );
        }
    }
}
