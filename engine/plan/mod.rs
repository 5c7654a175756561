//! The validated, resolved plan: enabled steps only, every setting filled in
//! (step, then `defaults`, then the engine's own default), the target known
//! when one was given. Later stages (planning, execution) start from here;
//! nothing in it is optional by accident.

pub mod decode;
pub mod diag;
pub mod doc;
pub mod graph;
pub mod load;
pub mod node;
pub mod op;
pub mod overlay;
pub mod schema;
pub mod source;
pub mod template;
pub mod validate;
pub mod values;
pub mod yaml;

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::plan::doc::{OnFailure, Settings};
use crate::plan::op::StepOp;
use crate::plan::values::{Duration, Schedule, Target, Tz, Window};

/// The engine's defaults, used where neither the step nor `defaults` says.
/// `lock_timeout` stays short because a DDL that merely waits for a lock
/// already blocks every reader queued behind it (safety.md, rule 1).
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
pub const DEFAULT_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
pub const DEFAULT_RETRIES: u64 = 2;

/// Settings of one step after inheritance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSettings {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    pub retries: u64,
    pub on_failure: OnFailure,
    pub on_object_failure: OnFailure,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

impl StepSettings {
    /// Step value, else the plan's `defaults`, else the engine default.
    pub fn resolve(step: &Settings, defaults: Option<&Settings>) -> Self {
        macro_rules! pick {
            ($f:ident) => {
                step.$f
                    .as_ref()
                    .or(defaults.and_then(|d| d.$f.as_ref()))
                    .map(|v| v.value.clone())
            };
        }
        Self {
            lock_timeout: pick!(lock_timeout).unwrap_or(Duration(DEFAULT_LOCK_TIMEOUT)),
            statement_timeout: pick!(statement_timeout).unwrap_or(Duration(DEFAULT_STATEMENT_TIMEOUT)),
            retries: pick!(retries).unwrap_or(DEFAULT_RETRIES),
            on_failure: pick!(on_failure).unwrap_or(OnFailure::Abort),
            on_object_failure: pick!(on_object_failure).unwrap_or(OnFailure::Continue),
            timeout: pick!(timeout),
        }
    }
}

/// One enabled step, ready to plan.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub description: Option<String>,
    pub needs: Vec<String>,
    pub settings: StepSettings,
    pub op: Box<dyn StepOp>,
}

// By hand: a derived `PartialEq` cannot compare a `Box<dyn …>` field
// (rust-lang/rust#31740); the operation compares through `StepOp::same_as`.
impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.description == other.description
            && self.needs == other.needs
            && self.settings == other.settings
            && self.op.same_as(other.op.as_ref())
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(d) = &self.description {
            m.serialize_entry("description", d)?;
        }
        if !self.needs.is_empty() {
            m.serialize_entry("needs", &self.needs)?;
        }
        m.serialize_entry("lock_timeout", &self.settings.lock_timeout)?;
        m.serialize_entry("statement_timeout", &self.settings.statement_timeout)?;
        m.serialize_entry("retries", &self.settings.retries)?;
        m.serialize_entry("on_failure", &self.settings.on_failure)?;
        m.serialize_entry("on_object_failure", &self.settings.on_object_failure)?;
        if let Some(t) = &self.settings.timeout {
            m.serialize_entry("timeout", t)?;
        }
        serialize_op(&mut m, self.op.as_ref())?;
        m.end()
    }
}

/// Writes `key: params` for an operation, the shape a plan file uses.
pub fn serialize_op<M: SerializeMap>(m: &mut M, op: &dyn StepOp) -> Result<(), M::Error> {
    m.serialize_entry(op.key(), &op.params_json())
}

/// Writes the settings a step document sets explicitly.
pub fn serialize_settings<M: SerializeMap>(m: &mut M, s: &Settings) -> Result<(), M::Error> {
    if let Some(v) = &s.lock_timeout {
        m.serialize_entry("lock_timeout", v)?;
    }
    if let Some(v) = &s.statement_timeout {
        m.serialize_entry("statement_timeout", v)?;
    }
    if let Some(v) = &s.retries {
        m.serialize_entry("retries", v)?;
    }
    if let Some(v) = &s.on_failure {
        m.serialize_entry("on_failure", v)?;
    }
    if let Some(v) = &s.on_object_failure {
        m.serialize_entry("on_object_failure", v)?;
    }
    if let Some(v) = &s.timeout {
        m.serialize_entry("timeout", v)?;
    }
    Ok(())
}

/// `notify` after defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanNotify {
    pub on: Vec<crate::plan::doc::NotifyOn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<PlanEmail>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    pub timeout: Duration,
    pub retries: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanEmail {
    pub to: Vec<String>,
    pub from: String,
    /// Serialized without its password.
    #[serde(serialize_with = "redacted_url")]
    pub smtp: String,
}

fn redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::plan::source::redact_url(url))
}

/// `limits` after defaults (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runtime: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    pub tz: Tz,
    /// `limits.fit: defer`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fit_defer: bool,
}

/// The effective plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub version: u64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Environment overlay applied, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Serialized with its password masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Where the target came from (`the plan's `target:``, `--target,
    /// replacing …`, `DATABASE_URL`, `the libpq environment`), for headers.
    #[serde(skip)]
    pub target_origin: Option<String>,
    #[serde(skip_serializing_if = "indexmap::IndexMap::is_empty")]
    pub vars: indexmap::IndexMap<String, serde_json::Value>,
    pub limits: PlanLimits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// `metrics_file:`: Prometheus metrics after each apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_file: Option<String>,
    /// `logs.keep`: run logs of this plan kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_keep: Option<u64>,
    /// `notify:`: who hears about a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<PlanNotify>,
    /// Enabled steps, in file order.
    pub steps: indexmap::IndexMap<String, Step>,
    /// Steps switched off with `enabled: false`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
}

impl Plan {
    /// sha256 of what will run: the effective plan's canonical JSON without
    /// the target, the overlay's name and the list of disabled steps — so the
    /// same work on two databases, or written out by `plan show` and loaded
    /// back, has one hash. Runs record it; saved plans are checked against it.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for meta in ["target", "env", "disabled"] {
                o.shift_remove(meta);
            }
        }
        let digest = sha2::Sha256::digest(v.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The effective plan as a plan file: every setting explicit, templates
/// rendered, the password masked. Loading it back gives the same hash; the
/// overlay's name and the disabled steps are in the header comment.
pub fn effective_yaml(plan: &Plan) -> String {
    let mut v = serde_json::to_value(plan).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.shift_remove("env");
        o.shift_remove("disabled");
    }
    let mut head = format!("# effective plan `{}`, hash {}\n", plan.name, plan.hash());
    if let Some(env) = &plan.env {
        head.push_str(&format!("# environment overlay: {env}\n"));
    }
    if !plan.disabled.is_empty() {
        head.push_str(&format!("# disabled steps: {}\n", plan.disabled.join(", ")));
    }
    head + &serde_saphyr::to_string(&v).unwrap_or_default()
}
