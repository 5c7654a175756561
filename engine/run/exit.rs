//! Exit codes, as the CLI contract defines them (`spec/cli.md` in the
//! project's shared specification, beside this repository); the README's
//! "Exit codes" table lists them with the extensions made here (130 for a
//! signal, 1 for a `partial` step).

/// Success (`plan diff --detailed-exitcode`: no changes).
pub const OK: i32 = 0;
/// An error: invalid plan, connection failure, a failed step.
pub const ERROR: i32 = 1;
/// `plan diff --detailed-exitcode`: success, and there are changes.
pub const CHANGES: i32 = 2;
/// `apply` stopped by `limits` with work left.
pub const LIMITS: i32 = 3;
/// Another apply holds the lock on this database.
pub const LOCKED: i32 = 4;
/// A rollback or cleanup itself failed.
pub const CLEANUP_FAILED: i32 = 5;
/// Monitoring found a problem, and dbmaint itself worked: a `check` step
/// failed on its findings (`fail_on`), `inspect checks --fail-on` found
/// some, or `history --stale-after` found the last success too old. An
/// extension of cli.md's table, distinct from 1 (dbmaint could not do its
/// job: a bad plan, a refused connection, a failed step).
pub const ALERT: i32 = 6;
/// `apply` stopped by SIGINT/SIGTERM with work left (128 + SIGINT, as shells
/// report it); an extension of cli.md's table.
pub const INTERRUPTED: i32 = 130;
