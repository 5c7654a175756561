//! `backup`: pg_dump on PostgreSQL, `VACUUM INTO` on SQLite. Parameters and
//! rules only; running it belongs to the executor.

pub mod exec;
pub mod journal;
pub mod manage;
pub mod rotate;
pub mod sizing;
pub mod verify;

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use super::{BOTH, OpCheck, OpParams, get};
use crate::plan::decode::{Cx, Decode, scalar_text};
use crate::plan::node::{Kind, Node};
use crate::plan::values::Backend;
use crate::run::execplan::{Action, Estimate, Fidelity, Marker, human_bytes};
use crate::run::planner::{Draft, PlanCx};

crate::keywords! {
    /// pg_dump's archive format.
    pub enum Format ("a backup format") {
        /// `pg_dump -Fc`: one compressed file, restorable selectively.
        Custom = "custom",
        /// `pg_dump -Fd`: a directory, dumped in parallel with `jobs`.
        Directory = "directory",
        /// `pg_dump -Fp`: a plain SQL script.
        Plain = "plain",
    }
}

/// How the new backup is checked before it replaces older ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Verify {
    /// Not checked.
    No,
    /// Read back entirely (`pg_restore -f /dev/null`; SQLite `integrity_check`).
    Read,
    /// Restored into a scratch database and row counts compared; where,
    /// on PostgreSQL, the map form says (`verify: restore` says nothing).
    Restore(Option<RestoreVerify>),
}

crate::params! {
    /// `verify` as a map: a restore check, and the server it restores into.
    pub struct RestoreVerify ("verify options") {
        required {}
        optional {
            /// PostgreSQL server the backup is restored into for the check (a URL; its database is only where dbmaint connects to create the scratch database). The safe choice for production: a full copy never lands on the server being verified.
            restore_to: String,
            /// Restore into the server the backup is of: its data volume must hold a full copy (the diff says how big).
            same_server: bool,
        }
    }
}

impl Verify {
    /// `no`, `read` or `restore`, as the executor and the diff name it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Read => "read",
            Self::Restore(_) => "restore",
        }
    }
}

impl Decode for Verify {
    const EXPECTED: &'static str = "`true`, `false`, `restore` or a map `{restore_to: URL}` / `{same_server: true}`";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        if let Kind::Map(_) = &node.kind {
            return RestoreVerify::decode(node, cx).map(|r| Self::Restore(Some(r)));
        }
        match (&node.kind, scalar_text(node).as_deref()) {
            (Kind::Bool(true), _) | (Kind::Str(_), Some("true")) => Some(Self::Read),
            (Kind::Bool(false), _) | (Kind::Str(_), Some("false")) => Some(Self::No),
            (Kind::Str(_), Some("restore")) => Some(Self::Restore(None)),
            _ => {
                cx.invalid(node, format!("`verify` must be {}", Self::EXPECTED), None);
                None
            }
        }
    }
}

impl Serialize for Verify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::No => s.serialize_bool(false),
            Self::Read => s.serialize_bool(true),
            Self::Restore(None) => s.serialize_str("restore"),
            Self::Restore(Some(r)) => r.serialize(s),
        }
    }
}

impl JsonSchema for Verify {
    fn schema_name() -> Cow<'static, str> {
        "Verify".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let map = generator.subschema_for::<RestoreVerify>();
        json_schema!({
            "description": "true: read the whole backup back; restore (SQLite) or {restore_to: URL} / {same_server: true} (PostgreSQL): restore into a scratch database and compare row counts",
            "anyOf": [{"type": "boolean"}, {"const": "restore"}, map]
        })
    }
}

crate::params! {
    /// Parameters of `backup`.
    pub struct Backup ("backup parameters") {
        required {}
        optional {
            /// Archive format (PostgreSQL): `custom` (default), `directory`, `plain`.
            format: Format,
            /// Directory the backup is written to (default `backups`), relative to the working directory.
            dir: String,
            /// Parallel pg_dump jobs; only with `format: directory`.
            jobs: u64,
            /// Compression level 0..9 passed to pg_dump.
            compress: u64,
            /// Check the backup before keeping it (default `true`).
            verify: Verify,
            /// Keep this many of this step's backups (the new one included); older ones the journal knows are removed after the new one verified.
            keep: u64,
            /// Keep every backup of this step younger than this many days; with `keep`, both are kept.
            keep_days: u64,
        }
    }
}

impl OpParams for Backup {
    const KEY: &'static str = "backup";
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        if let Some(jobs) = &self.jobs {
            let directory = self.format.as_ref().is_some_and(|f| f.value == Format::Directory);
            if !directory {
                c.error(
                    "invalid-combination",
                    jobs.pos,
                    "`jobs` needs `format: directory`: pg_dump dumps in parallel only into a directory".to_string(),
                    "set `format: directory`, or remove `jobs`",
                );
            }
        }
        c.in_range(&self.jobs, "jobs", 1..=64);
        c.in_range(&self.compress, "compress", 0..=9);
        c.in_range(&self.keep, "keep", 1..=10_000);
        c.in_range(&self.keep_days, "keep_days", 1..=36_500);
        if let Some(dir) = &self.dir
            && dir.value.trim().is_empty()
        {
            c.error(
                "invalid-value",
                dir.pos,
                "`dir` is empty".to_string(),
                "name a directory, e.g. `backups`",
            );
        }
        if let Some(v) = &self.verify {
            check_restore_place(&v.value, v.pos, c);
            if v.value == Verify::No && (self.keep.is_some() || self.keep_days.is_some()) {
                c.warn(
                    "unverified-rotation",
                    v.pos,
                    "`verify: false` with `keep`/`keep_days`: rotation removes checked backups in favour of one nobody read back".to_string(),
                    "keep `verify: true` (the default), or drop `keep`/`keep_days`",
                );
            }
        }
        c.not_on(&self.format, "format", Backend::Sqlite);
        c.not_on(&self.jobs, "jobs", Backend::Sqlite);
        c.not_on(&self.compress, "compress", Backend::Sqlite);
    }
}

/// `verify: restore` on PostgreSQL restores a full copy: the plan says
/// where (a scratch server, or the server itself knowingly). A restore
/// into the verified server once filled its disk and crashed it.
fn check_restore_place(v: &Verify, pos: crate::plan::node::Pos, c: &mut OpCheck<'_>) {
    let Verify::Restore(place) = v else { return };
    let (to, same) = match place {
        Some(r) => (get(&r.restore_to), get(&r.same_server).unwrap_or(false)),
        None => (None, false),
    };
    if c.backend == Some(Backend::Sqlite) {
        if place.is_some() {
            c.error(
                "unsupported-backend",
                pos,
                "`restore_to` and `same_server` are PostgreSQL's; SQLite verifies its copy as a file".to_string(),
                "write `verify: restore`",
            );
        }
        return;
    }
    match (to, same) {
        (Some(_), true) => c.error(
            "invalid-combination",
            pos,
            "`verify` names both `restore_to` and `same_server: true`".to_string(),
            "keep one: `restore_to` (a scratch server) is the safe one",
        ),
        (None, false) if c.backend == Some(Backend::Postgres) => c.error(
            "unsafe-verify",
            pos,
            "`verify: restore` would restore a full copy into the server it verifies: on a volume with less free space than the copy it fills the disk and stops PostgreSQL".to_string(),
            "write `verify: {restore_to: \"postgres://scratch-host/postgres\"}` (a separate server), or `verify: {same_server: true}` when the volume holds a second copy",
        ),
        (Some(url), false) => match crate::plan::values::Target::parse(&url) {
            Ok(t) if t.backend != Backend::Postgres => c.error(
                "invalid-value",
                pos,
                "`restore_to` must be a PostgreSQL server".to_string(),
                "a URL such as `postgres://scratch-host/postgres`",
            ),
            Ok(t) if t.redacted() != t.expose_url() => c.error(
                "password-in-plan",
                pos,
                "`restore_to` carries a password".to_string(),
                "put it in ~/.pgpass or PGPASSFILE: passwords are never written into plans, saved plans or the journal",
            ),
            Ok(_) => {}
            Err(e) => c.error("invalid-value", pos, format!("`restore_to`: {}", e.message), e.hint.as_deref().unwrap_or_default()),
        },
        _ => {}
    }
}

impl Backup {
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let dir = get(&self.dir).unwrap_or_else(|| "backups".into());
        let format = match cx.backend {
            Backend::Postgres => get(&self.format).unwrap_or(Format::Custom).as_str().to_string(),
            Backend::Sqlite => "sqlite".to_string(),
        };
        let ext = match format.as_str() {
            "custom" => "dump",
            "directory" => "dir",
            "plain" => "sql",
            _ => "db",
        };
        let prefix = format!("{}-{}-", cx.plan.name, cx.step.id);
        // Two runs in one second would share a name: the later one gets a
        // suffix (the rename into place never overwrites, see exec).
        let stamp = cx.now.format("%Y%m%dT%H%M%SZ").to_string();
        let name = (0..)
            .map(|n| match n {
                0 => format!("{prefix}{stamp}.{ext}"),
                n => format!("{prefix}{stamp}-{n}.{ext}"),
            })
            .find(|n| !std::path::Path::new(&dir).join(n).exists())
            .unwrap_or_default();
        let path = std::path::Path::new(&dir).join(&name);
        let temp = std::path::Path::new(&dir).join(format!(".{name}.partial"));
        let verify_param = get(&self.verify).unwrap_or(Verify::Read);
        let verify = verify_param.name();
        let restore_to = match &verify_param {
            Verify::Restore(Some(r)) => get(&r.restore_to),
            _ => None,
        };
        let known = match cx
            .insp
            .fact::<Result<Vec<(journal::BackupRecord, journal::OnDisk)>, String>>(&fact_key(&cx.step.id))
        {
            Some(Ok(known)) => known.iter().filter(|(r, _)| r.plan == cx.plan.name).cloned().collect(),
            Some(Err(e)) => {
                return Draft::error(format!(
                    "cannot read the backup journal, so rotation cannot tell dbmaint's backups from other files: {e}"
                ));
            }
            None => vec![],
        };
        let last = known
            .iter()
            .rev()
            .find(|(r, disk)| r.format == format && *disk != journal::OnDisk::Missing)
            .map(|(r, _)| r.bytes);
        let compressed = format != "plain" && get(&self.compress) != Some(0);
        let sampled = cx.insp.fact::<sizing::DumpSize>(&size_key(&cx.step.id));
        let (bytes, basis) = match (cx.backend, &cx.insp.sqlite, last, sampled) {
            (Backend::Sqlite, Some(f), _, _) => ((f.page_count - f.freelist_count) * f.page_size, "used pages".into()),
            (_, _, Some(size), _) => (size, "the last backup".into()),
            (_, _, _, Some(s)) => (
                if compressed { s.compressed } else { s.plain },
                format!(
                    "a sample of the rows of {} of {} tables{}",
                    s.sampled,
                    s.tables,
                    if compressed { ", compressed as pg_dump does" } else { "" }
                ),
            ),
            _ => {
                // pg_dump compresses custom and directory dumps (level 6 by
                // default): a third of the heap is the usual outcome for
                // row data; a plain or `compress: 0` dump is about the heap.
                let data = table_data_bytes(cx);
                if compressed {
                    (data * 3 / 10, "the tables' data size, compressed ~3:1".into())
                } else {
                    (data, "the tables' data size".into())
                }
            }
        };
        let fidelity = Fidelity::Estimate;
        let mut d = Draft {
            marker: Some(Marker::Create),
            lock: match cx.backend {
                Backend::Postgres => "ACCESS SHARE on every dumped table (pg_dump)".into(),
                Backend::Sqlite => "a read transaction (VACUUM INTO)".into(),
            },
            compensation: format!(
                "a failed or killed backup removes its partial file `{}`",
                temp.display()
            ),
            ..Draft::default()
        };
        d.object(
            Marker::Create,
            "file",
            path.display().to_string(),
            format!(
                "~{} ({format}, estimated from {basis}), verify: {verify}",
                human_bytes(bytes)
            ),
            serde_json::json!({"bytes": bytes, "format": format, "verify": verify}),
        );
        if let Some(Ok(left)) = cx.insp.fact::<Result<Vec<journal::ScratchLeft>, String>>(SCRATCH_LEFT) {
            for l in left {
                d.object(
                    Marker::Remove,
                    "database",
                    l.name.clone(),
                    format!(
                        "scratch database an interrupted `verify: restore` left ({}, {}): dropped before the backup",
                        if l.server == exec::SAME_SERVER {
                            "on this server"
                        } else {
                            l.server.as_str()
                        },
                        l.created_at
                    ),
                    serde_json::json!({}),
                );
            }
        }
        if cx.backend == Backend::Postgres {
            let readable = cx.insp.tables.iter().all(|t| t.access.select);
            d.privileges.extend(cx.need_role(
                "pg_read_all_data",
                |r| r.read_all_data || readable,
                "pg_dump reads every table (the role can read them all, or needs this)",
            ));
            if verify == "restore"
                && restore_to.is_none()
                && let Some(role) = &cx.insp.role
            {
                d.privileges.push(crate::run::execplan::Need {
                    what: "CREATEDB: `verify: restore` creates its scratch database".into(),
                    grant: format!("ALTER ROLE {} CREATEDB;", crate::db::quote_ident(&role.name)),
                    held: role.superuser || role.createdb,
                });
            }
        }
        if let Some(problem) = space_problem(&dir, bytes) {
            d.errors.push(problem);
        }
        let rotation = rotate::select(&known, get(&self.keep), get(&self.keep_days), cx.now);
        let rule = rotation_rule(get(&self.keep), get(&self.keep_days));
        for r in &rotation.remove {
            d.object(
                Marker::Remove,
                "file",
                r.path.clone(),
                format!(
                    "{} of {}, removed after the new backup verified ({rule})",
                    human_bytes(r.bytes),
                    r.created_at
                ),
                serde_json::json!({"bytes": r.bytes, "backup_id": r.id}),
            );
        }
        for (r, why) in &rotation.spared {
            d.object(
                Marker::Read,
                "file",
                r.path.clone(),
                format!("beyond {rule} but {why}"),
                serde_json::json!({"backup_id": r.id}),
            );
        }
        for unknown in unknown_files(&dir, &prefix, ext, &known) {
            d.object(
                Marker::Read,
                "file",
                unknown,
                "named like this step's backups but not in dbmaint's journal: never removed".into(),
                serde_json::json!({}),
            );
        }
        d.statements.push(match cx.backend {
            Backend::Postgres => {
                let mut cmd = format!(
                    "pg_dump --format={format} --file={} --no-password --exclude-schema=dbmaint",
                    temp.display()
                );
                if let Some(j) = get(&self.jobs) {
                    cmd.push_str(&format!(" --jobs={j}"));
                }
                if let Some(z) = get(&self.compress) {
                    cmd.push_str(&format!(" --compress={z}"));
                }
                cmd + " <target without password; password via PGPASSWORD>"
            }
            Backend::Sqlite => format!("VACUUM INTO '{}'", temp.display()),
        });
        if verify == "restore" && cx.backend == Backend::Postgres {
            // The scratch database lives only while verification runs.
            let scratch = "dbmaint_verify_<run>_<pid>";
            let place = match &restore_to {
                Some(url) => format!("on the scratch server {url}"),
                None => format!(
                    "on the server it verifies (same_server: true): a full copy of ~{} on its data volume",
                    human_bytes(cx.insp.database_bytes)
                ),
            };
            d.object(
                Marker::Create,
                "database",
                scratch.to_string(),
                format!("scratch database for `verify: restore` {place}: journaled, created from template0, restored, counted against the dump's snapshot, dropped"),
                serde_json::json!({"bytes": cx.insp.database_bytes}),
            );
            d.statements.extend([
                format!("CREATE DATABASE {scratch} TEMPLATE template0"),
                format!(
                    "{} <scratch database> {}",
                    if format == "plain" {
                        "psql -X -v ON_ERROR_STOP=1 --file"
                    } else {
                        "pg_restore --no-owner --no-privileges --no-subscriptions --exit-on-error"
                    },
                    temp.display()
                ),
                format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"),
            ]);
        }
        d.summary = format!("write `{}` (~{})", path.display(), human_bytes(bytes));
        d.estimate = Some(Estimate {
            rows: 0,
            bytes,
            fidelity,
            ..Estimate::NONE
        });
        let temp_path = temp.display().to_string();
        let write = Action::op(
            <Backup as OpParams>::KEY,
            &Work::Write(Box::new(BackupWork {
                path: path.display().to_string(),
                temp_path: temp.display().to_string(),
                format,
                jobs: get(&self.jobs),
                compress: get(&self.compress),
                verify: verify.into(),
                prune: rotation.remove,
                prune_prefix: prefix,
                dir,
                plan: cx.plan.name.clone(),
                step: cx.step.id.clone(),
                restore_to,
            })),
        );
        d.actions.push(write.undone_by(
            format!("remove the partial file `{temp_path}`"),
            Action::op(<Backup as OpParams>::KEY, &Work::RemovePartial { temp_path }),
        ));
        d
    }
}

/// Journals the backup just written (and writes its manifest), then
/// removes exactly the earlier backups the diff listed. A backup the
/// journal could not record is kept and fails the step: without its
/// record, no later rotation could count it.
async fn record_and_rotate(
    run: &mut crate::run::steprun::StepRun<'_>,
    work: &BackupWork,
    done: &exec::BackupDone,
) -> Result<(), crate::run::steprun::StepErr> {
    use crate::run::steprun::StepErr;
    let target = run.target().clone();
    let database = source_identity(run.session().await?, &target).await;
    let not_recorded = |why: String| {
        StepErr::failed(format!(
            "the backup `{}` is written and verified but not journaled ({why}); it is kept, and no older backup was removed",
            work.path
        ))
    };
    let mut record = exec::record_of(work, done, run.run_id(), &database)
        .await
        .map_err(not_recorded)?;
    let session = run.session().await?;
    record.id = journal::insert(session, &record)
        .await
        .map_err(|e| not_recorded(e.message))?;
    if let Err(e) = journal::write_manifest(&record) {
        run.warn(format!("cannot write the manifest beside `{}`: {e}", work.path));
    }
    for old in &work.prune {
        match exec::remove_known(old, &work.path).await {
            Ok(removed) => {
                let session = run.session().await?;
                if let Err(e) = journal::mark_removed(session, old.id).await {
                    run.warn(format!("{removed}, but the journal still lists it: {}", e.message));
                }
                run.object_done(removed);
            }
            Err(why) => run.warn(format!("rotation: {why}")),
        }
    }
    Ok(())
}

/// What a backup is of, as its record says: `<system identifier>/<database>`
/// on PostgreSQL (one per cluster, so a restore can tell "the same
/// database" from a namesake elsewhere), the file's real path on SQLite.
pub async fn source_identity(c: &mut crate::db::Conn, target: &crate::plan::values::Target) -> String {
    match target.backend {
        Backend::Sqlite => std::fs::canonicalize(&target.database)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| target.database.clone()),
        Backend::Postgres => match c.identity(target).await {
            Ok(i) => format!("{}/{}", i.system_identifier.unwrap_or_default(), i.database),
            Err(_) => format!("/{}", target.database),
        },
    }
}

/// Where the inspection keeps a step's journaled backups.
fn fact_key(step: &str) -> String {
    format!("backup#{step}")
}

/// Where the inspection keeps the first backup's sampled size.
fn size_key(step: &str) -> String {
    format!("backup-size#{step}")
}

/// Where the inspection keeps the scratch databases killed runs left.
const SCRATCH_LEFT: &str = "backup#scratch-left";

/// `keep: 2`, `keep_days: 3`, or both.
fn rotation_rule(keep: Option<u64>, keep_days: Option<u64>) -> String {
    match (keep, keep_days) {
        (Some(n), Some(d)) => format!("keep: {n}, keep_days: {d}"),
        (Some(n), None) => format!("keep: {n}"),
        (None, Some(d)) => format!("keep_days: {d}"),
        (None, None) => "no rotation".into(),
    }
}

/// Heap and TOAST bytes of every table (indexes are not dumped, only
/// their definitions): the first backup's estimate.
fn table_data_bytes(cx: &PlanCx<'_>) -> u64 {
    let tables = &cx.insp.catalog.tables;
    if tables.is_empty() {
        return cx.insp.database_bytes;
    }
    tables
        .iter()
        .map(|t| t.total_bytes.saturating_sub(t.indexes.iter().map(|i| i.bytes).sum()))
        .sum()
}

/// Files in `dir` named like this step's backups that the journal does
/// not know (an operator's copy, a backup from before the journal).
fn unknown_files(
    dir: &str,
    prefix: &str,
    ext: &str,
    known: &[(journal::BackupRecord, journal::OnDisk)],
) -> Vec<String> {
    let known: std::collections::HashSet<std::path::PathBuf> =
        known.iter().map(|(r, _)| std::path::PathBuf::from(&r.path)).collect();
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let ours = name.starts_with(prefix) && name.ends_with(&format!(".{ext}"));
            let path = std::fs::canonicalize(e.path()).unwrap_or(e.path());
            (ours && !known.contains(&path)).then(|| e.path().display().to_string())
        })
        .collect();
    out.sort();
    out
}

/// Free space of the filesystem `dir` is (or will be) on.
pub fn free_bytes(dir: &str) -> Option<u64> {
    let mut p = std::path::Path::new(dir).to_path_buf();
    if p.as_os_str().is_empty() {
        p = ".".into();
    }
    // The directory may not exist yet: ask its nearest existing ancestor.
    let existing = p
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())
        .map(|a| a.to_path_buf());
    let at = existing.unwrap_or_else(|| ".".into());
    super::free_bytes(&at.display().to_string()).ok()
}

/// Refuses before writing a backup that cannot fit where it goes.
fn space_problem(dir: &str, estimate: u64) -> Option<String> {
    let free = free_bytes(dir)?;
    (free < estimate).then(|| {
        format!(
            "the backup (~{}) does not fit in `{dir}`: {} free; free space there or set `dir` to a larger volume",
            human_bytes(estimate),
            human_bytes(free)
        )
    })
}

impl crate::run::operation::Operation for Backup {
    /// The backups this step made before, from the journal, and what is
    /// on disk of each (size and time; the checksum when the time moved).
    fn read<'a>(
        &'a self,
        step: &'a crate::plan::Step,
        insp: &'a mut crate::run::inspect::Inspection,
        conn: &'a mut crate::db::Conn,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let records = journal::records(conn, false).await.map_err(|e| e.message).map(|all| {
                all.into_iter()
                    .filter(|r| r.step == step.id)
                    .map(|r| {
                        let disk = journal::on_disk(&r, false);
                        (r, disk)
                    })
                    .collect::<Vec<_>>()
            });
            // The first backup of its format has no last one to go by:
            // its size is sampled (see `sizing`).
            let format = get(&self.format).unwrap_or(Format::Custom).as_str();
            let first = records.as_ref().map_or(true, |rs| {
                !rs.iter()
                    .any(|(r, disk)| r.format == format && *disk != journal::OnDisk::Missing)
            });
            if first && conn.backend() == Backend::Postgres {
                // pg_dump's default level is zlib's default, 6.
                let level = get(&self.compress).unwrap_or(6);
                let size = sizing::dump_size(conn, &insp.catalog.tables, level).await;
                insp.keep(size_key(&step.id), size);
            }
            insp.keep(fact_key(&step.id), records);
            if !insp.facts.contains_key(SCRATCH_LEFT) {
                let left = journal::scratch_leftovers(conn).await.map_err(|e| e.message);
                insp.keep(SCRATCH_LEFT, left);
            }
        })
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        Backup::plan(self, cx)
    }
}

/// What a `backup` action does.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Work {
    Write(Box<BackupWork>),
    /// The undo of a failed `Write`: its partial file removed.
    RemovePartial {
        temp_path: String,
    },
}

/// A backup to write.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BackupWork {
    /// The final path, written only after verification.
    pub path: String,
    /// The temporary path the child writes to.
    pub temp_path: String,
    /// `custom`, `directory`, `plain` (pg_dump) or `sqlite` (`VACUUM INTO`).
    pub format: String,
    pub jobs: Option<u64>,
    pub compress: Option<u64>,
    /// `no`, `read` or `restore`.
    pub verify: String,
    /// The earlier backups rotation removes once this one verified: the
    /// journal's records the diff listed, and no other file.
    #[serde(default)]
    pub prune: Vec<journal::BackupRecord>,
    /// Names of this plan's and step's backups (and partial files) start with this.
    pub prune_prefix: String,
    pub dir: String,
    /// Plan and step, for the journal's record.
    #[serde(default)]
    pub plan: String,
    #[serde(default)]
    pub step: String,
    /// `verify: {restore_to: URL}`: the scratch server (no password in it).
    #[serde(default)]
    pub restore_to: Option<String>,
}

/// Runs a backup: the child (or `VACUUM INTO`), verification, the rename.
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Backup as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut crate::run::steprun::StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::run::steprun::StepErr>> {
        Box::pin(async move {
            use crate::run::steprun::StepErr;
            let work = match crate::run::operation::decode_work(self.key(), work)? {
                Work::Write(work) => work,
                Work::RemovePartial { temp_path } => {
                    return match exec::remove_partial(&temp_path) {
                        Ok(Some(removed)) => {
                            run.result().rolled_back = Some(removed);
                            Ok(())
                        }
                        Ok(None) => {
                            run.result().rolled_back = Some("no partial file was left".into());
                            Ok(())
                        }
                        Err(left) => Err(StepErr::failed(left)),
                    };
                }
            };
            for stale in exec::remove_stale_partials(&work) {
                run.undone(format!("removed `{stale}`, left by an interrupted run"));
            }
            if run.target().backend == Backend::Postgres {
                let (dropped, left) = exec::drop_scratch_leftovers(run.target()).await;
                for d in dropped {
                    run.undone(d);
                }
                if let Some(left) = left {
                    run.result().cleanup_failed = Some(left.clone());
                    run.warn(left);
                }
            }
            let timeouts = (run.step.lock_timeout_ms, run.step.statement_timeout_ms);
            let target = run.target().clone();
            match exec::run(&work, &target, timeouts, run.run_id()).await {
                Ok(done) => {
                    let r = run.result();
                    r.bytes += done.bytes;
                    r.statements += 1;
                    r.cleanup_failed = done.cleanup_failed.clone();
                    run.object_done(format!("{} ({})", work.path, done.verified));
                    record_and_rotate(run, &work, &done).await
                }
                Err(e) => {
                    run.result().cleanup_failed = e.cleanup_failed;
                    Err(StepErr::failed(e.message))
                }
            }
        })
    }

    /// A backup's statements name its file, whose name carries the time:
    /// they differ on every computation and say nothing of drift.
    fn drift(
        &self,
        _saved: &crate::run::execplan::PlannedStep,
        _fresh: &crate::run::execplan::PlannedStep,
    ) -> crate::run::operation::StepDrift {
        crate::run::operation::StepDrift::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn jobs_need_directory_format() {
        assert_eq!(
            findings::<Backup>("{format: custom, jobs: 4}", Backend::Postgres),
            ["invalid-combination"]
        );
        assert!(
            findings::<Backup>(
                "{format: directory, jobs: 4, verify: {same_server: true}, keep: 7}",
                Backend::Postgres
            )
            .is_empty()
        );
    }

    #[test]
    fn a_postgres_restore_check_says_where_it_restores() {
        let pg = |p: &str| findings::<Backup>(p, Backend::Postgres);
        assert_eq!(pg("{verify: restore}"), ["unsafe-verify"]);
        assert!(pg("{verify: {restore_to: \"postgres://scratch/postgres\"}}").is_empty());
        assert!(pg("{verify: {same_server: true}}").is_empty());
        assert_eq!(
            pg("{verify: {restore_to: \"postgres://u:secret@scratch/postgres\"}}"),
            ["password-in-plan"]
        );
        assert_eq!(
            pg("{verify: {restore_to: \"postgres://scratch/postgres\", same_server: true}}"),
            ["invalid-combination"]
        );
        assert_eq!(pg("{verify: {restore_too: x}}").len(), 1, "unknown keys are errors");
        assert!(findings::<Backup>("{verify: restore}", Backend::Sqlite).is_empty());
        assert_eq!(
            findings::<Backup>("{verify: {same_server: true}}", Backend::Sqlite),
            ["unsupported-backend"]
        );
    }

    #[test]
    fn unknown_format_suggests_the_closest() {
        assert_eq!(
            findings::<Backup>("{format: custon}", Backend::Postgres),
            ["invalid-value"]
        );
    }
}
