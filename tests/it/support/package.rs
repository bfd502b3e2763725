//! What `sam build` packages, and running it as Lambda would: the SAM CLI,
//! the build itself, the glibc an ELF file needs, the environment the
//! template gives the function, and `cargo lambda invoke`. Shared by
//! `tests/it/deploy.rs` (the x86_64 package as it ships) and
//! `tests/it/cpus.rs` (both architectures, on other CPUs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{python, workspace};

/// The template as CloudFormation reads it (cfn-lint's own YAML decoder,
/// intrinsic functions as `{"Ref": …}` / `{"Fn::If": …}`), as JSON.
pub fn decoded_template() -> serde_json::Value {
    let script = r#"
import json, sys
from cfnlint.decode import decode
tpl, errors = decode(sys.argv[1])
if errors:
    sys.exit(str(errors))
print(json.dumps(tpl, default=str))
"#;
    let out = Command::new(python())
        .args(["-c", script, "template.yaml"])
        .current_dir(workspace())
        .output()
        .expect("run cfn-lint's decoder");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Amazon Linux 2023's glibc, what `provided.al2023` runs the bootstrap with.
pub const AL2023_GLIBC: [u32; 2] = [2, 34];

/// cargo's target folder for this checkout (`CARGO_TARGET_DIR`, else `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| workspace().join(d))
        .unwrap_or_else(|| workspace().join("target"))
}

/// The folder scripts/setup.sh keeps its tools in, kept across checkouts:
/// `CATDOG_CACHE`, else `$XDG_CACHE_HOME/catdog`, else `~/.cache/catdog`.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("CATDOG_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("catdog")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/catdog")))
}

/// The SAM CLI: `$CATDOG_SAM`, else where `scripts/setup_sam.sh` installs it
/// (`make test` runs it), else `sam` on PATH; `None` if none runs.
pub fn sam_cli() -> Option<PathBuf> {
    let candidates = std::env::var_os("CATDOG_SAM")
        .map(PathBuf::from)
        .into_iter()
        .chain(cache_dir().map(|c| c.join("venv-sam/bin/sam")))
        .chain([PathBuf::from("sam")]);
    candidates.into_iter().find(|sam| runs(sam, &["--version"]))
}

/// Whether `tool ARGS` (a version query) runs and succeeds.
pub fn runs(tool: &Path, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .env("SAM_CLI_TELEMETRY", "0")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The highest `GLIBC_x.y[.z]` symbol version an ELF file needs (`objdump -T`).
pub fn glibc_needed(file: &Path) -> Vec<u32> {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(file)
        .output()
        .expect("run objdump (binutils, which Rust's linker needs too)");
    assert!(
        out.status.success(),
        "objdump -T {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            v.split('.')
                .map(|n| n.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()
        })
        .max()
        .unwrap_or_else(|| panic!("{} names no GLIBC_ version", file.display()))
}

/// A CloudFormation condition or rule function (`Ref`, `Fn::Equals`,
/// `Fn::Not`, `Fn::And`, `Fn::Or`, and `Condition` naming one of the
/// template's) evaluated as CloudFormation does, over these parameter
/// values (else the template's defaults).
pub fn evaluate(
    v: &serde_json::Value,
    t: &serde_json::Value,
    given: &serde_json::Value,
) -> serde_json::Value {
    use serde_json::Value;
    let Some((f, args)) = v.as_object().and_then(|o| o.iter().next()) else {
        return v.clone();
    };
    let arg = |i: usize| evaluate(&args[i], t, given);
    let all = || {
        args.as_array()
            .unwrap()
            .iter()
            .map(|a| evaluate(a, t, given))
    };
    match f.as_str() {
        "Ref" => {
            let name = args.as_str().unwrap();
            given
                .get(name)
                .or_else(|| t["Parameters"][name].get("Default"))
                .unwrap_or_else(|| panic!("no value for {name}"))
                .clone()
        }
        "Fn::Equals" => Value::Bool(arg(0) == arg(1)),
        "Fn::Not" => Value::Bool(!arg(0).as_bool().unwrap()),
        "Fn::And" => Value::Bool(all().all(|b| b.as_bool().unwrap())),
        "Fn::Or" => Value::Bool(all().any(|b| b.as_bool().unwrap())),
        "Condition" => evaluate(&t["Conditions"][args.as_str().unwrap()], t, given),
        // A CommaDelimitedList's value is its text, members between commas.
        "Fn::EachMemberEquals" => {
            let list = arg(0);
            let value = arg(1);
            Value::Bool(
                list.as_str()
                    .unwrap_or_else(|| panic!("a list parameter's text: {list}"))
                    .split(',')
                    .all(|member| member == value.as_str().unwrap()),
            )
        }
        other => panic!("rule function {other} is not evaluated here"),
    }
}

/// Resolves a template value (a literal, `!Ref P`, `!Sub "…${P}…"` or
/// `!If [Condition, a, b]`) with the parameter values given, else the
/// template's defaults; `None` for `AWS::NoValue` (the key is left out).
fn resolve(
    value: &serde_json::Value,
    template: &serde_json::Value,
    given: &[(&str, &str)],
) -> Option<String> {
    let param = |name: &str| -> String {
        if let Some((_, v)) = given.iter().find(|(k, _)| *k == name) {
            return v.to_string();
        }
        match &template["Parameters"][name]["Default"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => panic!("no value for template parameter {name}"),
            other => other.to_string(),
        }
    };
    Some(match value {
        serde_json::Value::String(s) => s.clone(),
        v if v["Ref"] == "AWS::NoValue" => return None,
        v if v["Ref"].is_string() => param(v["Ref"].as_str().unwrap()),
        v if v["Fn::If"].is_array() => {
            let [condition, then, otherwise] = v["Fn::If"].as_array().unwrap().as_slice() else {
                panic!("Fn::If takes three values: {v}");
            };
            let given_json: serde_json::Map<String, serde_json::Value> = given
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
            let holds = evaluate(
                &serde_json::json!({"Condition": condition}),
                template,
                &serde_json::Value::Object(given_json),
            );
            let chosen = if holds.as_bool().unwrap() {
                then
            } else {
                otherwise
            };
            return resolve(chosen, template, given);
        }
        v if v["Fn::Sub"].is_string() => {
            let mut out = String::new();
            let mut rest = v["Fn::Sub"].as_str().unwrap();
            while let Some(at) = rest.find("${") {
                let end = rest[at..].find('}').expect("unclosed ${ in Fn::Sub") + at;
                out.push_str(&rest[..at]);
                out.push_str(&param(&rest[at + 2..end]));
                rest = &rest[end + 1..];
            }
            out + rest
        }
        other => panic!("template value this test cannot resolve: {other}"),
    })
}

/// The environment variables template.yaml gives the function, for these
/// parameter values.
pub fn function_environment(given: &[(&str, &str)]) -> Vec<(String, String)> {
    let t = decoded_template();
    let vars = t["Resources"]["CatdogFunction"]["Properties"]["Environment"]["Variables"]
        .as_object()
        .expect("the function's Environment.Variables");
    vars.iter()
        .filter_map(|(k, v)| Some((k.clone(), resolve(v, &t, given)?)))
        .collect()
}

/// `sam build` as a user runs it from the checkout (samconfig.toml: build in
/// the source folder, so cargo's target/ is reused), with the output in
/// `build_dir`; SAM's telemetry off, no standard input, no container.
pub fn sam_build(sam: &Path, cargo_lambda: &Path, build_dir: &Path, arch: &str) -> Duration {
    // cargo-lambda first on PATH, as `make test` has it: the make target
    // builds with it (zig, Amazon Linux's glibc) when it finds it.
    let mut path =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    if let Some(dir) = cargo_lambda.parent().filter(|d| !d.as_os_str().is_empty()) {
        path.insert(0, dir.to_path_buf());
    }
    let mut cmd = Command::new(sam);
    // The Makefile picks the target from ARCH; the template's parameter
    // sets the function's architecture to match (docs/deploy.md).
    cmd.args(["build", "--build-dir"])
        .arg(build_dir)
        .args(["--parameter-overrides", &format!("Architecture={arch}")])
        .env("ARCH", arch)
        .current_dir(workspace())
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("SAM_CLI_TELEMETRY", "0")
        // Incremental for the catdog crate only (cargo never builds registry
        // crates incrementally): the release flags stay a user's (the
        // manifest's 16 codegen units, cargo-lambda's panic=abort and
        // target-cpu), and a rebuild after a one-line change redoes only the
        // units it touched (x86_64 on 2 cores: 36 s, against 98 s with one
        // unit; seconds when no code changed).
        .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "true")
        .stdin(Stdio::null());
    // What cargo sets for this test binary alone is no user's environment.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_MANIFEST_"]
            .iter()
            .any(|p| key.starts_with(p))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
    // One `sam build` at a time in this checkout: they share its source
    // folder (build_in_source), target/ and zig's caches, and cargo's lock
    // would make them wait for each other anyway.
    std::fs::create_dir_all(target_dir()).unwrap();
    let lock = std::fs::File::create(target_dir().join("sam-build.lock")).unwrap();
    lock.lock().expect("lock target/sam-build.lock");
    let started = Instant::now();
    let out = cmd.output().expect("run sam build");
    let took = started.elapsed();
    drop(lock);
    assert!(
        out.status.success(),
        "sam build failed after {took:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// How many packages of each architecture [`shared_package`] keeps (the most
/// recently used): a few, for switching between branches.
const PACKAGES_KEPT: usize = 3;

/// The Lambda package `ARCH=arch sam build` makes of this checkout as it is
/// (the build folder: `CatdogFunction/`, `PreTrafficHook/`), built once per
/// set of inputs and shared: by every test that runs it (each test is a
/// process of its own under nextest, so "once" is a stamp file under a file
/// lock, not a static) and across checkouts and reruns on this machine
/// (kept in the cache folder, `packages/ARCH-KEY/`, as the tools are). KEY
/// hashes everything the build reads ([`package_inputs`]); a change to any
/// of it is a new key and a new build. Read-only once made: tests run the
/// bootstrap from it while another test may be looking it up.
///
/// Where no key can be made (not a git checkout) or `CATDOG_PACKAGE_CACHE=0`,
/// the test builds its own in `target/sam-build-TAG-ARCH` (cargo's target/
/// makes a second build of unchanged sources take seconds).
pub fn shared_package(sam: &Path, cargo_lambda: &Path, arch: &str, tag: &str) -> PathBuf {
    let cache_off = std::env::var_os("CATDOG_PACKAGE_CACHE").is_some_and(|v| v == "0");
    let keyed = (!cache_off)
        .then(|| package_inputs(cargo_lambda, arch))
        .flatten()
        .zip(cache_dir());
    let Some((inputs, cache)) = keyed else {
        let build_dir = target_dir().join(format!("sam-build-{tag}-{arch}"));
        let took = sam_build(sam, cargo_lambda, &build_dir, arch);
        eprintln!("sam build ({arch}) took {:.1} s", took.as_secs_f64());
        return build_dir;
    };
    let key = catdog::model::source::sha256_hex(&inputs);
    let key = &key[..32];
    let store = cache.join("packages");
    let dir = store.join(format!("{arch}-{key}"));
    let stamp = dir.join(".complete");
    if !stamp.is_file() {
        std::fs::create_dir_all(&store).unwrap();
        let lock = std::fs::File::create(store.join(format!("{arch}.lock"))).unwrap();
        lock.lock().expect("lock the package cache");
        // Another test may have built it while this one waited.
        if !stamp.is_file() {
            // Built beside its final place, renamed there whole: a package
            // never shows its name half-made.
            let part = store.join(format!(".{arch}-{key}.part{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&part);
            let took = sam_build(sam, cargo_lambda, &part, arch);
            eprintln!(
                "sam build ({arch}) took {:.1} s; kept as {}",
                took.as_secs_f64(),
                dir.display()
            );
            std::fs::write(part.join(".complete"), format!("{arch}-{key}\n")).unwrap();
            let _ = std::fs::remove_dir_all(&dir); // a stamp-less leftover
            std::fs::rename(&part, &dir).unwrap();
            prune_packages(&store, arch, &dir);
        }
        drop(lock);
    } else {
        eprintln!(
            "sam build ({arch}): reusing {}, built from the same inputs",
            dir.display()
        );
    }
    // Most recently used: the last to go when old packages are pruned.
    let _ = std::fs::File::options()
        .append(true)
        .open(&stamp)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    dir
}

/// Whether the release build never reads this tracked file: the tests (but
/// their manifest, a workspace member's) and their runner's settings
/// (`.config/`, `.ci/`), the benchmarks, the fuzz crate (no member), the
/// notebook, the sample events and docs/ (read by tests alone: `function/`
/// includes `docs/api.md` and `events/` only under `cfg(test)`), the model
/// recipes, the image's Dockerfile, clippy's settings, and the prose at the
/// top, and the scripts the build never runs. So a change to any of them
/// reuses both packages; a change to the code or the build files
/// (manifests, lock, Makefile, template, scripts/setup.sh and the
/// scripts/tools.sh it sources, tools/) does not.
fn built_from_nothing_here(path: &[u8]) -> bool {
    let under = |dir: &[u8]| path.starts_with(dir);
    let top_level_prose = !path.contains(&b'/') && path.ends_with(b".md");
    let dirs: [&[u8]; 8] = [
        b"bench/",
        b"fuzz/",
        b"notebook/",
        b"events/",
        b"docs/",
        b"models/",
        b".config/",
        b".ci/",
    ];
    let files: [&[u8]; 4] = [
        b"Dockerfile",
        b".dockerignore",
        b"clippy.toml",
        b".gitignore",
    ];
    // The Makefile's package targets run scripts/setup.sh, which sources
    // scripts/tools.sh; the other scripts (tests, lint, image, locks) are
    // never run by the build.
    let script_not_built_with =
        under(b"scripts/") && path != b"scripts/setup.sh" && path != b"scripts/tools.sh";
    (under(b"tests/") && path != b"tests/Cargo.toml")
        || script_not_built_with
        || dirs.iter().any(|dir| under(dir))
        || files.contains(&path)
        || top_level_prose
}

/// Everything a `sam build` of this checkout reads, as one byte string;
/// `None` where the file list cannot be had (not a git checkout, no git).
/// Every file git tracks or would (untracked, not ignored), with its name,
/// except what the package is not built from ([`built_from_nothing_here`]);
/// so the sources, Cargo.lock and Cargo.toml files,
/// the Makefile targets and template that `sam build` runs, scripts/setup.sh
/// and the tool locks (ONNX Runtime, cargo-lambda and zig, the SAM CLI);
/// plus the toolchain (`rustc -vV`, `cargo -V`, cargo-lambda's version), the
/// variables that change a cargo build, and the user's cargo config.
pub fn package_inputs(cargo_lambda: &Path, arch: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let ws = workspace();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&ws)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut files: Vec<&[u8]> = listed
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .filter(|p| !built_from_nothing_here(p))
        .collect();
    files.sort();
    files.dedup();
    let mut inputs = format!("arch {arch}\n").into_bytes();
    // `\0name\0length\0content` each: no two lists give the same bytes.
    let mut add = |name: &[u8], content: Option<Vec<u8>>| {
        inputs.push(0);
        inputs.extend_from_slice(name);
        match content {
            Some(bytes) => {
                inputs.extend_from_slice(format!("\0{}\0", bytes.len()).as_bytes());
                inputs.extend_from_slice(&bytes);
            }
            None => inputs.extend_from_slice(b"\0absent\0"),
        }
    };
    for file in files {
        let path = ws.join(std::ffi::OsStr::from_bytes(file));
        add(file, std::fs::read(path).ok());
    }
    for (program, args) in [
        (PathBuf::from("rustc"), &["-vV"][..]),
        (PathBuf::from("cargo"), &["-V"][..]),
        (cargo_lambda.to_path_buf(), &["lambda", "--version"][..]),
    ] {
        let out = Command::new(&program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        add(program.as_os_str().as_bytes(), Some(out.stdout));
    }
    let mut vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            k.starts_with("RUSTFLAGS")
                || k.starts_with("RUSTC")
                || k.starts_with("CARGO_ENCODED_RUSTFLAGS")
                || k.starts_with("CARGO_BUILD_")
                || k.starts_with("CARGO_PROFILE_")
                || k.starts_with("CARGO_TARGET_")
                || k.starts_with("CARGO_ZIGBUILD")
                || k.starts_with("ZIG")
        })
        .collect();
    vars.sort();
    for (k, v) in vars {
        add(k.as_bytes(), Some(v.as_bytes().to_vec()));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    for config in ["config.toml", "config"] {
        if let Some(file) = cargo_home.as_ref().map(|d| d.join(config)) {
            add(file.as_os_str().as_bytes(), std::fs::read(&file).ok());
        }
    }
    Some(inputs)
}

/// Removes all but the [`PACKAGES_KEPT`] most recently used packages of
/// `arch` (never `current`), and half-made ones a failed build left (the
/// caller holds `arch`'s lock: no build of `arch` is under way).
fn prune_packages(store: &Path, arch: &str, current: &Path) {
    let part_prefix = format!(".{arch}-");
    for entry in std::fs::read_dir(store).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&part_prefix) && name.contains(".part") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let mut made: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != current)
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{arch}-")))
        })
        .filter_map(|p| {
            let used = std::fs::metadata(p.join(".complete"))
                .ok()?
                .modified()
                .ok()?;
            Some((used, p))
        })
        .collect();
    made.sort();
    let surplus = made.len().saturating_sub(PACKAGES_KEPT - 1);
    for (_, old) in made.into_iter().take(surplus) {
        let _ = std::fs::remove_dir_all(old);
    }
}

/// `cargo lambda invoke` of the function `_` with an event file: Lambda's raw
/// answer (for an HTTP event, `statusCode`, `headers`, `body`, …).
pub async fn invoke_event(cargo_lambda: &Path, port: u16, event: &Path) -> serde_json::Value {
    let call = tokio::process::Command::new(cargo_lambda)
        .args(["lambda", "invoke", "_", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string(), "--data-file"])
        .arg(event)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), call)
        .await
        .expect("cargo lambda invoke answered within 120 s")
        .expect("run cargo lambda invoke");
    assert!(
        out.status.success(),
        "cargo lambda invoke failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "invoke answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The one ONNX Runtime library a `sam build` packaged beside the bootstrap
/// in `dir` (asserted: exactly one).
pub fn packaged_library(dir: &Path) -> PathBuf {
    let libs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    assert_eq!(
        libs.len(),
        1,
        "one libonnxruntime.so beside the bootstrap in {}: {libs:?}",
        dir.display()
    );
    libs[0].clone()
}
