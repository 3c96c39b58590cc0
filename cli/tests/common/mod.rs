//! Running the binary from the integration tests: shared by every file in `cli/tests`.
#![allow(dead_code)]

use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenformer-cli");

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run tokenformer-cli")
}

/// Run, assert success, return the whole output.
pub fn ok_output(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Run, assert success, return stdout.
pub fn ok(args: &[&str]) -> String {
    String::from_utf8(ok_output(args).stdout).unwrap()
}

/// Assert a failure that is one `error: ...` line on stderr, no panic; return that line.
pub fn assert_clean_failure(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
    lines[0].to_string()
}
