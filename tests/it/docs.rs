//! The documentation against the code. Every relative link in the
//! repository's Markdown files (`git ls-files`, untracked ones included)
//! names a file that exists, and a `#anchor` into a Markdown file names one
//! of its headings (GitHub's slugs); the checker is itself checked on a
//! broken link. `docs/configuration.md` names every flag and environment
//! variable that `catdog --help` and each command's `--help` print, and no
//! flag or `CATDOG_*` variable they do not. `docs/api.md`'s route table is
//! the OpenAPI document's list of routes, both ways, with the key column
//! matching each operation's security requirement (the router built in
//! process). And `docs/testing.md` and `tests/it/main.rs` list every test
//! module, each with its own `//!` header. (The error-code table in
//! `docs/api.md` is checked against `ErrorCode` by a unit test in
//! `function/src/http/error.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use tower::ServiceExt;

use crate::support::*;

// ---------------------------------------------------------------- links

/// The Markdown files of the checkout: tracked, and new ones not ignored.
fn markdown_files() -> Vec<PathBuf> {
    let root = workspace();
    let mut out = Command::new("git");
    out.args([
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "--",
        "*.md",
    ])
    .current_dir(&root);
    // git is needed to list the Markdown files.
    let out = succeed(&mut out);
    let mut files: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| root.join(l))
        .filter(|p| p.exists())
        .collect();
    files.sort();
    files.dedup();
    files
}

/// The lines of a Markdown text with fenced code blocks blanked and inline
/// code spans removed: links and headings are only read outside code.
fn prose_lines(text: &str) -> Vec<String> {
    let mut fence: Option<&str> = None;
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if let Some(f) = fence {
                if trimmed.starts_with(f) {
                    fence = None;
                }
                return String::new();
            }
            for f in ["```", "~~~"] {
                if trimmed.starts_with(f) {
                    fence = Some(f);
                    return String::new();
                }
            }
            without_code_spans(line)
        })
        .collect()
}

/// `line` without its inline code spans (a run of n backticks up to the
/// next run of exactly n).
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => i = end,
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// The targets of the inline links (`[text](target "title")`) and reference
/// definitions (`[label]: target`) of one prose line.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after
            .find(|c: char| c == ')' || c.is_whitespace())
            .unwrap_or(after.len());
        let target = after[..end].trim_start_matches('<').trim_end_matches('>');
        if !target.is_empty() {
            targets.push(target.to_string());
        }
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some(at) = trimmed.find("]: ") {
            if !trimmed[..at].contains("](") {
                if let Some(target) = trimmed[at + 3..].split_whitespace().next() {
                    targets.push(target.to_string());
                }
            }
        }
    }
    targets
}

/// GitHub's anchor for a heading's text: links reduced to their text,
/// lowercase, punctuation dropped except `-` and `_`, spaces to `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(at) = rest.find("](") {
        text.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        rest = after.find(')').map_or("", |end| &after[end + 1..]);
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings (`#` to `######`, outside
/// code), a repeated slug numbered `-1`, `-2`, … as GitHub does.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fence: Option<&str> = None;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(f) = fence {
            if trimmed.starts_with(f) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#').trim_end();
        let base = slug(heading);
        let n = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    anchors
}

/// `%20` and other percent escapes of a link's path, decoded.
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = if bytes[i] == b'%' {
            bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        } else {
            None
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every broken relative link of `files`, as `file:line: target: why`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut headings: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (n, line) in prose_lines(&text).iter().enumerate() {
            for target in link_targets(line) {
                let scheme = target.split_once(':').is_some_and(|(s, _)| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                });
                if scheme {
                    continue; // https:, mailto:, …: not a file of the checkout
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(percent_decoded(path))
                };
                if !resolved.exists() {
                    problems.push(format!("{shown}:{}: {target}: no such file", n + 1));
                    continue;
                }
                let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
                    continue;
                };
                if resolved.extension().is_none_or(|e| e != "md") {
                    continue; // an anchor into source (#L10) is not checked
                }
                let key = resolved.canonicalize().unwrap_or_else(|_| resolved.clone());
                let known = headings.entry(key).or_insert_with(|| {
                    anchors(&std::fs::read_to_string(&resolved).unwrap_or_default())
                });
                if !known.contains(anchor) {
                    problems.push(format!(
                        "{shown}:{}: {target}: no heading #{anchor} there",
                        n + 1
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_in_the_markdown_files_resolves() {
    let files = markdown_files();
    assert!(
        files.iter().any(|f| f.ends_with("README.md"))
            && files.iter().any(|f| f.ends_with("docs/api.md")),
        "the Markdown files were not found: {files:?}"
    );
    let problems = broken_links(&workspace(), &files);
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_link_checker_finds_a_broken_link() {
    let dir = std::env::temp_dir().join(format!("catdog-docs-links-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(
        dir.join("README.md"),
        "# Top\n\n\
         [good](docs/here.md#a-heading-v2) and [self](#top) and [web](https://example.com/x)\n\
         [missing](docs/nope.md) and [no anchor](docs/here.md#nowhere)\n\
         `[in code](docs/nope-too.md)`\n\n\
         ```\n[in a block](docs/nope-three.md)\n```\n\n\
         [ref]: docs/gone.md\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("docs/here.md"),
        "# Here\n\n## A heading: (v2)\n\n[back](../README.md#top)\n",
    )
    .unwrap();
    let files = [dir.join("README.md"), dir.join("docs/here.md")];
    let problems = broken_links(&dir, &files);
    let _ = std::fs::remove_dir_all(&dir);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has("README.md:4: docs/nope.md: no such file"),
        "{problems:?}"
    );
    assert!(
        has("docs/here.md#nowhere: no heading #nowhere"),
        "{problems:?}"
    );
    assert!(has("docs/gone.md: no such file"), "{problems:?}");
    assert_eq!(
        problems.len(),
        3,
        "only the three broken links: {problems:?}"
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug("Lambda's CPUs: arm64, and x86 without VNNI"),
        "lambdas-cpus-arm64-and-x86-without-vnni"
    );
    assert_eq!(slug("int8: `models/quantize.py`"), "int8-modelsquantizepy");
    assert_eq!(
        slug("Open Inference Protocol (v2)"),
        "open-inference-protocol-v2"
    );
    assert_eq!(
        slug("Memory under large pictures (`make bench-memory`)"),
        "memory-under-large-pictures-make-bench-memory"
    );
    assert_eq!(slug("See [the API](docs/api.md) now"), "see-the-api-now");
    let repeated = anchors("# A\n## A\n```\n# B\n```\n## A\n");
    assert_eq!(
        repeated.into_iter().collect::<Vec<_>>(),
        ["a", "a-1", "a-2"]
    );
}

// ---------------------------------------------------------------- flags

/// `catdog ARGS --help`'s text.
fn help(args: &[&str]) -> String {
    let out = succeed(catdog_command().args(args).arg("--help"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subcommands `catdog --help` lists (clap's own `help` left out).
fn subcommands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags a help text defines (its option lines: `-h, --help`,
/// `    --model <URI>`).
fn defined_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split([',', ' '])
                .filter(|t| t.starts_with("--"))
                .map(|t| {
                    t.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        })
        .filter(|f| f.len() > 2)
        .collect()
}

/// The environment variables a help text names (`[env: NAME=…]`).
fn env_vars(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// Every `--flag` token of a text (not `---`, not inside a word).
fn flag_tokens(text: &str) -> BTreeSet<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut flags = BTreeSet::new();
    let mut previous = ' ';
    for (i, window) in chars.windows(3).enumerate() {
        let starts = window[0] == '-'
            && window[1] == '-'
            && window[2].is_ascii_lowercase()
            && !(previous.is_alphanumeric() || previous == '-');
        previous = window[0];
        if starts {
            let flag: String = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || **c == '-')
                .collect();
            flags.insert(flag.trim_end_matches('-').to_string());
        }
    }
    flags
}

/// Every `CATDOG_*` variable a text names.
fn catdog_vars(text: &str) -> BTreeSet<String> {
    text.match_indices("CATDOG_")
        .filter(|(i, _)| {
            *i == 0 || {
                let before = text[..*i].chars().next_back().unwrap();
                !(before.is_ascii_alphanumeric() || before == '_')
            }
        })
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        // `CATDOG_*` names the family, not a variable.
        .filter(|name| name.len() > "CATDOG_".len())
        .collect()
}

#[test]
fn the_configuration_reference_is_what_help_prints() {
    let top = help(&[]);
    let commands = subcommands(&top);
    for expected in ["serve", "predict", "lambda", "eval", "upload", "finetune"] {
        assert!(
            commands.iter().any(|c| c == expected),
            "`catdog --help` should list {expected}: {commands:?}\n{top}"
        );
    }
    let mut flags = defined_flags(&top);
    let mut vars = env_vars(&top);
    let mut where_: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for command in &commands {
        let text = help(&[command.as_str()]);
        for flag in defined_flags(&text) {
            where_
                .entry(flag.clone())
                .or_default()
                .push(command.clone());
            flags.insert(flag);
        }
        vars.extend(env_vars(&text));
    }
    assert!(
        flags.contains("--model") && vars.contains("MODEL_URI"),
        "the help texts were not read: {flags:?} {vars:?}"
    );

    let doc_path = workspace().join("docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let missing_flags: Vec<String> = flags
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .map(|f| {
            format!(
                "{f} (catdog {})",
                where_.get(f).map_or("", |c| c[0].as_str())
            )
        })
        .collect();
    let missing_vars: Vec<&String> = vars
        .iter()
        .filter(|v| !doc.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing_flags.is_empty() && missing_vars.is_empty(),
        "--help prints what docs/configuration.md does not name (as `code`):\n\
         flags: {missing_flags:?}\nvariables: {missing_vars:?}"
    );

    let unknown_flags: Vec<String> = flag_tokens(&doc).difference(&flags).cloned().collect();
    let unknown_vars: Vec<String> = catdog_vars(&doc).difference(&vars).cloned().collect();
    assert!(
        unknown_flags.is_empty() && unknown_vars.is_empty(),
        "docs/configuration.md names what no --help prints:\n\
         flags: {unknown_flags:?}\nvariables: {unknown_vars:?}"
    );
}

#[test]
fn the_flag_readers_read_clap_help() {
    let text = "Options:\n      --model <URI>\n          Model [env: MODEL_URI=]\n  \
                -h, --help\n          Print help [env: CATDOG_API_KEY]\n      --ngrok\n";
    assert_eq!(
        defined_flags(text).into_iter().collect::<Vec<_>>(),
        ["--help", "--model", "--ngrok"]
    );
    assert_eq!(
        env_vars(text).into_iter().collect::<Vec<_>>(),
        ["CATDOG_API_KEY", "MODEL_URI"]
    );
    assert_eq!(
        flag_tokens("| --- | `--a-b`, --c; x--d `--e-` —")
            .into_iter()
            .collect::<Vec<_>>(),
        ["--a-b", "--c", "--e"]
    );
    assert_eq!(
        catdog_vars("`CATDOG_X` and MY_CATDOG_Y, CATDOG_Z_2, every `CATDOG_*`.")
            .into_iter()
            .collect::<Vec<_>>(),
        ["CATDOG_X", "CATDOG_Z_2"]
    );
}

// ---------------------------------------------------------------- routes

/// `docs/api.md`'s route table: `METHOD /path` → whether it needs the key.
fn documented_routes(api: &str) -> BTreeMap<String, bool> {
    let mut routes = BTreeMap::new();
    for row in api
        .lines()
        .skip_while(|l| l.trim() != "## Routes")
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let route = cells[1].trim_matches('`');
        let (method, path) = route
            .split_once(' ')
            .unwrap_or_else(|| panic!("a route is `METHOD /path`: {row}"));
        let key = match cells[2] {
            "yes" => true,
            "no" => false,
            other => panic!("the key column says yes or no, not {other:?}: {row}"),
        };
        assert!(
            routes.insert(format!("{method} {path}"), key).is_none(),
            "{route} is listed twice"
        );
    }
    routes
}

#[tokio::test]
async fn the_route_table_is_the_openapi_document() {
    let settings = catdog::Settings::from_env().unwrap();
    let app = catdog::router(catdog::AppState::loading(
        settings.request_limits(),
        settings.access_control().unwrap(),
    ));
    let res = app
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let mut served = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                served.insert(format!("{} {path}", method.to_uppercase()), secured);
            }
        }
    }
    assert!(
        served.len() > 10,
        "the document lists few routes: {served:?}"
    );

    let api = std::fs::read_to_string(workspace().join("docs/api.md")).unwrap();
    let documented = documented_routes(&api);
    let undocumented: Vec<&String> = served
        .keys()
        .filter(|r| !documented.contains_key(*r))
        .collect();
    let unserved: Vec<&String> = documented
        .keys()
        .filter(|r| !served.contains_key(*r))
        .collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "docs/api.md's route table and /openapi.json differ:\n\
         in the document only: {undocumented:?}\nin the table only: {unserved:?}"
    );
    let key_differs: Vec<String> = documented
        .iter()
        .filter(|(route, key)| served[*route] != **key)
        .map(|(route, key)| {
            format!(
                "{route}: the table says key {}",
                if *key { "yes" } else { "no" }
            )
        })
        .collect();
    assert!(
        key_differs.is_empty(),
        "the key column differs from the document's security requirements: {key_differs:?}"
    );
}

// ---------------------------------------------------------------- test modules

#[test]
fn every_test_module_is_described_and_listed() {
    let it = workspace().join("tests/it");
    let main = std::fs::read_to_string(it.join("main.rs")).unwrap();
    let testing = std::fs::read_to_string(workspace().join("docs/testing.md")).unwrap();
    let lines: Vec<&str> = main.lines().collect();
    let mut modules = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) else {
            continue;
        };
        modules.push(name);
        if name == "support" {
            continue;
        }
        assert!(
            i > 0 && lines[i - 1].trim_start().starts_with("//"),
            "tests/it/main.rs: `mod {name};` needs a comment line above it saying what it covers"
        );
        let source = std::fs::read_to_string(it.join(format!("{name}.rs"))).unwrap();
        assert!(
            source.starts_with("//!"),
            "tests/it/{name}.rs starts with a `//!` header saying what it covers"
        );
        assert!(
            testing.contains(&format!("](../tests/it/{name}.rs)")),
            "docs/testing.md lists every test module: {name} is missing"
        );
    }
    assert!(
        modules.len() > 20,
        "the modules were not found: {modules:?}"
    );
}
