//! The plan document: what the YAML says, typed, after overlays and
//! templates — every value still carrying its place. These types are also
//! the source of the JSON Schema (`schema.rs`), so the schema describes
//! exactly the keys the decoder accepts.
//!
//! Rules across values (needs, cycles, backend support) are not here:
//! `validate.rs` turns a [`PlanDoc`] into a resolved `Plan`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::plan::decode::{Cx, Decode, MapReader, Sp, did_you_mean};
use crate::plan::diag::Diag;
use crate::plan::node::{Kind, Node, Pos};
use crate::plan::op::{StepOp, catalog};
use crate::plan::values::{Duration, PlanName, Schedule, Target, Tz, Window};

crate::keywords! {
    /// What happens to other steps when a step fails.
    pub enum OnFailure ("`abort` or `continue`") {
        /// Start no new step; running ones finish or roll back.
        Abort = "abort",
        /// Steps that do not depend on the failed one go on.
        Continue = "continue",
    }
}

crate::params! {
    /// Step settings: in `defaults` for every step, or on one step.
    pub struct Settings ("step settings") {
        required {}
        optional {
            /// Longest wait for a lock before the statement gives up (and is retried). Default 2s.
            lock_timeout: Duration,
            /// Longest a single statement may run. Default 30m.
            statement_timeout: Duration,
            /// Retries after a lock timeout or serialization failure. Default 2.
            retries: u64,
            /// `abort` (default) or `continue`.
            on_failure: OnFailure,
            /// reindex, refresh_views, vacuum, analyze: `continue` (default) records one object's failure and runs the others (the step ends `partial`); `abort` stops the step at the first.
            on_object_failure: OnFailure,
            /// Longest the whole step may run.
            timeout: Duration,
        }
    }
}

crate::keywords! {
    /// What apply does with a step whose expected duration (from the
    /// journal's history) exceeds what is left of `max_runtime` or the window.
    pub enum Fit ("`run` or `defer`") {
        /// Start it anyway (default): it stops between batches when time runs out.
        Run = "run",
        /// Defer it before it starts (exit 3), rather than stop it half-way.
        Defer = "defer",
    }
}

crate::params! {
    /// When apply may run.
    pub struct Limits ("limits") {
        required {}
        optional {
            /// No new step or batch starts once this much time has passed.
            max_runtime: Duration,
            /// Apply refuses to start outside this daily window (`HH:MM-HH:MM`); no new step or batch starts once it closes.
            window: Window,
            /// `defer`: a step whose expected duration (p90 of its past runs) does not fit in what is left of `max_runtime` or `window` is deferred before it starts; default `run`.
            fit: Fit,
            /// Time zone of `window` (IANA name); default UTC.
            tz: Tz,
        }
    }
}

/// Template variables: any YAML values.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct Vars(pub indexmap::IndexMap<String, serde_json::Value>);

impl Decode for Vars {
    const EXPECTED: &'static str = "a map of variables";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match &node.kind {
            Kind::Map(m) => Some(Self(m.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect())),
            Kind::Null => Some(Self::default()),
            _ => {
                cx.wrong_type(node, Self::EXPECTED);
                None
            }
        }
    }
}

impl JsonSchema for Vars {
    fn schema_name() -> Cow<'static, str> {
        "Vars".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "object", "description": "Variables for templates (`{{ vars.name }}`): scalars, lists or maps"})
    }
}

/// Keys of a step besides its settings and its operation.
pub const STEP_KEYS: &[&str] = &["needs", "description", "enabled"];

/// One step as written.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDoc {
    /// The whole step map.
    pub pos: Pos,
    pub needs: Option<Sp<Vec<Sp<String>>>>,
    pub description: Option<Sp<String>>,
    pub enabled: Option<Sp<bool>>,
    /// `None` when a setting was invalid (already reported).
    pub settings: Option<Settings>,
    /// The operation and where its key is written; `None` when missing or
    /// invalid (already reported).
    pub op: Option<Sp<Box<dyn StepOp>>>,
    /// False when any part of the step was reported as wrong. An incomplete
    /// step still takes part in `needs` and cycle checks, so one pass finds
    /// every mistake, but never reaches a resolved plan.
    pub complete: bool,
}

impl StepDoc {
    pub fn is_enabled(&self) -> bool {
        self.enabled.as_ref().is_none_or(|e| e.value)
    }

    /// Decodes a step; `id` and `id_pos` name it in messages.
    pub fn decode(id: &str, id_pos: Pos, node: &Node, cx: &mut Cx) -> Option<Self> {
        let what = format!("step `{id}`");
        let mut r = MapReader::open(node, cx, &what)?;
        let settings = Settings::read(&mut r, cx);
        let needs = r.opt::<Vec<Sp<String>>>("needs", cx);
        let description = r.opt::<String>("description", cx);
        let enabled = r.opt::<bool>("enabled", cx);

        let op_keys = catalog().keys();
        let entries = node.entries().unwrap_or(&[]);
        let op_entries: Vec<_> = entries
            .iter()
            .filter(|(k, _)| op_keys.contains(&k.name.as_str()))
            .collect();
        let mut op = None;
        for (key, value) in &op_entries {
            r.raw(&key.name);
            if let Some(o) = catalog().decode(&key.name, value, cx) {
                op.get_or_insert(Sp::new(o, key.pos));
            }
        }
        let mut known: Vec<&str> = Settings::KEYS.to_vec();
        known.extend(STEP_KEYS);
        known.extend(op_keys);
        // An unknown key that looks like an operation already explains a
        // missing operation; don't report the same mistake twice.
        let typo_of_op = entries.iter().any(|(k, _)| {
            !known.contains(&k.name.as_str()) && did_you_mean(&k.name, op_keys.iter().copied()).is_some()
        });
        let clean = r.finish(cx, &what, &known);
        match op_entries.as_slice() {
            [] if !typo_of_op => cx.error(
                Diag::error("op-count", format!("step `{id}` has no operation"))
                    .at(id_pos, "no operation key".to_string())
                    .hint(format!("add exactly one of: {}", op_keys.join(", "))),
            ),
            [_] | [] => {}
            [(first, _), rest @ ..] => {
                let names: Vec<String> = op_entries.iter().map(|(k, _)| format!("`{}`", k.name)).collect();
                let mut d = Diag::error(
                    "op-count",
                    format!("step `{id}` has {} operations: {}", op_entries.len(), names.join(", ")),
                )
                .at(rest[0].0.pos, "second operation".to_string())
                .also(first.pos, "first operation");
                for (k, _) in &rest[1..] {
                    d = d.also(k.pos, "another operation");
                }
                cx.error(d.hint("a step runs one operation: split it into steps and order them with `needs`"));
                op = None;
            }
        }
        let complete = clean && op.is_some() && settings.is_some();
        Some(Self {
            pos: node.pos,
            needs,
            description,
            enabled,
            settings,
            op,
            complete,
        })
    }
}

/// Steps in file order, each with the place of its id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Steps(pub Vec<(Sp<String>, StepDoc)>);

impl Decode for Steps {
    const EXPECTED: &'static str = "a map of step id to step";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let entries = match &node.kind {
            Kind::Map(m) => m,
            Kind::Null => &Vec::new(),
            _ => {
                cx.wrong_type(node, "a map of step id to step");
                if matches!(node.kind, Kind::Seq(_))
                    && let Some(d) = cx.diags.items.last_mut()
                {
                    d.hint = Some("steps are a map keyed by id: `steps: {dump: {backup: {}}}`, not a list".to_string());
                }
                return None;
            }
        };
        // Steps that are not even maps are reported and left out; the rest
        // are kept, complete or not, for the plan-wide checks.
        let out = entries
            .iter()
            .filter_map(|(key, value)| {
                StepDoc::decode(&key.name, key.pos, value, cx).map(|s| (Sp::new(key.name.clone(), key.pos), s))
            })
            .collect();
        Some(Self(out))
    }
}

impl Serialize for StepDoc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(d) = &self.description {
            m.serialize_entry("description", d)?;
        }
        if let Some(n) = &self.needs {
            m.serialize_entry("needs", n)?;
        }
        if let Some(e) = &self.enabled {
            m.serialize_entry("enabled", e)?;
        }
        if let Some(settings) = &self.settings {
            crate::plan::serialize_settings(&mut m, settings)?;
        }
        if let Some(op) = &self.op {
            crate::plan::serialize_op(&mut m, op.value.as_ref())?;
        }
        m.end()
    }
}

impl Serialize for Steps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (id, step) in &self.0 {
            m.serialize_entry(&id.value, step)?;
        }
        m.end()
    }
}

/// The schema of one step: settings, common keys, and exactly one operation key.
#[derive(Debug)]
pub struct StepSchema;

impl JsonSchema for StepSchema {
    fn schema_name() -> Cow<'static, str> {
        "Step".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let settings = generator.root_schema_for::<Settings>();
        let mut properties = settings
            .get("properties")
            .and_then(|p| p.as_object())
            .cloned()
            .unwrap_or_default();
        let string = generator.subschema_for::<Sp<String>>();
        properties.insert(
            "needs".into(),
            json_schema!({"type": "array", "items": string, "description": "Steps that must succeed before this one"})
                .into(),
        );
        properties.insert(
            "description".into(),
            json_schema!({"type": "string", "description": "What the step is for"}).into(),
        );
        properties.insert(
            "enabled".into(),
            json_schema!({"type": "boolean", "description": "`false` keeps the step in the file but out of the run"})
                .into(),
        );
        let mut one_of = Vec::new();
        for (key, schema) in catalog().schemas(generator) {
            properties.insert(key.into(), schema.into());
            one_of.push(json_schema!({"required": [key]}));
        }
        json_schema!({
            "type": "object",
            "description": "A step: exactly one operation key with its parameters, plus optional needs and settings",
            "properties": properties,
            "additionalProperties": false,
            "oneOf": one_of,
        })
    }
}

impl JsonSchema for Steps {
    fn schema_name() -> Cow<'static, str> {
        "Steps".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let step = generator.subschema_for::<StepSchema>();
        json_schema!({
            "type": "object",
            "description": "Steps by id; execution order comes from `needs`",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z0-9][a-z0-9_-]*$", "maxLength": 63},
            "additionalProperties": step,
        })
    }
}

crate::keywords! {
    /// Which run outcomes a notification is sent for.
    pub enum NotifyOn ("`failure`, `checks`, `limits` or `success`") {
        /// The run failed: a step failed, the lock was held or lost, a cleanup failed, a signal stopped it (exit 1, 4, 5, 130).
        Failure = "failure",
        /// A `check` step failed on its findings (exit 6).
        Checks = "checks",
        /// `limits` stopped the run with work left (exit 3).
        Limits = "limits",
        /// Everything ran (exit 0).
        Success = "success",
    }
}

crate::params! {
    /// An email notification (SMTP; STARTTLS on `smtp://`, TLS on `smtps://`).
    pub struct Email ("email") {
        required {
            /// Recipients.
            to: Vec<String>,
            /// Sender address.
            from: String,
            /// `smtp://[user:password@]host[:port]` (STARTTLS required unless `?tls=none`) or `smtps://…`; a password belongs in a template: `{{ env.SMTP_URL }}`.
            smtp: String,
        }
        optional {}
    }
}

crate::params! {
    /// Who hears about a run, and when.
    pub struct Notify ("notify") {
        required {}
        optional {
            /// Outcomes to notify on; default `[failure, checks]`.
            on: Vec<NotifyOn>,
            /// POST the report as JSON to this URL (a template keeps its secret out of the file: `{{ env.WEBHOOK_URL }}`).
            webhook: String,
            /// Email a short text report with the JSON report attached.
            email: Email,
            /// Run this program (argv, no shell) with the report JSON on stdin.
            command: Vec<String>,
            /// How long one delivery may take; default 10s.
            timeout: Duration,
            /// Further attempts after a failed delivery; default 2.
            retries: u64,
        }
    }
}

crate::params! {
    /// The run logs a plan keeps.
    pub struct Logs ("logs") {
        required {}
        optional {
            /// Keep only this plan's newest N run logs in the log directory; `--log-keep` wins.
            keep: u64,
        }
    }
}

crate::params! {
    /// A dbmaint plan (format version 1).
    pub struct PlanDoc ("the plan") {
        required {
            /// Plan format version: `1`.
            version: u64,
            /// Plan name: `[a-z0-9][a-z0-9_-]*`.
            name: PlanName,
            /// Steps by id.
            steps: Steps,
        }
        optional {
            /// Free text.
            description: String,
            /// Connection URL: `postgres://…`, `postgresql://…` or `sqlite:path`. `--target` and `DATABASE_URL` are the fallbacks.
            target: Target,
            /// Template variables.
            vars: Vars,
            /// Settings inherited by every step.
            defaults: Settings,
            /// Runtime cap and time window for apply.
            limits: Limits,
            /// 5-field cron expression for `schedule export`.
            schedule: Schedule,
            /// Prometheus text-format metrics written after each apply (atomically), for node_exporter's textfile collector; `--metrics-file` wins.
            metrics_file: String,
            /// Run-log retention: `keep: N`.
            logs: Logs,
            /// Notifications: webhook, email, command.
            notify: Notify,
        }
    }
}
