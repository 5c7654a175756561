//! `dbmaint report [RUN_ID]`: one past run from the run logs an apply
//! wrote (`PLAN-runID-STAMP.jsonl`, its events, and `.report.json`, its
//! report, in the log directory): as a self-contained HTML page, or the
//! report's JSON. Reads files only: no database is contacted.

use std::path::{Path, PathBuf};

use dbmaint::run::exit;

/// The newest run log in `dir` of plan `plan` (any plan when `None`) and
/// run `run` (any when `None`): `(stamp, path)`.
fn find(dir: &Path, plan: Option<&str>, run: Option<i64>) -> Option<PathBuf> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let stem = name.strip_suffix(".jsonl")?;
            // `PLAN-runID-STAMP`: the plan name may hold dashes itself.
            let (head, stamp) = stem.rsplit_once('-')?;
            let (p, id) = head.rsplit_once("-run")?;
            let id: i64 = id.parse().ok()?;
            (plan.is_none_or(|w| w == p) && run.is_none_or(|r| r == id)).then(|| (stamp.to_string(), e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

pub fn run(log_dir: Option<&Path>, plan: Option<&str>, run_id: Option<i64>, html: bool) -> i32 {
    let dir = match crate::state::log_dir(log_dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let Some(log) = find(&dir, plan, run_id) else {
        eprintln!(
            "error: no run log{}{} in `{}`: give --log-dir (or DBMAINT_LOG_DIR) as the apply did",
            plan.map(|p| format!(" of plan `{p}`")).unwrap_or_default(),
            run_id.map(|r| format!(" for run {r}")).unwrap_or_default(),
            dir.display()
        );
        return exit::ERROR;
    };
    let report_path = log.with_extension("report.json");
    let report: serde_json::Value = match std::fs::read_to_string(&report_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: the run's report `{}` cannot be read ({e}): a run that was killed writes none",
                report_path.display()
            );
            return exit::ERROR;
        }
    };
    if !html {
        println!("{report}");
        return exit::OK;
    }
    // A torn last line (a killed run) is left out, not fatal.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    print!("{}", dbmaint::report::html::run_page(&report, &events));
    exit::OK
}
