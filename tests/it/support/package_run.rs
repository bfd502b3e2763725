//! A Lambda package run as Lambda runs it: in cargo-lambda's emulator, with
//! only the environment Lambda and the template give it, against a model on
//! an S3 test server, over the events of `events/`; and what its answers
//! hold. `cpus` runs the packages on other CPUs with it, `image` the image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::package::{
    function_environment, glibc_needed, invoke_event, packaged_library, shared_package,
    AL2023_GLIBC,
};
use super::*;

/// What a Graviton2 (Neoverse N1) shows in /proc/cpuinfo, for two cores:
/// what ONNX Runtime's cpuinfo expects to parse on aarch64.
pub fn arm_cpuinfo() -> String {
    (0..2)
        .map(|n| {
            format!(
                "processor\t: {n}\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull \
                 sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\n\
                 CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n\
                 CPU part\t: 0xd0c\nCPU revision\t: 1\n\n"
            )
        })
        .collect()
}

/// Debian's aarch64 C and C++ runtimes (libc6-arm64-cross,
/// libstdc++6-arm64-cross): qemu-aarch64's sysroot.
pub const ARM_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// One `sam build` output (the function's folder) and its architecture;
/// or an unpacked image, its bootstrap's folder inside the image's root.
pub struct Package {
    pub arch: &'static str,
    pub dir: PathBuf,
    pub image: Option<Image>,
}

/// What an OCI runtime would run of an unpacked image (`umoci unpack`'s
/// bundle): its root filesystem and its process (`config.json`).
pub struct Image {
    pub root: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

impl Image {
    /// The runtime bundle `umoci unpack` made at `bundle`.
    pub fn unpacked(bundle: &Path) -> Image {
        let config: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let process = &config["process"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap_or_else(|| panic!("{v}"))
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let env = strings(&process["env"])
            .into_iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        Image {
            root: bundle.join("rootfs"),
            args: strings(&process["args"]),
            env,
            cwd: process["cwd"].as_str().unwrap().to_string(),
        }
    }

    /// The image's path `inside`, as this machine sees it.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }
}

/// ELF `e_machine` of x86_64 and aarch64.
pub fn elf_machine(file: &Path) -> u16 {
    let head = std::fs::read(file).unwrap();
    assert_eq!(
        &head[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        file.display()
    );
    u16::from_le_bytes([head[18], head[19]])
}

impl Package {
    /// `ARCH=… sam build --parameter-overrides Architecture=…`, made once per
    /// set of inputs and shared by these tests ([`shared_package`]: an
    /// unchanged checkout reuses the arm64 package, the slowest build of
    /// the suite); checks that both files are built for `arch` and need no
    /// newer glibc than Amazon Linux 2023's.
    /// `tag` names the test's own build folder where no package can be
    /// shared (so that two tests building at once never write into one).
    pub fn build(sam: &Path, cargo_lambda: &Path, arch: &'static str, tag: &str) -> Package {
        let build_dir = shared_package(sam, cargo_lambda, arch, tag);
        let pkg = Package {
            arch,
            dir: build_dir.join("CatdogFunction"),
            image: None,
        };
        let want = if arch == "arm64" { 183 } else { 62 };
        for file in [pkg.bootstrap(), pkg.library()] {
            assert_eq!(
                elf_machine(&file),
                want,
                "{} is not built for {arch}",
                file.display()
            );
            let needs = glibc_needed(&file);
            assert!(
                needs.as_slice() <= AL2023_GLIBC.as_slice(),
                "{} needs glibc {needs:?}, newer than Amazon Linux 2023's {AL2023_GLIBC:?}",
                file.display()
            );
        }
        pkg
    }

    /// The image unpacked at `bundle`, whose entrypoint is its bootstrap.
    pub fn from_image(arch: &'static str, bundle: &Path) -> Package {
        let image = Image::unpacked(bundle);
        let entrypoint = image.path(&image.args[0]);
        Package {
            arch,
            dir: entrypoint.parent().unwrap().to_path_buf(),
            image: Some(image),
        }
    }

    pub fn bootstrap(&self) -> PathBuf {
        self.dir.join("bootstrap")
    }

    /// `LAMBDA_TASK_ROOT` as the bootstrap sees it.
    pub fn task_root(&self) -> PathBuf {
        match &self.image {
            Some(image) => image.cwd.clone().into(),
            None => self.dir.clone(),
        }
    }

    /// The variables the image sets (none for a zip package).
    pub fn image_env(&self) -> Vec<(String, String)> {
        self.image.iter().flat_map(|i| i.env.clone()).collect()
    }

    pub fn library(&self) -> PathBuf {
        packaged_library(&self.dir)
    }

    /// `bootstrap` run by `prefix` (nothing: natively; an emulator) as a
    /// command-line tool, loading the library packaged beside it.
    pub fn under(&self, prefix: &[&str]) -> Command {
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(self.bootstrap());
                cmd
            }
            None => Command::new(self.bootstrap()),
        };
        cmd.env_remove("ORT_DYLIB_PATH")
            .env_remove("AWS_LAMBDA_RUNTIME_API");
        cmd
    }

    /// The command that starts the bootstrap as Lambda would on this
    /// package's CPU: directly on x86_64, under qemu-aarch64 with an ARM
    /// /proc/cpuinfo on arm64, chrooted in an image's root; with
    /// `hide_cpu_lists`, over empty /sys/devices/system/cpu/{possible,present}
    /// as on Lambda arm64.
    pub fn command(&self, scratch: &Path, hide_cpu_lists: bool) -> Command {
        assert!(
            self.image.is_none() || self.arch == "x86_64",
            "an arm64 image runs under no emulator here: qemu is not inside its root"
        );
        let mounts = self.mounts(scratch, hide_cpu_lists);
        let program = self.program();
        if mounts.is_empty() {
            let mut cmd = Command::new(&program[0]);
            cmd.args(&program[1..]);
            return cmd;
        }
        // sh binds each pair, then becomes the program: the same process, so
        // its pid is the bootstrap's (or qemu's, whose threads are the guest's).
        let mut script = String::from("set -e\n");
        for (i, _) in mounts.iter().enumerate() {
            script += &format!("mount --bind \"${}\" \"${}\"\n", 2 * i + 1, 2 * i + 2);
        }
        script += &format!("shift {}\nexec \"$@\"\n", 2 * mounts.len());
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"]);
        for (from, to) in &mounts {
            cmd.arg(from).arg(to);
        }
        cmd.args(&program);
        cmd
    }

    /// What is bind-mounted where before the bootstrap starts. An image's
    /// root gets what Lambda mounts into every environment, and every path
    /// after that is the image's.
    fn mounts(&self, scratch: &Path, hide_cpu_lists: bool) -> Vec<(PathBuf, PathBuf)> {
        let mut mounts = Vec::new();
        let at = |path: &str| match &self.image {
            Some(image) => image.path(path),
            None => PathBuf::from(path),
        };
        if let Some(image) = &self.image {
            for system in ["proc", "dev", "sys"] {
                std::fs::create_dir_all(image.path(system)).unwrap();
                mounts.push((PathBuf::from("/").join(system), image.path(system)));
            }
        }
        if self.arch == "arm64" {
            let cpuinfo = scratch.join("cpuinfo");
            std::fs::write(&cpuinfo, arm_cpuinfo()).unwrap();
            mounts.push((cpuinfo, at("/proc/cpuinfo")));
        }
        if hide_cpu_lists {
            let empty = scratch.join("empty");
            std::fs::write(&empty, "").unwrap();
            for list in ["possible", "present"] {
                mounts.push((
                    empty.clone(),
                    at(&format!("/sys/devices/system/cpu/{list}")),
                ));
            }
        }
        mounts
    }

    /// The bootstrap's command line: chrooted into an image (then chdir,
    /// then exec: still the same process), under qemu on arm64.
    fn program(&self) -> Vec<PathBuf> {
        let mut program: Vec<PathBuf> = Vec::new();
        if let Some(image) = &self.image {
            program.push("unshare".into());
            program.push(format!("--root={}", image.root.display()).into());
            program.push(format!("--wd={}", image.cwd).into());
        }
        if self.arch == "arm64" {
            program.extend(["qemu-aarch64".into(), "-L".into(), ARM_SYSROOT.into()]);
        }
        match &self.image {
            Some(image) => program.extend(image.args.iter().map(PathBuf::from)),
            None => program.push(self.bootstrap()),
        }
        program
    }
}

/// What running a package takes: the SAM CLI and cargo-lambda (to build
/// it, and its emulator to run it) and a mount namespace (the bind mounts
/// above are root's right; CI runs as root), or why a test cannot run.
pub fn package_tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(sam) = super::package::sam_cli() else {
        skip_or_fail(test, "the SAM CLI is not installed (make test installs it)");
        return None;
    };
    let cargo_lambda = crate::support::emulator::cargo_lambda();
    if !super::package::runs(&cargo_lambda, &["lambda", "--version"]) {
        skip_or_fail(
            test,
            "cargo-lambda is not installed (make test installs it)",
        );
        return None;
    }
    let namespace = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .stderr(Stdio::null())
        .status();
    if !namespace.is_ok_and(|s| s.success()) {
        skip_or_fail(
            test,
            "`unshare -m` cannot make a mount namespace here (these tests run as root)",
        );
        return None;
    }
    Some((sam, cargo_lambda))
}

/// The model and its settings a run uses.
pub struct ModelUnderTest {
    pub key: &'static str,
    pub env: &'static [(&'static str, &'static str)],
}

pub const TINY: ModelUnderTest = ModelUnderTest {
    key: "models/tiny.onnx",
    env: &[],
};
/// The shared MobileNetV2 carries no preprocessing metadata; it is torch's.
pub const MOBILENET: ModelUnderTest = ModelUnderTest {
    key: "models/mobilenetv2-int8.onnx",
    env: &[("MODEL_PREPROCESSING", "torch")],
};

/// A bootstrap running under the emulator: its answers, log and threads.
pub struct Run {
    pub answers: Vec<(String, Value)>,
    pub log: String,
    /// ONNX Runtime's intra-op pool threads once it has answered.
    pub threads: usize,
    /// `/sys/devices/system/cpu/possible` as the process saw it.
    pub possible: String,
    /// The process's root folder (`/`, or an image's, chrooted).
    pub root: PathBuf,
}

/// Runs `pkg` under cargo-lambda's emulator in an environment holding only
/// what Lambda and the template give it, the model `model` on the S3 server
/// at `endpoint`, and invokes each event.
pub async fn run(
    pkg: &Package,
    endpoint: &str,
    model: &ModelUnderTest,
    events: &[(String, Value)],
    hide_cpu_lists: bool,
    results_prefix: &str,
) -> Run {
    let (_emulator, port) = crate::support::emulator::start().await;
    // The template requires the model's digest, as `catdog upload` prints it.
    let stored = s3_test_client(endpoint)
        .get_object()
        .bucket("catdog-models")
        .key(model.key)
        .send()
        .await
        .unwrap();
    let digest =
        catdog::model::source::sha256_hex(&stored.body.collect().await.unwrap().into_bytes());
    let scratch = std::env::temp_dir().join(format!(
        "catdog-package-run-{}-{}-{}",
        std::process::id(),
        pkg.arch,
        results_prefix.trim_end_matches('/')
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let log_path = scratch.join("bootstrap.log");
    let mut cmd = pkg.command(&scratch, hide_cpu_lists);
    let boot = Proc {
        child: cmd
            .env_clear()
            .envs(pkg.image_env())
            .envs(crate::support::emulator::runtime_env(port))
            .env("LAMBDA_TASK_ROOT", pkg.task_root())
            .env("_HANDLER", "bootstrap")
            .env("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin")
            .envs(function_environment(&[
                ("ModelBucket", "catdog-models"),
                ("ModelKey", model.key),
                ("ModelSha256", &digest),
                ("UploadsBucketName", "uploads"),
                ("ResultsPrefix", results_prefix),
            ]))
            // s3s-fs keeps no object tags (tests/it/s3_events.rs checks tags
            // on moto): records only, one prefix per run.
            .env("CATDOG_RESULTS", "record")
            .envs(model.env.iter().copied())
            .envs(s3_env(endpoint))
            .current_dir(&pkg.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start the packaged bootstrap"),
        name: format!("{} bootstrap", pkg.arch),
    };
    let cargo_lambda = crate::support::emulator::cargo_lambda();
    let mut answers = Vec::new();
    for (name, event) in events {
        let file = scratch.join(name);
        std::fs::write(&file, serde_json::to_vec(event).unwrap()).unwrap();
        let answer = invoke_event(&cargo_lambda, port, &file).await;
        answers.push((name.clone(), answer));
    }
    let pool_threads = || {
        std::fs::read_dir(format!("/proc/{}/task", boot.child.id()))
            .unwrap()
            .filter(|t| {
                let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
                comm.is_ok_and(|c| c.trim_end() == catdog::model::session::INTRA_OP_THREAD_NAME)
            })
            .count()
    };
    // A model packed in the background (fp32 from 3,538 MB) has a second
    // session, with its own pool, until the packed one is swapped in and
    // the plain one dropped: count the pool once that is done.
    let one_pool = std::thread::available_parallelism().unwrap().get() - 1;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut threads = pool_threads();
    while threads != one_pool && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        threads = pool_threads();
    }
    // What the process sees, through its own mount namespace.
    let possible = std::fs::read_to_string(format!(
        "/proc/{}/root/sys/devices/system/cpu/possible",
        boot.child.id()
    ))
    .unwrap();
    let root = std::fs::read_link(format!("/proc/{}/root", boot.child.id())).unwrap();
    drop(boot);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&scratch);
    Run {
        answers,
        log,
        threads,
        possible,
        root,
    }
}

/// Every `{label, scores}` an answer holds, wherever it is (an HTTP body, a
/// Batch Operations result string, a record), in order.
pub fn predictions(v: &Value) -> Vec<(String, BTreeMap<String, f32>)> {
    let mut out = Vec::new();
    collect_predictions(v, &mut out);
    out
}

fn collect_predictions(v: &Value, out: &mut Vec<(String, BTreeMap<String, f32>)>) {
    match v {
        Value::Object(map) => {
            if let (Some(Value::String(label)), Some(Value::Object(scores))) =
                (map.get("label"), map.get("scores"))
            {
                let scores = scores
                    .iter()
                    .map(|(k, s)| (k.clone(), s.as_f64().unwrap() as f32))
                    .collect();
                out.push((label.clone(), scores));
            }
            for value in map.values() {
                collect_predictions(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_predictions(i, out)),
        Value::String(s) if s.starts_with('{') || s.starts_with('[') => {
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                collect_predictions(&inner, out);
            }
        }
        _ => {}
    }
}

/// The predictions of the event `name`: in its answer (HTTP bodies, Batch
/// results) and in the record its object got (S3, SQS, EventBridge, Batch);
/// together never empty.
pub fn event_predictions(
    answers: &[(String, Value)],
    records: &[(String, Value)],
    name: &str,
) -> Vec<(String, BTreeMap<String, f32>)> {
    let in_event = answers.iter().chain(records).filter(|(n, _)| n == name);
    in_event.flat_map(|(_, v)| predictions(v)).collect()
}

/// Puts the photo the events name at each S3 event's own key in `uploads`.
pub async fn put_event_photos(endpoint: &str, events: &[(String, Value)]) {
    let photo = event_photo();
    for (name, _) in events {
        let key = format!("incoming/{}/my cat.jpg", name.trim_end_matches(".json"));
        s3_put(endpoint, "uploads", &key, photo.clone()).await;
    }
}

/// Runs `pkg` over `events` (see [`run`]), its records written under a
/// prefix of its own (`tag`), and reads them back.
pub async fn run_with_records(
    pkg: &Package,
    endpoint: &str,
    model: &ModelUnderTest,
    events: &[(String, Value)],
    tag: &str,
) -> (Run, Vec<(String, Value)>) {
    let prefix = format!("results-{tag}/");
    let run = run(pkg, endpoint, model, events, false, &prefix).await;
    let records = records(endpoint, &prefix, events).await;
    (run, records)
}

/// Asserts two runs over the same events answered alike, event by event:
/// the same statuses, the same labels, scores within `tol`, as many
/// records. Returns each event's name, predictions and largest difference.
pub fn assert_runs_agree(
    what: &str,
    (expected, expected_records): &(Run, Vec<(String, Value)>),
    (actual, actual_records): &(Run, Vec<(String, Value)>),
    tol: f32,
) -> Vec<(String, usize, f32)> {
    let mut out = Vec::new();
    for ((name, e), (_, a)) in expected.answers.iter().zip(&actual.answers) {
        assert_eq!(
            e.get("statusCode"),
            a.get("statusCode"),
            "{what} {name}: expected {e}\nactual {a}\nits log:\n{}",
            actual.log
        );
        let (pe, pa) = (
            event_predictions(&expected.answers, expected_records, name),
            event_predictions(&actual.answers, actual_records, name),
        );
        let diff = assert_same_predictions(&format!("{what} {name}"), &pe, &pa, tol);
        out.push((name.clone(), pe.len(), diff));
    }
    assert_eq!(
        expected_records.len(),
        actual_records.len(),
        "{what}: records written"
    );
    out
}

/// Asserts two runs' predictions agree: labels equal, scores within `tol`;
/// returns the largest score difference.
pub fn assert_same_predictions(
    what: &str,
    expected: &[(String, BTreeMap<String, f32>)],
    actual: &[(String, BTreeMap<String, f32>)],
    tol: f32,
) -> f32 {
    let mut largest = 0f32;
    assert!(
        !expected.is_empty(),
        "{what}: no prediction in the expected answer"
    );
    assert_eq!(
        expected.len(),
        actual.len(),
        "{what}: expected {expected:?}\nactual {actual:?}"
    );
    for ((le, se), (la, sa)) in expected.iter().zip(actual) {
        assert_eq!(
            le, la,
            "{what}: labels differ: expected {se:?}, actual {sa:?}"
        );
        assert_eq!(
            se.keys().collect::<Vec<_>>(),
            sa.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (k, e) in se {
            let a = sa[k];
            largest = largest.max((e - a).abs());
            assert!(
                (e - a).abs() <= tol,
                "{what}: score {k} {e} expected, {a} actual (tolerance {tol})"
            );
        }
    }
    largest
}

/// The events of `events/`, the S3 ones each about its own copy of the
/// photo (`incoming/<event>/my cat.jpg`, its key encoded as the event
/// encodes it), so each is classified rather than answered from the record
/// the one before wrote.
pub fn events() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(workspace().join("events")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let stem = name.trim_end_matches(".json");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace(
                "incoming/my%20cat.jpg",
                &format!("incoming/{stem}/my%20cat.jpg"),
            )
            .replace(
                "incoming/my+cat.jpg",
                &format!("incoming/{stem}/my+cat.jpg"),
            );
        // An SQS body is the S3 notification as a JSON string.
        let text = text.replace(
            "incoming/my%2520cat.jpg",
            &format!("incoming/{stem}/my%2520cat.jpg"),
        );
        out.push((name, serde_json::from_str(&text).unwrap()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The event of `events` named `name`, alone.
pub fn only(events: Vec<(String, Value)>, name: &str) -> Vec<(String, Value)> {
    let picked: Vec<_> = events.into_iter().filter(|(n, _)| n == name).collect();
    assert_eq!(picked.len(), 1, "events/{name}");
    picked
}

/// s3s-fs holding each model file at its key in `catdog-models`.
pub async fn s3_with_models(
    test: &str,
    models: &[(&ModelUnderTest, PathBuf)],
) -> Option<(S3Sim, String)> {
    let (sim, endpoint) = s3s(test, S3SimOptions::default()).await?;
    for (model, file) in models {
        s3_put(
            &endpoint,
            "catdog-models",
            model.key,
            std::fs::read(file).unwrap(),
        )
        .await;
    }
    Some((sim, endpoint))
}

/// The photo the HTTP events carry, which the S3 events name.
pub fn event_photo() -> Vec<u8> {
    let v: Value = serde_json::from_slice(
        &std::fs::read(workspace().join("events/function-url.json")).unwrap(),
    )
    .unwrap();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v["body"].as_str().unwrap())
        .unwrap()
}

/// Reads what a run wrote under `prefix` for each S3 event's object.
pub async fn records(
    endpoint: &str,
    prefix: &str,
    events: &[(String, Value)],
) -> Vec<(String, Value)> {
    let s3 = s3_test_client(endpoint);
    let mut out = Vec::new();
    for (name, _) in events {
        let stem = name.trim_end_matches(".json");
        let key = format!("{prefix}incoming/{stem}/my cat.jpg.json");
        if let Ok(obj) = s3.get_object().bucket("uploads").key(&key).send().await {
            let bytes = obj.body.collect().await.unwrap().into_bytes();
            out.push((name.clone(), serde_json::from_slice(&bytes).unwrap()));
        }
    }
    out
}
