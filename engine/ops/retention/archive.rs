//! File archives of `retention`: JSON Lines, one object per row,
//! `{"key": …, "row": {…}}`. A batch's lines are appended and fsynced
//! before the transaction that deletes those rows commits, so a row is
//! never gone from the database without being on disk. Appending rather
//! than rewriting-and-renaming keeps each batch's cost proportional to the
//! batch; what a rename would have protected is restored on open instead:
//!
//! - a process killed in the middle of a write leaves a torn last line:
//!   `open` cuts the file back to its last complete line;
//! - a process killed between the fsync and the commit leaves its last
//!   batch both on disk and in the table: `open` reads the keys of the last
//!   `tail` lines and `append` skips rows already written, so a rerun does
//!   not write them twice. (Should the batch size shrink between runs, an
//!   older duplicate can slip through; `key` is there for readers to
//!   deduplicate on, as docs/operations.md says.)

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An open archive file.
#[derive(Debug)]
pub struct ArchiveFile {
    path: PathBuf,
    file: File,
    pub rows_written: u64,
    /// Keys of the file's last lines from before this run.
    tail_keys: HashSet<String>,
    /// Bytes cut from a torn last line on open.
    pub repaired_bytes: u64,
}

/// Why an archive file could not be used; the batch that needed it rolls
/// back (nothing is deleted that is not on disk).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot create archive directory `{dir}`: {source}")]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot open archive file `{path}`: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot read archive file `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write archive file `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl ArchiveFile {
    /// Opens (creating) the file for appending; creates its directory;
    /// repairs a torn last line and remembers the keys of the last `tail`
    /// lines (the most a batch that did not commit can have written).
    pub fn open(path: &Path, tail: usize) -> Result<Self, ArchiveError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ArchiveError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|source| ArchiveError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let (tail_text, repaired_bytes) = read_tail(&mut file, tail).map_err(|source| ArchiveError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let tail_keys = tail_text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["key"].as_str().map(String::from))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            rows_written: 0,
            tail_keys,
            repaired_bytes,
        })
    }

    /// Appends `(key, row JSON)` lines and fsyncs them.
    pub fn append(&mut self, rows: &[(String, String)]) -> Result<(), ArchiveError> {
        let mut buf = String::new();
        let mut written = 0;
        for (key, row) in rows {
            if self.tail_keys.contains(key) {
                continue;
            }
            written += 1;
            buf.push_str("{\"key\":");
            buf.push_str(&serde_json::Value::String(key.clone()).to_string());
            buf.push_str(",\"row\":");
            buf.push_str(row);
            buf.push_str("}\n");
        }
        self.file
            .write_all(buf.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| ArchiveError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.rows_written += written;
        Ok(())
    }
}

/// The last `lines` complete lines of `file`, after cutting a torn last
/// line (bytes after the final newline) off the file itself.
fn read_tail(file: &mut File, lines: usize) -> std::io::Result<(String, u64)> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let mut start = len;
    let mut buf: Vec<u8> = vec![];
    // Read backwards until we hold `lines + 1` newlines or the whole file.
    while start > 0 && buf.iter().filter(|&&b| b == b'\n').count() <= lines {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
    }
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = (buf.len() - complete) as u64;
    if torn > 0 {
        file.set_len(len - torn)?;
        file.sync_data()?;
    }
    buf.truncate(complete);
    let text = String::from_utf8_lossy(&buf);
    let kept: Vec<&str> = text.lines().rev().take(lines).collect();
    Ok((kept.into_iter().rev().collect::<Vec<_>>().join("\n"), torn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's lines can span more than one read chunk (wide rows): the
    /// tail holds all of them, so a rerun skips every row the killed run
    /// wrote, not only those of the last 64 KiB.
    #[test]
    fn the_tail_holds_every_line_asked_for_across_chunks() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("archive.jsonl");
        let wide = "x".repeat(2000);
        let text: String = (0..100)
            .map(|i| format!("{{\"key\":\"{i}\",\"row\":\"{wide}\"}}\n"))
            .collect();
        // And a torn last line, as a kill mid-write leaves.
        std::fs::write(&path, format!("{text}{{\"key\":\"100\",\"ro")).expect("test setup");
        let f = ArchiveFile::open(&path, 50).expect("open");
        let expected: HashSet<String> = (50..100).map(|i| i.to_string()).collect();
        assert_eq!(f.tail_keys, expected, "the last 50 lines (~100 KiB) are all read");
        assert_eq!(f.repaired_bytes, 16, "the torn line is cut");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }

    #[test]
    fn appended_lines_carry_their_key() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("sub/archive.jsonl");
        let mut f = ArchiveFile::open(&path, 10).expect("test setup");
        f.append(&[("1".into(), "{\"id\":1}".into()), ("2".into(), "{\"id\":2}".into())])
            .expect("test setup");
        let text = std::fs::read_to_string(&path).expect("test setup");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("test setup"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["key"], "2");
        assert_eq!(lines[1]["row"]["id"], 2);
        assert_eq!(f.rows_written, 2);
    }

    #[test]
    fn a_torn_line_is_cut_and_the_last_batch_is_not_written_twice() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("archive.jsonl");
        let mut f = ArchiveFile::open(&path, 2).expect("test setup");
        let rows = |keys: &[u32]| -> Vec<(String, String)> {
            keys.iter()
                .map(|k| (k.to_string(), format!("{{\"id\":{k}}}")))
                .collect()
        };
        f.append(&rows(&[1, 2])).expect("test setup");
        f.append(&rows(&[3, 4])).expect("test setup");
        drop(f);
        // A kill in the middle of the next write.
        let mut raw = OpenOptions::new().append(true).open(&path).expect("test setup");
        raw.write_all(b"{\"key\":\"5\",\"ro").expect("test setup");
        drop(raw);
        // The rerun: batch 3-4 did not commit, so it comes again, then 5.
        let mut f = ArchiveFile::open(&path, 2).expect("reopen");
        assert_eq!(f.repaired_bytes, 14, "the torn line is 14 bytes");
        f.append(&rows(&[3, 4])).expect("append");
        f.append(&rows(&[5])).expect("append");
        let keys: Vec<String> = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is whole JSON")["key"].to_string())
            .collect();
        assert_eq!(keys, ["\"1\"", "\"2\"", "\"3\"", "\"4\"", "\"5\""]);
    }
}
