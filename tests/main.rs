//! All integration tests, in one binary to keep link time down.

mod backup;
mod bloat;
mod checks;
mod cli;
mod connect;
mod engine;
mod fixtures;
mod kill;
mod limits;
mod lock;
mod names;
mod overlays;
mod partitions;
mod plans;
mod props;
mod refresh_views;
mod reindex;
mod retention_keys;
mod retention_schema;
mod retention_time;
mod samples;
mod schema;
mod sql_op;
mod support;
mod templates;
