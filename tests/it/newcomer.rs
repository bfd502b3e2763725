//! What a newcomer meets after `make setup` / `make install`: the binary finds
//! ONNX Runtime with no variable set, an installed `catdog` works from its
//! own folder, and an error says its cause once.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `BIN predict --model tiny red.jpg`, with no ONNX Runtime variable and the
/// given cache folder (`None`: the user's, where `make setup` puts the library).
fn predict_red(bin: &Path, cache: Option<&Path>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["predict", "--model"])
        .arg(fixture("tiny_torch_nchw.onnx"))
        .arg(fixture("images/red.jpg"))
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("MODEL_URI");
    match cache {
        Some(dir) => cmd.env("CATDOG_CACHE", dir),
        None => &mut cmd,
    };
    cmd.output().unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("catdog-newcomer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_binary_finds_onnx_runtime_where_setup_put_it() {
    // The test command ran scripts/setup.sh, as `make setup` does.
    let out = predict_red(&catdog_bin(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\tcat\t"),
        "{}",
        text(&out.stdout)
    );

    // Nowhere to be found: one clear sentence saying what to run.
    let empty = scratch("empty-cache");
    let out = predict_red(&catdog_bin(), Some(&empty));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("the ONNX Runtime library was not found: run `make setup`"),
        "{err}"
    );
    assert_eq!(err.matches("not found").count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn an_installed_catdog_runs_from_its_own_folder() {
    let prefix = scratch("prefix");
    let out = Command::new("make")
        .args(["--no-print-directory", "-C"])
        .arg(workspace())
        .arg("install-files")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!(
            "PROFILE={}",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        ))
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("installed {}/bin/catdog", prefix.display())));
    let bin = prefix.join("bin/catdog");
    let help = Command::new(&bin).arg("--help").output().unwrap();
    assert!(help.status.success() && text(&help.stdout).contains("Usage: catdog"));
    // No variable and an empty cache: the library beside the install is used.
    let empty = scratch("installed-cache");
    let out = predict_red(&bin, Some(&empty));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\tcat\t"),
        "{}",
        text(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&prefix);
    let _ = std::fs::remove_dir_all(&empty);
}

/// The shared data folder's default is written once, in scripts/data_dir.sh,
/// which the test and benchmark scripts source and [`data_dir`] runs: beside
/// the checkout unless `CATDOG_DATA` says otherwise, whether run or sourced
/// (and sourcing prints nothing, so `source` in a script adds no output).
#[test]
fn the_shared_data_folder_is_beside_the_checkout_unless_catdog_data_names_one() {
    let script = workspace().join("scripts/data_dir.sh");
    let run = |data: Option<&str>, how: &[&str]| {
        let mut cmd = Command::new("bash");
        cmd.args(how).current_dir(std::env::temp_dir());
        match data {
            Some(d) => cmd.env("CATDOG_DATA", d),
            None => cmd.env_remove("CATDOG_DATA"),
        };
        let out = succeed(&mut cmd);
        std::path::PathBuf::from(text(&out.stdout).trim_end_matches('\n'))
    };
    let sourced = format!(
        "said=$(source '{0}'); [ -z \"$said\" ] || exit 3; source '{0}'; printf '%s\\n' \"$CATDOG_DATA\"",
        script.display()
    );
    let checkout_parent = workspace().canonicalize().unwrap();
    let checkout_parent = checkout_parent.parent().unwrap();
    for how in [vec![script.to_str().unwrap()], vec!["-c", sourced.as_str()]] {
        let default = run(None, how.as_slice());
        assert!(
            default.ends_with("shared/data"),
            "{how:?}: {}",
            default.display()
        );
        // `shared/` itself may be absent; the folder it would be in is not.
        let beside = default.parent().and_then(Path::parent).unwrap();
        assert_eq!(
            beside.canonicalize().unwrap(),
            checkout_parent,
            "{how:?}: {}",
            default.display()
        );
        let named = run(Some("/elsewhere/data"), how.as_slice());
        assert_eq!(named, Path::new("/elsewhere/data"), "{how:?}");
    }
    // The tests' own lookup is the script's answer.
    let here = std::env::var("CATDOG_DATA").ok();
    assert_eq!(
        data_dir(),
        run(here.as_deref(), &[script.to_str().unwrap()][..])
    );
}
