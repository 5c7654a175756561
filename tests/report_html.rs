//! `dbmaint report --format html` (issue 14 §5): the demo's run as one
//! self-contained page, loaded in a real browser — headless Chromium
//! (Debian's `chromium`, which .ci/run installs) — with no console error,
//! a screenshot, and the text equivalents of its charts in the DOM.

use std::path::Path;
use std::process::Command;

use crate::support::cli::dbmaint;

/// Chromium on PATH; the test fails, never skips, without it.
fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("which")
            .arg(name)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("headless Chromium not found: install Debian's `chromium` (.ci/run does)");
}

/// Loads `page` headless: (its DOM after load, the console lines Chromium
/// logged). With `shot`, also a screenshot there.
fn load(page: &Path, shot: Option<&Path>) -> (String, Vec<String>) {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,1000",
    ]);
    match shot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).to_string(), console)
}

#[test]
fn the_html_report_of_the_demo_run_loads_in_chromium_with_no_console_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The detector itself: a page with a script error is caught.
    let bad = dir.path().join("bad.html");
    std::fs::write(&bad, "<html><body><script>no_such_function();</script></body></html>").expect("bad page");
    let (_, console) = load(&bad, None);
    assert!(
        console.iter().any(|l| l.contains("no_such_function")),
        "chromium's console is read: {console:?}"
    );
    let demo = dbmaint(dir.path())
        .args(["demo", "--scale", "0.1"])
        .output()
        .expect("demo");
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let out = dbmaint(dir.path())
        .args(["report", "--log-dir", "dbmaint-logs", "--format", "html"])
        .output()
        .expect("report");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = String::from_utf8_lossy(&out.stdout).to_string();
    for remote in ["<link", "src=", "@import", "url("] {
        assert!(!html.contains(remote), "self-contained, no `{remote}`");
    }
    let page = dir.path().join("run.html");
    std::fs::write(&page, &html).expect("page");
    let (dom, console) = load(&page, None);
    assert!(console.is_empty(), "console messages: {console:?}");
    for text in [
        "Run 1 of plan `demo`",
        "The timeline in text",
        "Predicted and actual",
        "The batches of",
    ] {
        assert!(dom.contains(text), "`{text}` in the loaded page");
    }
    // Every step of the run is on the timeline and in its text table.
    let report: serde_json::Value = serde_json::from_slice(
        &dbmaint(dir.path())
            .args(["report", "--log-dir", "dbmaint-logs", "--format", "json"])
            .output()
            .expect("report json")
            .stdout,
    )
    .expect("json");
    let steps = report["steps"].as_array().expect("steps");
    assert!(steps.len() >= 3, "{report}");
    for s in steps {
        let id = s["id"].as_str().expect("id");
        assert!(
            dom.matches(&format!("<td>{id}</td>")).count() >= 2,
            "{id} in both tables"
        );
    }
    let shot = dir.path().join("run.png");
    let (_, console) = load(&page, Some(&shot));
    assert!(console.is_empty(), "console messages: {console:?}");
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot: {} bytes",
        png.len()
    );
}

#[test]
fn report_without_a_run_log_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dbmaint(dir.path())
        .args(["report", "--log-dir", "nowhere", "--format", "html"])
        .output()
        .expect("report");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no run log") && err.contains("nowhere"), "{err}");
}

/// `history --format html`: three runs of one plan over time, the rows
/// each deleted in the loaded page's table.
#[test]
fn history_as_html_shows_each_runs_rows_and_loads_with_no_console_error() {
    use crate::support::test::{Test, sqlite};
    let t = Test::new();
    let db = t.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL)",
    );
    let old = |n: u32, from: u32| {
        sqlite(
            &db,
            &format!(
                "WITH RECURSIVE g(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM g WHERE i < {from} + {n} - 1) \
                 INSERT INTO ev SELECT i, '2020-01-01T00:00:00Z' FROM g \
                 UNION ALL SELECT i + 100000, strftime('%Y-%m-%dT%H:%M:%SZ', 'now') FROM g"
            ),
        )
    };
    let plan = t.retention_plan(
        &format!("sqlite:{}", db.display()),
        "table: ev, column: created_at, older_than: 30d",
    );
    for (n, from) in [(30, 1), (20, 1000), (0, 0)] {
        if n > 0 {
            old(n, from);
        }
        let out = t.apply(&plan);
        assert!(out.success(), "{}", out.stderr);
    }
    let out = dbmaint(t.path())
        .args(["history", "--plan"])
        .arg(&plan)
        .args(["--format", "html"])
        .output()
        .expect("history");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = t.path().join("history.html");
    std::fs::write(&page, &out.stdout).expect("page");
    let (dom, console) = load(&page, None);
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(dom.contains("Runs of <code>rt</code>"), "{dom}");
    let rows: Vec<&str> = dom.lines().filter(|l| l.starts_with("<tr><td>")).collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Oldest first: 30, 20 and 0 rows deleted.
    for (row, want) in rows.iter().zip(["<td>30</td>", "<td>20</td>", "<td>0</td>"]) {
        assert!(row.contains(want), "{row} has {want}");
    }
}
