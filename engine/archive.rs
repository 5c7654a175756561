//! File archives of `retention`: JSON Lines, one object per row,
//! `{"key": …, "row": {…}}`. A batch's lines are appended and fsynced
//! before the transaction that deletes those rows commits, so a row is
//! never gone from the database without being on disk. If the engine dies
//! between the fsync and the commit, the rows stay in the table and are
//! written again by the next run: readers deduplicate on `key` (the
//! journal's batch rows say which keys committed). Appending rather than
//! rewriting-and-renaming keeps each batch's cost proportional to the batch.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An open archive file.
#[derive(Debug)]
pub struct ArchiveFile {
    path: PathBuf,
    file: File,
    pub rows_written: u64,
}

impl ArchiveFile {
    /// Opens (creating) the file for appending; creates its directory.
    pub fn open(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create archive directory `{}`: {e}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open archive file `{}`: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            rows_written: 0,
        })
    }

    /// Appends `(key, row JSON)` lines and fsyncs them.
    pub fn append(&mut self, rows: &[(String, String)]) -> Result<(), String> {
        let mut buf = String::new();
        for (key, row) in rows {
            buf.push_str("{\"key\":");
            buf.push_str(&serde_json::Value::String(key.clone()).to_string());
            buf.push_str(",\"row\":");
            buf.push_str(row);
            buf.push_str("}\n");
        }
        self.file
            .write_all(buf.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot write archive file `{}`: {e}", self.path.display()))?;
        self.rows_written += rows.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_lines_carry_their_key() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("sub/archive.jsonl");
        let mut f = ArchiveFile::open(&path).expect("test setup");
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
}
