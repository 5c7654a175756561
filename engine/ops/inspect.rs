//! `dbmaint inspect`: one read-only report (`stats`, `bloat` or `check` at
//! their defaults) without a plan, on a read-only session. Rendered by
//! `report/text.rs`.

use crate::db::{SessionLimits, connect};
use crate::plan::values::Target;
use crate::run::Failure;

/// Which report `dbmaint inspect` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InspectWhat {
    Stats,
    Bloat,
    Checks,
}

/// What `dbmaint inspect` found: the read-only report of `stats`, `bloat`
/// or `check` at their defaults, without a plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InspectReport {
    pub report: InspectWhat,
    pub target: String,
    pub identity: crate::db::identity::TargetIdentity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::ops::stats::report::StatsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bloat: Option<crate::ops::bloat::figures::BloatReport>,
    /// Check findings, or the bloat over the default threshold.
    pub findings: Vec<crate::ops::check::spec::Finding>,
}

/// Runs one report on a read-only session.
pub async fn inspect_report(
    target: &Target,
    origin: &str,
    what: InspectWhat,
    top: u64,
    exact: bool,
    max_backup_age_ms: Option<u64>,
) -> Result<InspectReport, Failure> {
    let mut conn = connect(target, SessionLimits::READ_ONLY).await?;
    let mut identity = conn.identity(target).await?;
    identity.source = origin.to_string();
    let mut r = InspectReport {
        report: what,
        target: target.redacted(),
        identity,
        stats: None,
        bloat: None,
        findings: vec![],
    };
    let result = match what {
        InspectWhat::Stats => crate::ops::stats::read(&mut conn, top).await.map(|s| r.stats = Some(s)),
        InspectWhat::Bloat => {
            let spec = crate::ops::bloat::figures::BloatSpec {
                exact,
                min_bytes: crate::ops::bloat::figures::DEFAULT_MIN_BYTES,
                tables: vec![],
            };
            crate::ops::bloat::read(&mut conn, &spec).await.map(|b| {
                r.findings = b.findings(crate::ops::bloat::figures::DEFAULT_MIN_WASTE_RATIO);
                r.bloat = Some(b);
            })
        }
        InspectWhat::Checks => {
            let mut spec = crate::ops::check::spec::CheckSpec::defaults(target.backend);
            if max_backup_age_ms.is_some() {
                spec.checks
                    .push(crate::ops::check::CheckName::BackupAge.as_str().into());
                spec.max_backup_age_ms = max_backup_age_ms;
            }
            crate::ops::check::read(&mut conn, &spec).await.map(|f| r.findings = f)
        }
    };
    conn.close().await;
    result?;
    Ok(r)
}
