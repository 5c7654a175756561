//! Notifications after a run: a webhook (the report as JSON), an email (a
//! short text report with the JSON attached) and/or a command (the report
//! JSON on its stdin), for the outcomes the plan's `notify.on` names.
//! Each delivery has a timeout and retries; one that still fails is a
//! warning the caller prints and puts in the report — never the run's
//! failure, never a changed exit code.
//!
//! Owns: choosing whether to notify, delivering, saying how it went. Must
//! not: touch the database, or print (the command line does).

use std::io::Write as _;
use std::time::Duration;

use crate::plan::PlanNotify;
use crate::plan::doc::NotifyOn;
use crate::run::collect::Report;
use crate::run::exit;

/// How one channel's delivery went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// `webhook`, `email`, `command`.
    pub channel: &'static str,
    pub ok: bool,
    /// Attempts made.
    pub attempts: u64,
    /// What went wrong on the last attempt (no secret: URLs redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome class of an exit code, as `notify.on` names them.
pub fn outcome(exit_code: i32) -> NotifyOn {
    match exit_code {
        exit::OK => NotifyOn::Success,
        exit::LIMITS => NotifyOn::Limits,
        exit::ALERT => NotifyOn::Checks,
        _ => NotifyOn::Failure,
    }
}

/// Whether this run's outcome is one the plan wants to hear about.
pub fn wanted(n: &PlanNotify, exit_code: i32) -> bool {
    n.on.contains(&outcome(exit_code))
}

/// Delivers `report` on every channel of `n` (the caller checked
/// [`wanted`]); `text` is the report for people.
pub async fn send(n: &PlanNotify, report: &Report, text: &str) -> Vec<Delivery> {
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    let timeout = n.timeout.0;
    let mut out = vec![];
    if let Some(url) = &n.webhook {
        let (url, json) = (url.clone(), json.clone());
        out.push(retrying("webhook", n.retries, move || webhook(&url, &json, timeout)).await);
    }
    if let Some(e) = &n.email {
        let (e, json) = (e.clone(), json.clone());
        let subject = format!(
            "dbmaint: plan `{}` {} (exit {}) on {}",
            report.plan, report.status, report.exit_code, report.target
        );
        let body = text.to_string();
        out.push(retrying("email", n.retries, move || email(&e, &subject, &body, &json, timeout)).await);
    }
    if !n.command.is_empty() {
        let (argv, json) = (n.command.clone(), json.clone());
        out.push(retrying("command", n.retries, move || command(&argv, &json, timeout)).await);
    }
    out
}

/// Runs a blocking delivery up to `1 + retries` times, a second apart.
async fn retrying<F>(channel: &'static str, retries: u64, deliver: F) -> Delivery
where
    F: Fn() -> Result<(), String> + Send + Sync + 'static,
{
    let deliver = std::sync::Arc::new(deliver);
    let mut last = None;
    for attempt in 1..=retries + 1 {
        let d = deliver.clone();
        let result = tokio::task::spawn_blocking(move || d())
            .await
            .unwrap_or_else(|e| Err(format!("the delivery ended abnormally: {e}")));
        match result {
            Ok(()) => {
                return Delivery {
                    channel,
                    ok: true,
                    attempts: attempt,
                    error: None,
                };
            }
            Err(e) => last = Some(e),
        }
        if attempt <= retries {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Delivery {
        channel,
        ok: false,
        attempts: retries + 1,
        error: last,
    }
}

/// POST the report; any 2xx is delivered.
fn webhook(url: &str, json: &str, timeout: Duration) -> Result<(), String> {
    let shown = crate::plan::source::redact_url(url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("dbmaint/", env!("CARGO_PKG_VERSION")))
        .send(json)
        .map_err(|e| {
            format!(
                "POST {shown}: {}",
                crate::plan::source::redact_passwords(&e.to_string())
            )
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST {shown}: HTTP {status}"))
    }
}

/// A short text report with the JSON attached, over SMTP.
fn email(e: &crate::plan::PlanEmail, subject: &str, text: &str, json: &str, timeout: Duration) -> Result<(), String> {
    use lettre::message::{Attachment, MultiPart, SinglePart, header::ContentType};
    use lettre::{Message, SmtpTransport, Transport};
    let shown = crate::plan::source::redact_url(&e.smtp);
    let mut m = Message::builder()
        .from(e.from.parse().map_err(|err| format!("`from: {}`: {err}", e.from))?)
        .subject(subject);
    for to in &e.to {
        m = m.to(to.parse().map_err(|err| format!("`to: {to}`: {err}"))?);
    }
    let message = m
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(text.to_string()))
                .singlepart(Attachment::new("dbmaint-report.json".into()).body(
                    json.to_string(),
                    ContentType::parse("application/json").map_err(|e| e.to_string())?,
                )),
        )
        .map_err(|err| format!("building the email: {err}"))?;
    let transport = SmtpTransport::from_url(&smtp_url(&e.smtp))
        .map_err(|err| format!("`smtp: {shown}`: {err}"))?
        .timeout(Some(timeout))
        .build();
    transport
        .send(&message)
        .map(|_| ())
        .map_err(|err| format!("sending through {shown}: {err}"))
}

/// The URL lettre reads, safe by default: `smtp://` without `tls=` means
/// STARTTLS *required* (lettre alone would send in clear), `tls=none` —
/// a local relay, said in the plan — sends in clear; `smtps://` and
/// `tls=required|opportunistic` pass as they are.
fn smtp_url(url: &str) -> String {
    let has = |k: &str| url.split(['?', '&']).skip(1).any(|p| p.starts_with(k));
    if !url.starts_with("smtp://") {
        return url.to_string();
    }
    if has("tls=none") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let rest: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && *p != "tls=none").collect();
        return if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
    }
    if has("tls=") {
        return url.to_string();
    }
    format!("{url}{}tls=required", if url.contains('?') { '&' } else { '?' })
}

/// The program with the report JSON on stdin; exit 0 is delivered. It is
/// killed past the timeout.
fn command(argv: &[String], json: &str, timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("`command` is empty".into());
    };
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that reads nothing is its own business.
        let _ = stdin.write_all(json.as_bytes());
    }
    let started = std::time::Instant::now();
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!(
                    "`{program}` exited with {status}: {}",
                    crate::db::one_line(&err)
                ));
            }
            None if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{program}` took longer than {} s: killed", timeout.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_requires_starttls_unless_the_plan_says_none() {
        assert_eq!(smtp_url("smtp://relay:587"), "smtp://relay:587?tls=required");
        assert_eq!(smtp_url("smtp://u:p@relay"), "smtp://u:p@relay?tls=required");
        assert_eq!(smtp_url("smtp://relay:25?tls=none"), "smtp://relay:25");
        assert_eq!(
            smtp_url("smtp://relay?tls=opportunistic"),
            "smtp://relay?tls=opportunistic"
        );
        assert_eq!(smtp_url("smtps://relay:465"), "smtps://relay:465");
    }

    #[test]
    fn outcomes_by_exit_code() {
        assert_eq!(outcome(0), NotifyOn::Success);
        assert_eq!(outcome(3), NotifyOn::Limits);
        assert_eq!(outcome(6), NotifyOn::Checks);
        for c in [1, 4, 5, 130] {
            assert_eq!(outcome(c), NotifyOn::Failure, "{c}");
        }
    }
}
