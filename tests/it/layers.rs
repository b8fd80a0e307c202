//! The layers of `src/`, enforced: each module imports only the layers below it, never a module
//! of its own layer (the foundation excepted, in its listed order), and channels never each
//! other. The table is the one `src/lib.rs` and `docs/architecture.md` state; a module that is
//! not in it fails the test too, so a new module has to be placed before it can be built on.
//!
//! It reads the source rather than the compiled crate: every `crate::name` path outside a
//! `#[cfg(test)]` module counts as an import of `name`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. Within the foundation a module may import those listed before it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "error",
            "redact",
            "clock",
            "tasks",
            "crash",
            "config",
            "csv_safe",
            "authz",
            "webhooks",
            "store",
            "redis_conn",
            "okta",
            "oncall",
            "telemetry",
        ],
    ),
    (
        "audit, policy, scheduler",
        &["audit", "policy", "scheduler"],
    ),
    ("grants", &["grants"]),
    (
        "requests, drift, inventory",
        &["requests", "drift", "inventory"],
    ),
    (
        "notify, events, sync, reviews",
        &["notify", "events", "sync", "reviews"],
    ),
    ("outbox", &["outbox"]),
    ("channels", &["api", "console", "slack", "callbacks", "cli"]),
    ("app", &["app"]),
];

fn place(module: &str) -> Option<(usize, usize)> {
    LAYERS.iter().enumerate().find_map(|(layer, (_, mods))| {
        mods.iter()
            .position(|m| *m == module)
            .map(|pos| (layer, pos))
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to: `src/grants/repo.rs` → `grants`, `src/clock.rs` → `clock`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::name` the file's code refers to outside its `#[cfg(test)]` module, including
/// the names inside `use crate::{a, b::c}`.
fn imports(text: &str) -> BTreeSet<String> {
    // The test module (by convention the file's last item, `#[cfg(test)]` then maybe more
    // attributes, then `mod`) may use anything, as the integration tests do.
    let test_mod = text.match_indices("#[cfg(test)]").find(|(i, m)| {
        text[i + m.len()..]
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("#["))
            .is_some_and(|l| l.starts_with("mod "))
    });
    let text = match test_mod {
        Some((i, _)) => &text[..i],
        None => text,
    };
    // Comments (doc links included) name modules without depending on them.
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        // `jit_broker::crate::` does not exist, but `some_crate::` does: require a boundary.
        if i > 0 {
            let prev = text.as_bytes()[i - 1];
            if prev.is_ascii_alphanumeric() || prev == b'_' {
                continue;
            }
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: the first name of each, at brace depth 0.
            let mut depth = 0usize;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphanumeric() || c == '_') => {
                        start = false;
                        out.insert(ident(&group[j..]));
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Why `from` may not import `to`, or `None` when it may.
fn violation(from: &str, to: &str) -> Option<String> {
    let (fl, fp) = place(from)?;
    let Some((tl, tp)) = place(to) else {
        // Items at the crate root (`crate::run`) are the app's re-exports.
        return (fl < LAYERS.len() - 1).then(|| format!("`{to}` is not a module of the table"));
    };
    if tl > fl {
        return Some(format!(
            "imports upward: `{from}` ({}) → `{to}` ({})",
            LAYERS[fl].0, LAYERS[tl].0
        ));
    }
    if tl == fl && fl != 0 {
        return Some(format!(
            "imports sideways within `{}`: `{from}` → `{to}`",
            LAYERS[fl].0
        ));
    }
    if tl == fl && fl == 0 && tp >= fp {
        return Some(format!(
            "foundation order: `{from}` may import only modules listed before it, not `{to}`"
        ));
    }
    None
}

fn violations() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut out = Vec::new();
    let mut unplaced = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        // `src/bin/*` are separate crates (the `jit` client), not modules of the library; their
        // rule is `the_terminal_client_never_uses_the_broker_library` below.
        if module == "lib" || module == "main" || module == "bin" {
            continue;
        }
        if place(&module).is_none() {
            unplaced.insert(module.clone(), file.clone());
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for to in imports(&text) {
            if to == module {
                continue;
            }
            if let Some(why) = violation(&module, &to) {
                let rel = file.strip_prefix(&src).unwrap().display();
                out.push(format!("src/{rel}: {why}"));
            }
        }
    }
    for (m, f) in unplaced {
        out.push(format!(
            "{}: module `{m}` has no layer: add it to the table here, in src/lib.rs and in \
             docs/architecture.md",
            f.display()
        ));
    }
    out
}

#[test]
fn every_import_goes_down() {
    let v = violations();
    assert!(v.is_empty(), "layering violations:\n  {}", v.join("\n  "));
}

#[test]
fn the_check_catches_upward_sideways_and_unknown_imports() {
    // Upward: the grants service reaching for a channel or the requests above it.
    assert!(violation("grants", "api").is_some());
    assert!(violation("grants", "requests").is_some());
    // Sideways: two channels, two domain modules of one layer.
    assert!(violation("console", "slack").is_some());
    assert!(violation("sync", "reviews").is_some());
    // The foundation in its order: the store may use config, config may not use the store.
    assert!(violation("store", "config").is_none());
    assert!(violation("config", "store").is_some());
    // Down is fine; crate-root items only from the app.
    assert!(violation("api", "grants").is_none());
    assert!(violation("app", "run").is_none());
    assert!(violation("grants", "run").is_some());
    // The parser sees grouped and nested paths, not other crates' `crate::`.
    let found = imports("use crate::{clock::Clock, store::{Store, Backend}};\nlet x = my_crate::y;\ncrate::grants::f();\n#[cfg(test)]\nmod tests { use crate::api; }");
    assert_eq!(
        found,
        ["clock", "store", "grants"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

/// The table names what lib.rs declares, so neither can drift from the other.
#[test]
fn the_table_matches_lib_rs() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    let table: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|(_, m)| m.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(declared, table);
}

/// `jit` (src/bin/jit) talks to the broker only over HTTP: it names nothing of the library, so
/// it cannot hold a rule of its own (every answer comes from the API).
#[test]
fn the_terminal_client_never_uses_the_broker_library() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/jit");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(!files.is_empty(), "src/bin/jit has no sources");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            assert!(
                !line.contains("jit_broker"),
                "{}:{}: the client uses the broker library",
                f.display(),
                i + 1
            );
        }
    }
}
