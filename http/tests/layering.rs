//! One architecture (docs/architecture.md, "Façades"): the HTTP front reaches the domain
//! through the actors' façades, never storage. `http/Cargo.toml` has no normal dependency on
//! `ampflow-storage`, no source file of the crate names it, and the database handle the actors
//! crate lends the composition root (`ampflow_actors::database`) is used by the composition
//! root alone: starting the server, the CLI, the configuration and the node id. And no
//! function outside the migrations, tests and benchmarks runs over 70 lines without saying why.
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

/// Most lines a function may have (from `fn` to its closing brace) without a doc comment
/// that says why, as "(Long because …)".
const FUNCTION_LINES_MAX: usize = 70;

/// The code the rule covers: every crate's `src`, the fault campaign and the stand-ins; not
/// the migrations (one schema change each), tests, or the benchmarks' binaries.
const FUNCTION_RULE_DIRS: &[&str] = &[
    "types/src",
    "runtime/src",
    "storage/src",
    "chain/src",
    "actors/src",
    "http/src",
    "simulations/src/chaos",
    "simulations/standins/src",
];

/// Each function in `text` longer than the limit whose doc comment does not say why: its name,
/// first line and length. A function ends at the first `}` line at its own indentation.
fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let signature = [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "async ",
            "const ",
            "unsafe ",
        ]
        .iter()
        .fold(code, |rest, prefix| {
            rest.strip_prefix(prefix).unwrap_or(rest)
        });
        let Some(name) = signature.strip_prefix("fn ") else {
            continue;
        };
        let name: String = name
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let closing = format!("{}}}", " ".repeat(indent));
        let Some(end) = lines[start..]
            .iter()
            .position(|l| *l == closing || l.starts_with(&format!("{closing} ")))
        else {
            continue; // a declaration without a body
        };
        let length = end + 1;
        if length <= FUNCTION_LINES_MAX {
            continue;
        }
        let doc: String = lines[..start]
            .iter()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("///") || l.starts_with("#[") || l.starts_with("//")
            })
            .map(|l| l.trim_start().trim_start_matches('/').trim())
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if !doc.contains("long because") && !doc.contains("long only because") {
            found.push((name, start + 1, length));
        }
    }
    found
}

#[test]
fn long_functions_say_why() {
    let root = Path::new(CRATE).parent().unwrap();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in FUNCTION_RULE_DIRS {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 100, "{}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (name, line, length) in long_functions(&text) {
            let relative = file.strip_prefix(root).unwrap().display();
            problems.push(format!("{relative}:{line} `{name}` has {length} lines"));
        }
    }
    assert!(
        problems.is_empty(),
        "split these functions, or say in their doc comment why they are long \
         (\"(Long because …)\"):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_length_rule_measures_functions_and_reads_their_reasons() {
    let body = "    x();\n".repeat(FUNCTION_LINES_MAX);
    let long = format!("/// Does x.\nfn long() {{\n{body}}}\n");
    assert_eq!(
        long_functions(&long),
        vec![("long".to_string(), 2, FUNCTION_LINES_MAX + 2)]
    );
    let explained = format!(
        "/// Does x. (Long because x is done many times.)\npub async fn long() {{\n{body}}}\n"
    );
    assert!(long_functions(&explained).is_empty());
    let short = "fn short() {\n    x();\n}\n";
    assert!(long_functions(short).is_empty());
}
