//! The crate's layers (the table in `src/lib.rs`): every module imports only from layers
//! below its own, or from its own layer without closing a circle, so the module graph has
//! no circle at all. Test modules are left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module -> layer, from the table in the crate docs.
fn layers() -> BTreeMap<String, usize> {
    let docs = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let row = Regex::new(r"^//! \| (\d+) [a-z ]+ \| ([^|]+) \|").unwrap();
    let mut layers = BTreeMap::new();
    for line in docs.lines() {
        if let Some(caps) = row.captures(line) {
            let layer: usize = caps[1].parse().unwrap();
            for module in caps[2].split(',') {
                layers.insert(module.trim().trim_matches('`').to_owned(), layer);
            }
        }
    }
    assert!(layers.len() > 20, "the layer table in src/lib.rs is missing or unreadable: {layers:?}");
    layers
}

/// (importing module, imported module) -> the files where it happens.
fn imports() -> BTreeMap<(String, String), BTreeSet<String>> {
    let test_module = Regex::new(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s").unwrap();
    let path = Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut found: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src()];
    while let Some(dir) = files.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let file = entry.path();
            if file.is_dir() {
                files.push(file);
                continue;
            }
            let relative = file.strip_prefix(src()).unwrap().to_string_lossy().into_owned();
            if !relative.ends_with(".rs") || relative == "lib.rs" {
                continue;
            }
            let module = relative.split(['/', '.']).next().unwrap().to_owned();
            let text = std::fs::read_to_string(&file).unwrap();
            let code = test_module.find(&text).map_or(text.as_str(), |m| &text[..m.start()]);
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for caps in path.captures_iter(line) {
                    if caps[1] != module {
                        found.entry((module.clone(), caps[1].to_owned())).or_default().insert(relative.clone());
                    }
                }
            }
        }
    }
    found
}

/// The modules of each circle among `edges`.
fn circles(edges: &BTreeSet<(String, String)>) -> Vec<BTreeSet<String>> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(at) = stack.pop() {
            for (a, b) in edges {
                if *a == at && seen.insert(b.clone()) {
                    stack.push(b.clone());
                }
            }
        }
        seen.contains(to)
    };
    let mut circles: Vec<BTreeSet<String>> = Vec::new();
    for (a, _) in edges {
        if reaches(a, a) && !circles.iter().any(|c| c.contains(a)) {
            circles.push(edges.iter().map(|(m, _)| m.clone()).filter(|m| reaches(a, m) && reaches(m, a)).collect());
        }
    }
    circles
}

#[test]
fn every_module_imports_only_downward() {
    let layers = layers();
    let imports = imports();
    let mut broken = Vec::new();
    let mut within: BTreeSet<(String, String)> = BTreeSet::new();
    for ((from, to), files) in &imports {
        let (Some(&above), Some(&below)) = (layers.get(from), layers.get(to)) else {
            broken.push(format!("{from} -> {to}: a module in no layer of the table in src/lib.rs ({files:?})"));
            continue;
        };
        if below > above {
            broken.push(format!("{files:?}: `{from}` (layer {above}) imports `crate::{to}` (layer {below}), which lies above it"));
        }
        if below == above {
            within.insert((from.clone(), to.clone()));
        }
    }
    for circle in circles(&within) {
        broken.push(format!("a circle within one layer: {circle:?}"));
    }
    assert!(broken.is_empty(), "imports against the layers:\n{}", broken.join("\n"));
}

#[test]
fn the_rule_catches_an_upward_import_and_a_circle() {
    let edges: BTreeSet<(String, String)> =
        [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")].iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    assert_eq!(circles(&edges), [BTreeSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()])]);
    assert!(circles(&edges.iter().filter(|(a, _)| a != "c").cloned().collect()).is_empty());
    let layers = layers();
    assert!(layers["vocab"] < layers["history"] && layers["history"] < layers["check"] && layers["check"] < layers["run"]);
}
