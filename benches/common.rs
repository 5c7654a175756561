//! Helpers the benchmarks share (included with `#[path]`, as the test
//! support's cluster is).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `name` from the environment as a number, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `sql` with psql; panics with the server's message on failure.
pub fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The release binary the benchmarks time.
pub fn dbmaint_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/dbmaint");
    assert!(
        bin.exists(),
        "build it first: cargo build --release (the bench times the release binary)"
    );
    bin
}

/// The server binaries' directory (`pg_config --bindir`, else /usr/bin).
pub fn bindir(tool: &str) -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let dir = PathBuf::from(String::from_utf8_lossy(&out).trim());
    if dir.join(tool).exists() {
        dir
    } else {
        PathBuf::from("/usr/bin")
    }
}
