//! What the operator reads: the diff (text and JSON), the reporter (live
//! lines, progress bars, the JSON log, the final report) and the text
//! helpers that keep database-supplied strings from steering a terminal.
//! It renders values the run computed; it decides nothing.

pub mod diff;
pub mod html;
pub mod metrics;
pub mod monitor;
pub mod reporter;
pub mod text;
pub mod textsafe;
