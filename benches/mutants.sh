#!/usr/bin/env bash
# Mutation testing of one area that decides what is destroyed or kept,
# with the tests that cover it (a whole-suite run per mutant does not fit
# a 2-core machine). Usage: benches/mutants.sh AREA [extra cargo-mutants args]
#   AREA: retention | archive | rotation | journal | verify | lock | drift | dryrun,
#         or one file of them: walk | timefmt | archivetypes | manage
# Needs `cargo install cargo-mutants` and what the tests need (PostgreSQL
# binaries; see .ci/run). Results: mutants.out/ (outcomes.json, caught.txt,
# missed.txt, timeout.txt); the summary line is what docs/benchmarks.md
# records.
set -euo pipefail
cd "$(dirname "$0")/.."
area="${1:?usage: benches/mutants.sh AREA (retention|archive|rotation|journal|verify|lock|drift|dryrun|walk|timefmt|archivetypes|manage)}"
shift
case "$area" in
  retention) files=(engine/ops/retention/batch.rs engine/ops/retention/walk.rs engine/ops/retention/work.rs engine/ops/retention/sql.rs engine/ops/retention/timefmt.rs)
             tests="retention" ;;
  archive)   files=(engine/ops/retention/archive.rs engine/ops/retention/archivetypes.rs)
             tests="retention" ;;
  rotation)  files=(engine/ops/backup/rotate.rs)
             tests="keep ops::backup::rotate" ;;
  journal)   files=(engine/ops/backup/journal.rs)
             tests="backup" ;;
  verify)    files=(engine/ops/backup/verify.rs engine/ops/backup/manage.rs)
             tests="backup" ;;
  lock)      files=(engine/db/applylock.rs)
             tests="lock" ;;
  drift)     files=(engine/ops/retention/keydigest.rs engine/run/mod.rs)
             # engine/run/mod.rs holds more than the drift check: only its mutants.
             set -- --re 'drift|digest' "$@"
             tests="saved ops::retention::keydigest" ;;
  dryrun)    files=(engine/run/inspect.rs engine/db/pg.rs)
             set -- --re 'connect|read_only|inspect' "$@"
             tests="diff connect db::pg" ;;
  walk)      files=(engine/ops/retention/walk.rs)
             # The retention tests but the slow ones (a real replica for
             # throttle, kill -9, a reindex chain): a caught mutant fails
             # every test it reaches, and each failing test waits out its
             # limit. The saved-plan and pause tests answer its drift and
             # pause mutants.
             tests="retention_keys retention_time retention_schema ops::retention limits::postgres_saved_plan limits::postgres_retention_pause" ;;
  timefmt)   files=(engine/ops/retention/timefmt.rs)
             tests="retention_time ops::retention::timefmt" ;;
  archivetypes) files=(engine/ops/retention/archivetypes.rs)
             # Pure type rules: their unit tests, and the refusal end to end.
             tests="ops::retention::archivetypes retention_schema" ;;
  manage)    files=(engine/ops/backup/manage.rs)
             # `dbmaint backups list|verify|restore`: the commands' tests.
             tests="backups:: ops::backup::manage" ;;
  *) echo "unknown area: $area" >&2; exit 2 ;;
esac
args=()
for f in "${files[@]}"; do args+=(--file "$f"); done
# The integration tests' names carry their area (`backups::…`,
# `retention_time::…`); each filter names the area's unit tests too
# (`ops::backup::rotate::…`): the filters (after `--`, for the test
# binaries: cargo takes one) apply to --lib as well, and a
# unit test no filter matches would not run.
# shellcheck disable=SC2086 # $tests is a list of filters
exec cargo mutants --profile mutants "${args[@]}" "$@" -- --lib --test main -- $tests
