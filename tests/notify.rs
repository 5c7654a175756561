//! Notifications (issue 13 §3): the webhook reaches a local HTTP server
//! with the report as JSON, the email reaches a local SMTP sink with the
//! JSON attached, the command gets the report on stdin; a delivery that
//! keeps failing is retried, then a warning — the run's exit code is the
//! run's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::cli::dbmaint;
use crate::support::test::sqlite;

/// A SQLite database and a plan with `notify` (its YAML inline).
fn setup(dir: &Path, notify: &str) -> std::path::PathBuf {
    sqlite(
        &dir.join("app.db"),
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TEXT NOT NULL); \
         INSERT INTO ev (at) VALUES (datetime('now', '-40 days')), (datetime('now'));",
    );
    let plan = dir.join("p.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: nightly\ntarget: \"sqlite:app.db\"\nnotify: {notify}\n\
             steps:\n  purge:\n    retention: {{ table: ev, column: at, older_than: 30 days }}\n"
        ),
    )
    .expect("plan");
    plan
}

fn apply(dir: &Path, plan: &Path) -> (Option<i32>, serde_json::Value, String) {
    let out = dbmaint(dir)
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(plan)
        .output()
        .expect("apply");
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The requests a test server saw: (request line, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP server answering every request with `status`; the requests as
/// they came.
fn http_server(status: u16) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(vec![]));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record.lock().expect("lock").push((
                request_line.trim().to_string(),
                String::from_utf8_lossy(&body).to_string(),
            ));
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, seen)
}

#[test]
fn the_webhook_posts_the_report_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, seen) = http_server(200);
    let plan = setup(
        dir.path(),
        &format!("{{ on: [success], webhook: \"http://127.0.0.1:{port}/hook\" }}"),
    );
    let (code, v, err) = apply(dir.path(), &plan);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["notifications"][0]["channel"], "webhook");
    assert_eq!(v["notifications"][0]["ok"], true, "{v}");
    let got = seen.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "POST /hook HTTP/1.1");
    let report: serde_json::Value = serde_json::from_str(&got[0].1).expect("the body is JSON");
    assert_eq!(report["plan"], "nightly");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["steps"][0]["rows"], 1);
}

#[test]
fn a_failing_webhook_is_retried_then_a_warning_and_the_run_keeps_its_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, seen) = http_server(500);
    let plan = setup(
        dir.path(),
        &format!("{{ on: [success, failure], webhook: \"http://127.0.0.1:{port}/hook\", retries: 1, timeout: 5s }}"),
    );
    let (code, v, err) = apply(dir.path(), &plan);
    assert_eq!(code, Some(0), "the run succeeded: {err}");
    assert_eq!(v["notifications"][0]["ok"], false);
    assert_eq!(v["notifications"][0]["attempts"], 2);
    assert!(
        err.contains("warning: the webhook notification failed after 2 attempts") && err.contains("HTTP 500"),
        "{err}"
    );
    assert_eq!(seen.lock().expect("lock").len(), 2, "one attempt and one retry");
    // Nothing is sent for an outcome the plan does not name.
    let (port2, seen2) = http_server(200);
    let other = tempfile::tempdir().expect("tempdir");
    let plan = setup(
        other.path(),
        &format!("{{ on: [failure], webhook: \"http://127.0.0.1:{port2}/\" }}"),
    );
    let (code, v, _) = apply(other.path(), &plan);
    assert_eq!(code, Some(0));
    assert_eq!(v["notifications"], serde_json::json!([]));
    assert!(seen2.lock().expect("lock").is_empty());
}

#[test]
fn the_command_gets_the_report_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("got.json");
    let plan = setup(
        dir.path(),
        &format!("{{ on: [success], command: [sh, -c, \"cat > '{}'\"] }}", out.display()),
    );
    let (code, v, err) = apply(dir.path(), &plan);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["notifications"][0]["ok"], true, "{v}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("JSON");
    assert_eq!(report["plan"], "nightly");
}

/// A minimal SMTP server: accepts one message and keeps its DATA.
fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mails = Arc::new(Mutex::new(vec![]));
    let keep = mails.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut w = stream.try_clone().expect("clone");
            let mut r = BufReader::new(stream);
            let _ = w.write_all(b"220 sink ESMTP\r\n");
            let mut data: Option<String> = None;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(d) = data.as_mut() {
                    if line == ".\r\n" {
                        keep.lock().expect("lock").push(std::mem::take(d));
                        data = None;
                        let _ = w.write_all(b"250 queued\r\n");
                    } else {
                        d.push_str(&line);
                    }
                    continue;
                }
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                    "DATA" => {
                        data = Some(String::new());
                        b"354 go on\r\n"
                    }
                    "QUIT" => {
                        let _ = w.write_all(b"221 bye\r\n");
                        break;
                    }
                    _ => b"250 ok\r\n",
                };
                let _ = w.write_all(reply);
            }
        }
    });
    (port, mails)
}

#[test]
fn the_email_reaches_an_smtp_server_with_the_report_attached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, mails) = smtp_sink();
    let plan = setup(
        dir.path(),
        &format!(
            "{{ on: [success], email: {{ to: [dba@example.com], from: dbmaint@example.com, smtp: \"smtp://127.0.0.1:{port}?tls=none\" }} }}"
        ),
    );
    let (code, v, err) = apply(dir.path(), &plan);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["notifications"][0]["ok"], true, "{v}");
    let got = mails.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    let mail = &got[0];
    assert!(
        mail.contains("Subject: dbmaint: plan `nightly` succeeded (exit 0)"),
        "{mail}"
    );
    assert!(mail.contains("To: dba@example.com"), "{mail}");
    assert!(mail.contains("dbmaint-report.json"), "the JSON is attached: {mail}");
    // Without `tls=none`, a server that offers no STARTTLS is refused:
    // the report never crosses the network in clear by default.
    let (port, mails) = smtp_sink();
    let dir2 = tempfile::tempdir().expect("tempdir");
    let plan = setup(
        dir2.path(),
        &format!(
            "{{ on: [success], retries: 0, email: {{ to: [dba@example.com], from: dbmaint@example.com, smtp: \"smtp://127.0.0.1:{port}\" }} }}"
        ),
    );
    let (code, v, err) = apply(dir2.path(), &plan);
    assert_eq!(code, Some(0));
    assert_eq!(v["notifications"][0]["ok"], false, "{v}");
    assert!(err.contains("email notification failed"), "{err}");
    assert!(mails.lock().expect("lock").is_empty());
}
