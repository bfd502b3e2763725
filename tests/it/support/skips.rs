//! The one rule for a test that cannot find what it needs (the shared photos,
//! an optional tool): it fails, unless the run opts in with
//! `CATDOG_ALLOW_SKIPS=1`. Then it is skipped, and the skip is recorded as a
//! line `TEST: reason` in the skip log, which `make test` sums up at the end.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The variable that lets a run skip tests whose data or tools are missing.
pub const ALLOW_SKIPS: &str = "CATDOG_ALLOW_SKIPS";

/// Whether this run allows skips (`CATDOG_ALLOW_SKIPS=1`).
pub fn allow_skips() -> bool {
    std::env::var(ALLOW_SKIPS).is_ok_and(|v| v == "1")
}

/// Where skips are recorded: `$CATDOG_SKIP_LOG`, else `target/test-skips.txt`
/// in the workspace.
pub fn skip_log() -> PathBuf {
    std::env::var_os("CATDOG_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::workspace().join("target/test-skips.txt"))
}

/// A test (or a part of one, named so) cannot run for `reason`: panics, unless
/// the run allows skips; then prints and records the skip and returns, so the
/// caller leaves that part out.
#[track_caller]
pub fn skip_or_fail(test: &str, reason: &str) {
    skip_or_fail_with(test, reason, allow_skips(), &skip_log());
}

/// [`skip_or_fail`] with the opt-in and the log given, not read from the
/// environment.
#[track_caller]
pub fn skip_or_fail_with(test: &str, reason: &str, allow_skips: bool, log: &Path) {
    // One line per skip, whatever the reason holds; the name ends at ": ".
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (test, reason) = (one_line(test).replace(": ", " - "), one_line(reason));
    if !allow_skips {
        panic!(
            "{test}: cannot run: {reason}. A test whose data or tools are missing fails; \
             set {ALLOW_SKIPS}=1 to skip it instead (the run then lists what it skipped)"
        );
    }
    eprintln!("skipped: {test}: {reason}");
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // O_APPEND and one write per line: test binaries running side by side
    // add their lines without overwriting each other's.
    let line = format!("{test}: {reason}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!(
            "{test}: skipped, but the skip could not be recorded in {}: {e}",
            log.display()
        );
    }
}

/// The shared data folder `dir` if it holds `catsdogs/`; else
/// [`skip_or_fail_with`] (a panic naming the folder, `CATDOG_DATA` and
/// `CATDOG_ALLOW_SKIPS=1`, or `None` with the skip recorded).
#[track_caller]
pub fn shared_data_at(test: &str, dir: &Path, allow_skips: bool, log: &Path) -> Option<PathBuf> {
    if dir.join("catsdogs").is_dir() {
        return Some(dir.to_path_buf());
    }
    skip_or_fail_with(
        test,
        &format!(
            "shared data folder {} is absent (it needs catsdogs/ and models/; \
             set CATDOG_DATA to where it is)",
            dir.display()
        ),
        allow_skips,
        log,
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("catdog-skips-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    #[test]
    fn missing_shared_data_fails_without_the_opt_in() {
        let dir = scratch("fail");
        let missing = dir.join("no-such-data");
        let log = dir.join("skips.txt");
        let err = std::panic::catch_unwind(|| shared_data_at("some_test", &missing, false, &log))
            .expect_err("missing data must fail the test without CATDOG_ALLOW_SKIPS=1");
        let msg = panic_text(err);
        assert!(msg.contains("some_test"), "{msg}");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("CATDOG_DATA"), "{msg}");
        assert!(msg.contains("CATDOG_ALLOW_SKIPS=1"), "{msg}");
        assert!(!log.exists(), "a failure is not a skip: nothing recorded");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_shared_data_is_skipped_and_recorded_with_the_opt_in() {
        let dir = scratch("skip");
        let missing = dir.join("no-such-data");
        let log = dir.join("sub/skips.txt");
        assert_eq!(shared_data_at("first_test", &missing, true, &log), None);
        assert_eq!(
            shared_data_at("second test (photos part)", &missing, true, &log),
            None
        );
        skip_or_fail_with("third: odd\nname", "tool\n  absent", true, &log);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("first_test: shared data folder "),
            "{text}"
        );
        assert!(lines[0].contains(&missing.display().to_string()), "{text}");
        assert!(
            lines[1].starts_with("second test (photos part): "),
            "{text}"
        );
        assert_eq!(lines[2], "third - odd name: tool absent");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn present_shared_data_is_returned_and_nothing_is_recorded() {
        let dir = scratch("present");
        std::fs::create_dir_all(dir.join("data/catsdogs")).unwrap();
        let log = dir.join("skips.txt");
        for allow in [false, true] {
            assert_eq!(
                shared_data_at("t", &dir.join("data"), allow, &log),
                Some(dir.join("data"))
            );
        }
        assert!(!log.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parallel_skips_each_leave_one_whole_line() {
        let dir = scratch("parallel");
        let log = dir.join("skips.txt");
        std::thread::scope(|s| {
            for i in 0..16 {
                let log = &log;
                s.spawn(move || {
                    for j in 0..20 {
                        skip_or_fail_with(&format!("t{i}_{j}"), &"x".repeat(200), true, log);
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&log).unwrap();
        let mut names: Vec<&str> = text
            .lines()
            .map(|l| l.split(": ").next().unwrap())
            .collect();
        assert!(
            text.lines().all(|l| l.ends_with(&"x".repeat(200))),
            "{text}"
        );
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 16 * 20);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
