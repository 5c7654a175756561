//! Where run logs go, the way operators look for them: `--log-dir` (or
//! `DBMAINT_LOG_DIR`, what a system service sets to `/var/log/dbmaint`),
//! else the platform's state directory — `$XDG_STATE_HOME/dbmaint/logs`,
//! `~/.local/state/dbmaint/logs` — never the directory cron happened to
//! start in. The directory is proved writable before any work starts, and
//! `--log-keep N` prunes a plan's older run logs after the run.

use std::path::{Path, PathBuf};

/// The run logs' directory, absolute.
pub fn log_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => state_home()
            .ok_or_else(|| {
                "no log directory: neither XDG_STATE_HOME nor HOME is set; give --log-dir (or DBMAINT_LOG_DIR)"
                    .to_string()
            })?
            .join("dbmaint")
            .join("logs"),
    };
    Ok(std::path::absolute(&dir).unwrap_or(dir))
}

/// `$XDG_STATE_HOME`, or `$HOME/.local/state` (the XDG default); only
/// absolute values count, as the XDG specification says.
fn state_home() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_STATE_HOME").and_then(absolute).or_else(|| {
        std::env::var_os("HOME")
            .and_then(absolute)
            .map(|h| h.join(".local/state"))
    })
}

/// Creates `dir` and proves a file can be written there, before any work:
/// a run whose log cannot be written is refused, not warned about after.
pub fn ensure_writable(dir: &Path) -> Result<(), String> {
    let refuse = |e: std::io::Error| {
        format!(
            "the log directory `{}` is not writable ({e}): nothing was done; give --log-dir (or DBMAINT_LOG_DIR) a directory this user can write",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(refuse)?;
    let probe = dir.join(format!(".dbmaint-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(refuse)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Removes plan `plan`'s run logs (`PLAN-runID-STAMP.jsonl` and the
/// `.report.json` beside each) beyond the newest `keep`, newest by their
/// time stamp; returns what it removed.
pub fn prune(dir: &Path, plan: &str, keep: usize) -> Vec<PathBuf> {
    let prefix = format!("{plan}-run");
    let mut logs: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let rest = name.strip_prefix(&prefix)?.strip_suffix(".jsonl")?;
            // `ID-STAMP`: the id is digits, the stamp sorts by time.
            let (id, stamp) = rest.split_once('-')?;
            (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| (stamp.to_string(), e.path()))
        })
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    let mut removed = vec![];
    for (_, log) in logs.into_iter().take(excess) {
        // The run's report sits beside its event log.
        let report = log.with_extension("report.json");
        if std::fs::remove_file(&log).is_ok() {
            removed.push(log);
        }
        if std::fs::remove_file(&report).is_ok() {
            removed.push(report);
        }
    }
    removed
}

/// Replaces `path` with `text` at once: written beside it under a
/// temporary name, then renamed over it, so a collector never reads half
/// a file (node_exporter's textfile collector asks exactly this).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_of_this_plan_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = [
            "nightly-run1-20261101T020000Z.jsonl",
            "nightly-run2-20261102T020000Z.jsonl",
            "nightly-run10-20261103T020000Z.jsonl",
            "nightly-other-run3-20261101T020000Z.jsonl",
            "weekly-run4-20261001T020000Z.jsonl",
            "nightly-run5-notes.txt",
            "nightly-run1-20261101T020000Z.report.json",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"{}").expect("write");
        }
        let removed = prune(dir.path(), "nightly", 2);
        assert_eq!(removed, [dir.path().join(names[0]), dir.path().join(names[6])]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left.len(), 5, "{left:?}");
        assert!(!left.contains(&names[6].to_string()), "its report went with it");
        assert!(!left.contains(&names[0].to_string()));
    }

    #[test]
    fn an_unwritable_directory_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"").expect("write");
        let e = ensure_writable(&file.join("logs")).expect_err("a file in the way");
        assert!(e.contains("not-a-dir/logs") && e.contains("nothing was done"), "{e}");
    }
}
