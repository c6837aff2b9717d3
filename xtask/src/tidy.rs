//! Tidy checks on the source tree, run as tests (`cargo test -p xtask`, part of `cargo xtask
//! test`), in the spirit of rust-analyzer's: the layering of `broker/src` and `sim/src` written
//! down as data, and a test that fails when a module imports a higher layer, when modules import
//! each other in a circle, or when a source file grows past its size.
//!
//! The crates themselves are layered by Cargo (io-backend < broker < sim; xtask and loadgen link
//! none of them at run time); these checks hold the layers *inside* a crate, where the compiler
//! allows any module to use any other.
//!
//! How an import is seen: every `crate::a::…` path (in `use` items and in code, also inside
//! `use crate::{a, b::c}` groups) and every `super::…` path that climbs out of a top-level module
//! names the top-level module `a`. Comments and `#[cfg(test)]` items (test modules, `tests.rs`
//! files) are not read: a test may build what it checks from any layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One layer: a name and the top-level modules in it.
pub type Layer = (&'static str, &'static [&'static str]);

/// The broker's layers, lowest first. A module may import modules of its own layer (without a
/// circle) and of lower layers, never of a higher one.
pub const BROKER_LAYERS: &[Layer] = &[
    // Leaf modules everything may use: the record batch format and its records, the wire
    // protocol, codecs, idempotent producers' state, counters, the memory budget, throttled
    // logging, coverage events, the simulator's fault points, the work it makes cost time and
    // what it observes, the locks.
    (
        "foundation",
        &[
            "alloc",
            "batch",
            "compression",
            "conn_limit",
            "coverage",
            "fault",
            "fault_point",
            "features",
            "cpu_work",
            "memory",
            "metrics",
            "observe",
            "producer_state",
            "protocol",
            "sync",
            "records",
            "schema",
            "throttle",
            "txn_marker",
        ],
    ),
    // Configuration types: the broker's settings, topic configs (`LogConfig`), dynamic broker
    // configs. Plain data with parsing and checks; they build no higher layer's types.
    ("settings", &["broker_configs", "config", "topic_config"]),
    // Who a client is and what it may do: TLS configurations from PEM files (the listeners',
    // the links between brokers'), SCRAM, principals, Kafka's ACLs and the authorizer's
    // decision, the security metadata (users and ACLs) and its changes.
    ("security", &["security", "quota"]),
    // A data directory: the catalog of topics (with the internal topics' names), partition
    // logs, the commit pipeline, disk operations with deadlines.
    ("storage", &["storage"]),
    // Raft per partition: the transport between brokers, the node and its log.
    ("replication", &["replication"]),
    // The cluster metadata log and what it decides (topics, replicas, broker configs).
    ("controller", &["controller"]),
    // The coordinators: of consumer groups and committed offsets; of transactions. Client
    // telemetry: the clients known and the metrics they push.
    ("coordinators", &["group", "telemetry", "txn"]),
    // What each Kafka request does.
    ("api", &["api"]),
    // Listener, connections, start-up and shutdown: the one place that wires the layers.
    ("server", &["server"]),
    // The operator's offline tools (dump a file, verify a data directory): they read the
    // storage's formats and never run inside the broker.
    ("tools", &["tools"]),
];

/// The simulator's rooms, lowest first (the same rule as the broker's).
pub const SIM_LAYERS: &[Layer] = &[
    // What is recorded and what is asked: the history of operations, the kinds of finding, the
    // scenario file.
    ("records", &["findings", "history", "scenario"]),
    // The simulated world: disk, clock, the nodes' faults and bounds.
    ("world", &["world"]),
    // The simulated clients and the workload they run.
    ("workload", &["workload"]),
    // The checkers that judge a history.
    ("checks", &["checks"]),
    // What a run observed, the checkers' verdict and the run's report, in both worlds.
    ("outcome", &["outcome"]),
    // One run of one seed: the world, the workload and the checkers put together.
    ("run", &["run"]),
    // What a run or a sweep reports: JSON, Markdown, SVG, summaries.
    ("report", &["report"]),
    // The commands people type: run, sweep, check, replay, shrink, merge; and the twin runner
    // on real processes with its command (`sim real`).
    ("commands", &["commands", "real"]),
];

/// Source files may not grow past this many lines (tests included: a file whose tests make it
/// long moves them into a `tests.rs` beside it).
pub const FILE_LINES_MAX: usize = 800;

/// An import of one top-level module by another, with where it was seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Import {
    pub from: String,
    pub to: String,
    pub file: PathBuf,
    pub path: String,
}

/// Every import between top-level modules of the crate whose `src` is `root`.
pub fn imports(root: &Path) -> Vec<Import> {
    let mut out = Vec::new();
    for file in rust_files(root) {
        let rel = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
        let module = module_path(&rel);
        if module.is_empty() || rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let code = without_tests(&without_comments(&text));
        for (target, path) in paths(&code, &module) {
            if target != module[0] {
                out.push(Import {
                    from: module[0].clone(),
                    to: target,
                    file: rel.clone(),
                    path,
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Imports that go up the layers, or name a module the layers do not place.
pub fn layer_violations(imports: &[Import], layers: &[Layer]) -> Vec<String> {
    let rank = |m: &str| layers.iter().position(|(_, ms)| ms.contains(&m));
    let mut out = Vec::new();
    for i in imports {
        match (rank(&i.from), rank(&i.to)) {
            (Some(a), Some(b)) if b > a => out.push(format!(
                "{} ({}, layer {}) imports {} of the higher layer {}: `{}`",
                i.file.display(),
                i.from,
                layers[a].0,
                i.to,
                layers[b].0,
                i.path
            )),
            (Some(_), Some(_)) => {}
            (None, _) => out.push(format!(
                "module {} ({}) is in no layer: add it to the layers in xtask/src/tidy.rs",
                i.from,
                i.file.display()
            )),
            (_, None) => out.push(format!(
                "module {} (imported by {}) is in no layer: add it to the layers in xtask/src/tidy.rs",
                i.to,
                i.file.display()
            )),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Circles among top-level modules: each as the modules on it, in order.
pub fn circles(imports: &[Import]) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        graph.entry(&i.from).or_default().insert(&i.to);
        graph.entry(&i.to).or_default();
    }
    // Tarjan's strongly connected components: every component of more than one module is a
    // circle.
    struct State<'a> {
        graph: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &s.graph[v] {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

/// Source files over [`FILE_LINES_MAX`] lines, with their length.
pub fn long_files(root: &Path) -> Vec<(PathBuf, usize)> {
    rust_files(root)
        .into_iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(&f).ok()?.lines().count();
            (lines > FILE_LINES_MAX).then_some((f, lines))
        })
        .collect()
}

fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `storage/log/read.rs` → `[storage, log, read]`; `storage/mod.rs` → `[storage]`; the crate's
/// roots (`lib.rs`, `main.rs`) → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

/// The text with `//` and `/* */` comments blanked (string literals are kept as they are: a
/// path inside a string is rare, and a `//` inside one only hides the rest of its line).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The text without the items marked `#[cfg(test)]` (a braced item to its closing brace, any
/// other to its `;`).
fn without_tests(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let brace = item.find('{');
        let semi = item.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (i, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(s)) => s + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level modules named by the paths in `code` of the module at `module`, each with the
/// path as written.
fn paths(code: &str, module: &[String]) -> Vec<(String, String)> {
    let bytes = code.as_bytes();
    let ident_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let starts = |word: &str| code[i..].starts_with(word);
        let boundary = i == 0 || !(ident_char(bytes[i - 1]) || bytes[i - 1] == b'$');
        if boundary && (starts("crate::") || starts("super::")) {
            // Resolve the leading `crate::` or `super::super::…` to a depth in the module path.
            let mut j = i;
            let mut depth = module.len();
            if starts("crate::") {
                depth = 0;
                j += "crate::".len();
            } else {
                while code[j..].starts_with("super::") {
                    depth = depth.saturating_sub(1);
                    j += "super::".len();
                }
            }
            let base: Vec<String> = module[..depth].to_vec();
            if code[j..].starts_with('{') {
                let close = matching_brace(code, j);
                for item in split_top_level(&code[j + 1..close]) {
                    if let Some(t) = target(&base, item.trim()) {
                        out.push((t, format!("{}::{}", &code[i..j - 2], item.trim())));
                    }
                }
                i = close;
            } else {
                let end = j + code[j..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(code.len() - j);
                if let Some(t) = target(&base, &code[j..end]) {
                    out.push((t, code[i..end].trim_end_matches(':').to_string()));
                }
                i = end;
            }
        } else {
            i += 1;
        }
        while i < code.len() && !code.is_char_boundary(i) {
            i += 1;
        }
    }
    out
}

/// The top-level module a path names, from module `base` (empty: the crate root).
fn target(base: &[String], path: &str) -> Option<String> {
    if let Some(top) = base.first() {
        return Some(top.clone());
    }
    let first = path.split("::").next()?.trim();
    (!first.is_empty() && first != "self" && first != "*").then(|| first.to_string())
}

fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    code.len()
}

fn split_top_level(group: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&group[start..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(krate: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(krate)
            .join("src")
    }

    fn check_crate(krate: &str, layers: &[Layer]) {
        let imports = imports(&src(krate));
        assert!(!imports.is_empty(), "no imports seen in {krate}/src");
        let mut problems = layer_violations(&imports, layers);
        for c in circles(&imports) {
            problems.push(format!(
                "modules import each other in a circle: {}",
                c.join(", ")
            ));
        }
        assert!(
            problems.is_empty(),
            "{krate}/src breaks its layers:\n  {}",
            problems.join("\n  ")
        );
    }

    #[test]
    fn the_broker_s_modules_import_only_their_own_layer_and_lower_ones() {
        check_crate("broker", BROKER_LAYERS);
    }

    #[test]
    fn the_simulator_s_rooms_import_only_their_own_layer_and_lower_ones() {
        check_crate("sim", SIM_LAYERS);
    }

    #[test]
    fn every_re_introduced_defect_still_applies_to_the_code() {
        // sim/tests/fixtures/defects: each patch puts a known defect back on purpose, to show
        // which world catches it; a patch that no longer applies is test data gone stale.
        let root = src("broker")
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        let root = root.expect("the repository's root");
        let dir = root.join("sim/tests/fixtures/defects");
        let mut patches: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("the defects' directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "patch"))
            .collect();
        patches.sort();
        assert!(patches.len() >= 7, "{patches:?}");
        for p in patches {
            let out = std::process::Command::new("git")
                .args(["apply", "--check"])
                .arg(&p)
                .current_dir(&root)
                .output()
                .expect("git");
            assert!(
                out.status.success(),
                "{} no longer applies: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn every_lock_of_the_broker_is_one_of_its_sync_module() {
        // The simulator sees the broker's locks only through `broker::sync` (contention,
        // lock order): a std or tokio lock elsewhere would be invisible to it.
        let mut found = Vec::new();
        let sync = src("broker").join("sync");
        for file in rust_files(&src("broker")) {
            if file.starts_with(&sync) || file.ends_with("tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let std_lock = ["std::sync::", "tokio::sync::"].iter().any(|m| {
                    code.contains(&format!("{m}Mutex")) || code.contains(&format!("{m}RwLock"))
                }) || (code.contains("use std::sync::{")
                    && (code.contains("Mutex") || code.contains("RwLock")));
                if std_lock {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "locks outside broker::sync:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn no_source_file_of_the_broker_or_the_simulator_is_over_the_size() {
        let mut long = long_files(&src("broker"));
        long.extend(long_files(&src("sim")));
        let listed: Vec<String> = long
            .iter()
            .map(|(f, n)| format!("{} ({n} lines)", f.display()))
            .collect();
        assert!(
            long.is_empty(),
            "over {FILE_LINES_MAX} lines (split by concern, or move tests into a tests.rs):\n  {}",
            listed.join("\n  ")
        );
    }

    // The checker itself: each finds what it must, so a passing check means something.

    fn fake(files: &[(&str, &str)]) -> Vec<Import> {
        let dir = std::env::temp_dir().join(format!(
            "stillwater-tidy-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        let found = imports(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        found
    }

    #[test]
    fn an_upward_import_a_circle_and_an_unplaced_module_are_found() {
        let imports = fake(&[
            ("lib.rs", "pub mod low; pub mod high;"),
            (
                "low/mod.rs",
                "use crate::{batch, high::Thing};\n// crate::ignored\nfn f() { crate::other::g() }",
            ),
            ("low/deep/x.rs", "use super::super::super::high;"),
            (
                "high.rs",
                "use crate::low::Y;\n#[cfg(test)]\nmod tests { use crate::tests_only; }",
            ),
        ]);
        let pairs: BTreeSet<(String, String)> = imports
            .iter()
            .map(|i| (i.from.clone(), i.to.clone()))
            .collect();
        let want: BTreeSet<(String, String)> = [
            ("high", "low"),
            ("low", "batch"),
            ("low", "high"),
            ("low", "other"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(pairs, want);
        const LAYERS: &[Layer] = &[
            ("base", &["batch", "other"]),
            ("low", &["low"]),
            ("high", &["high"]),
        ];
        let v = layer_violations(&imports, LAYERS);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v
            .iter()
            .all(|s| s.contains("imports high of the higher layer high")));
        assert_eq!(
            circles(&imports),
            vec![vec!["high".to_string(), "low".to_string()]]
        );
        let unplaced = layer_violations(&imports, &[("base", &["batch", "low", "high"])]);
        assert!(
            unplaced.iter().any(|s| s.contains("module other")),
            "{unplaced:?}"
        );
    }
}
