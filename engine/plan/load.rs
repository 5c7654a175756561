//! The front of the pipeline: files → raw trees → overlay → vars → render →
//! typed document → validated [`Plan`] and its [`StepGraph`].
//!
//! `load` never panics and never stops at the first problem it can step
//! over; every finding lands in [`Loaded::diags`] with its place.

use std::path::{Path, PathBuf};

use crate::plan::Plan;
use crate::plan::decode::{Cx, Decode};
use crate::plan::diag::{Diag, Diagnostics};
use crate::plan::doc::{PlanDoc, Steps};
use crate::plan::graph::StepGraph;
use crate::plan::node::{Kind, Node};
use crate::plan::op::OpCatalog;
use crate::plan::overlay::{VarOverride, apply_vars, env_vars, merge, parse_cli_var};
use crate::plan::source::Sources;
use crate::plan::template::{Context, render_plan};
use crate::plan::validate::{Fallback, check_steps, validate};

/// What the command line and the process give the loader.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--env NAME`: overlay `env/NAME.yaml` beside the plan.
    pub env: Option<String>,
    /// `--var key=value`, in order.
    pub vars: Vec<String>,
    /// `--target URL`.
    pub target: Option<String>,
    /// The process environment (for `env` in templates, `DBMAINT_VAR_*`
    /// and `DATABASE_URL`), passed in so tests control it.
    pub process_env: Vec<(String, String)>,
    /// The run's start time, RFC 3339 UTC.
    pub now: String,
}

impl LoadOptions {
    /// Options with the real process environment and clock.
    pub fn from_process() -> Self {
        Self {
            process_env: std::env::vars().collect(),
            now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ..Self::default()
        }
    }
}

/// Everything a load produced.
#[derive(Debug)]
pub struct Loaded {
    pub sources: Sources,
    pub diags: Diagnostics,
    pub plan: Option<Plan>,
    pub graph: Option<StepGraph>,
}

impl Loaded {
    pub fn is_valid(&self) -> bool {
        self.plan.is_some() && !self.diags.has_errors()
    }
}

enum Bounded {
    Io(std::io::Error),
    Directory,
    TooLarge,
}

/// Reads at most [`crate::plan::yaml::MAX_FILE_BYTES`] from a file, a device, a
/// FIFO or standard input (`-`): the limit holds whatever the path is,
/// since `/dev/zero` or a pipe fed forever has no size to check first.
fn read_bounded(path: &Path) -> Result<Vec<u8>, Bounded> {
    use std::io::Read;
    let limit = crate::plan::yaml::MAX_FILE_BYTES as u64;
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().lock().take(limit + 1).read_to_end(&mut bytes)
    } else {
        if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(Bounded::Directory);
        }
        std::fs::File::open(path).and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
    };
    result.map_err(Bounded::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Bounded::TooLarge);
    }
    Ok(bytes)
}

/// The overlay file for `env` beside `plan`: `plans/env/prod.yaml`.
pub fn overlay_path(plan: &Path, env: &str) -> PathBuf {
    plan.parent()
        .unwrap_or(Path::new("."))
        .join("env")
        .join(format!("{env}.yaml"))
}

fn read(path: &Path, sources: &mut Sources, what: &str) -> Result<Node, Diag> {
    let bytes = read_bounded(path).map_err(|e| match e {
        Bounded::Io(e) => io_error(path, what, &e),
        Bounded::Directory => Diag::error(
            "not-a-file",
            format!("`{}` is a directory, not a plan file", path.display()),
        )
        .hint("name the plan's YAML file, e.g. `plans/nightly.yaml`"),
        Bounded::TooLarge => Diag::error(
            "file-too-large",
            format!(
                "`{}` is over the {} MiB limit for a plan (reading stopped there)",
                path.display(),
                crate::plan::yaml::MAX_FILE_BYTES >> 20
            ),
        )
        .hint("a plan is a short file of steps; split data out of it"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Diag::error(
            "not-utf8",
            format!(
                "`{}` is not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
        .hint("save the plan as UTF-8")
    })?;
    let file = sources.add(path.display().to_string(), &text);
    let node = crate::plan::yaml::parse(sources, file)?;
    match node.kind {
        Kind::Map(_) => Ok(node),
        Kind::Null => Err(
            Diag::error("empty-plan", format!("{what} `{}` is empty", path.display()))
                .hint("a plan needs at least `version: 1`, `name:` and `steps:`"),
        ),
        _ => Err(Diag::error(
            "wrong-type",
            format!("{what} must be a map of keys, found {}", node.type_name()),
        )
        .at(node.pos, None)
        .hint("start the file with `version: 1`")),
    }
}

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> Diag {
    Diag::error("io", format!("cannot read {what} `{}`: {e}", path.display()))
        .hint("check the path and its permissions")
}

/// Loads, overlays, renders and validates the plan at `path`; steps may
/// use the operations of `ops` (the crate root passes `ops::REGISTRY`).
pub fn load(path: &Path, opts: &LoadOptions, ops: &'static dyn OpCatalog) -> Loaded {
    crate::plan::op::install(ops);
    let mut sources = Sources::new();
    let mut diags = Diagnostics::default();
    let plan = load_inner(path, opts, &mut sources, &mut diags);
    loaded(sources, diags, plan)
}

/// Wraps up a load: diagnostics in reading order, and the graph of a valid plan.
fn loaded(sources: Sources, mut diags: Diagnostics, plan: Option<Plan>) -> Loaded {
    let graph = plan.as_ref().map(StepGraph::new);
    diags.sort();
    Loaded {
        sources,
        diags,
        plan,
        graph,
    }
}

/// Parses a plan from text (no overlay), for tests, fuzzing and benchmarks.
pub fn load_str(name: &str, text: &str, opts: &LoadOptions, ops: &'static dyn OpCatalog) -> Loaded {
    crate::plan::op::install(ops);
    let mut sources = Sources::new();
    let mut diags = Diagnostics::default();
    let file = sources.add(name, text);
    let plan = match crate::plan::yaml::parse(&sources, file) {
        Ok(node) if matches!(node.kind, Kind::Map(_)) => finish(node, opts, &mut sources, &mut diags),
        Ok(node) => {
            diags.push(
                Diag::error(
                    "wrong-type",
                    format!("a plan must be a map of keys, found {}", node.type_name()),
                )
                .at(node.pos, None),
            );
            None
        }
        Err(d) => {
            diags.push(d);
            None
        }
    };
    loaded(sources, diags, plan)
}

fn load_inner(path: &Path, opts: &LoadOptions, sources: &mut Sources, diags: &mut Diagnostics) -> Option<Plan> {
    let base = read(path, sources, "plan");
    let overlay = opts.env.as_ref().map(|env| {
        let p = overlay_path(path, env);
        if p.exists() {
            read(&p, sources, "overlay")
        } else {
            Err(unknown_env(path, env, &p))
        }
    });
    let mut base = match base {
        Ok(b) => b,
        Err(d) => {
            diags.push(d);
            if let Some(Err(d)) = overlay {
                diags.push(d);
            }
            return None;
        }
    };
    match overlay {
        Some(Ok(o)) => merge(&mut base, o),
        Some(Err(d)) => {
            diags.push(d);
            return None;
        }
        None => {}
    }
    finish(base, opts, sources, diags)
}

fn unknown_env(plan: &Path, env: &str, expected: &Path) -> Diag {
    let dir = expected.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut known: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yaml").map(str::to_string))
        .collect();
    known.sort();
    let hint = if known.is_empty() {
        format!("create `{}` beside `{}`", expected.display(), plan.display())
    } else {
        match crate::plan::decode::did_you_mean(env, known.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `--env {s}`? environments: {}", known.join(", ")),
            None => format!("environments: {}", known.join(", ")),
        }
    };
    Diag::error(
        "unknown-env",
        format!("no environment `{env}`: `{}` does not exist", expected.display()),
    )
    .hint(hint)
}

/// Everything after the files are read: vars, render, decode, validate.
fn finish(mut tree: Node, opts: &LoadOptions, sources: &mut Sources, diags: &mut Diagnostics) -> Option<Plan> {
    let mut overrides: Vec<VarOverride> = env_vars(&opts.process_env);
    for v in &opts.vars {
        match parse_cli_var(v) {
            Ok(o) => overrides.push(o),
            Err(d) => diags.push(d),
        }
    }
    for d in apply_vars(&mut tree, &overrides, sources) {
        diags.push(d);
    }
    let fallback = fallback_targets(opts);
    let ctx = Context {
        env: opts.process_env.iter().cloned().collect(),
        now: opts.now.clone(),
        cli_target: fallback.cli.clone(),
        default_target: fallback.default.clone(),
    };
    for d in render_plan(&mut tree, &ctx, sources) {
        diags.push(d);
    }
    let mut cx = Cx::default();
    let plan = match PlanDoc::decode(&tree, &mut cx) {
        Some(doc) if !diags.has_errors() => validate(doc, &fallback, opts.env.as_deref(), &mut cx),
        Some(doc) => {
            // Earlier errors (templates, vars) already doom the plan; still
            // run the plan-wide rules, which report different mistakes.
            let _ = validate(doc, &fallback, opts.env.as_deref(), &mut cx);
            // "No target" is noise beside the errors that doom the plan.
            cx.diags.items.retain(|d| d.code != "no-target");
            None
        }
        None => {
            // A top-level key was wrong: check the steps on their own. Their
            // decoding errors were reported already, so decode quietly.
            if let Some(Some(steps)) = tree.get("steps").map(|n| Steps::decode(n, &mut Cx::default())) {
                check_steps(&steps, None, &mut cx);
            }
            None
        }
    };
    diags.items.extend(cx.diags.items);
    if diags.has_errors() { None } else { plan }
}

/// The targets from outside the plan: `--target`, then `DATABASE_URL`,
/// then the libpq environment (a bare `postgres://` that the connection
/// resolver completes from `PGHOST`, `PGSERVICE`, …).
pub fn fallback_targets(opts: &LoadOptions) -> Fallback {
    const LIBPQ: [&str; 6] = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"];
    let (default, default_origin) = match lookup(&opts.process_env, "DATABASE_URL") {
        Some(t) => (Some(t.to_string()), "DATABASE_URL"),
        None if LIBPQ.iter().any(|k| lookup(&opts.process_env, k).is_some()) => {
            (Some("postgres://".to_string()), "the libpq environment (PG* variables)")
        }
        None => (None, "DATABASE_URL"),
    };
    Fallback {
        cli: opts.target.clone(),
        default,
        default_origin,
    }
}

fn lookup<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}
