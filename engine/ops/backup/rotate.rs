//! Rotation: which of a step's earlier backups a new one makes redundant.
//!
//! Only backups the journal knows are candidates, ordered by the
//! journal's time (never by file name: an operator's copy named like a
//! backup once sorted after the timestamps and `keep: 1` deleted every
//! real backup instead). The new backup counts as the newest and is never
//! removed; `keep: N` keeps the newest N, `keep_days: D` everything younger
//! than D days, and both together keep the union. A file whose size or
//! checksum changed since dbmaint wrote it is kept and named.

use chrono::{DateTime, Utc};

use super::journal::{BackupRecord, OnDisk};

/// What rotation decides, before the backup runs (the diff) and applied
/// exactly as listed after it verified.
#[derive(Debug, Default, PartialEq)]
pub struct Rotation {
    /// Records whose files are removed, oldest first.
    pub remove: Vec<BackupRecord>,
    /// Known records left alone although beyond `keep`/`keep_days`, and why.
    pub spared: Vec<(BackupRecord, &'static str)>,
}

/// Decides rotation among `known` (this plan's and step's records, not
/// yet removed, with what is on disk for each).
pub fn select(
    known: &[(BackupRecord, OnDisk)],
    keep: Option<u64>,
    keep_days: Option<u64>,
    now: DateTime<Utc>,
) -> Rotation {
    let mut out = Rotation::default();
    if keep.is_none() && keep_days.is_none() {
        return out;
    }
    let mut newest_first: Vec<&(BackupRecord, OnDisk)> = known.iter().collect();
    newest_first.sort_by(|a, b| (&b.0.created_at, b.0.id).cmp(&(&a.0.created_at, a.0.id)));
    // The new backup is number 1 of the N kept.
    for (i, (record, disk)) in newest_first.into_iter().enumerate() {
        let by_count = keep.is_some_and(|n| (i as u64 + 1) < n);
        let by_age = keep_days.is_some_and(|d| record.age_secs(now) < (d as i64) * 86_400);
        if by_count || by_age {
            continue;
        }
        match disk {
            OnDisk::Intact => out.remove.push(record.clone()),
            OnDisk::Missing => out.spared.push((record.clone(), "already missing on disk")),
            OnDisk::Changed => out.spared.push((
                record.clone(),
                "changed since dbmaint wrote it (size or checksum): kept, check it by hand",
            )),
        }
    }
    out.remove.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, days_ago: i64, now: DateTime<Utc>) -> BackupRecord {
        BackupRecord {
            id,
            run_id: None,
            plan: "p".into(),
            step: "dump".into(),
            path: format!("/b/p-dump-{id}.dump"),
            format: "custom".into(),
            bytes: 1,
            sha256: String::new(),
            modified: String::new(),
            verified: super::super::journal::VERIFIED.into(),
            verify_note: String::new(),
            counts: None,
            created_at: (now - chrono::Duration::days(days_ago)).to_rfc3339(),
            verified_at: None,
            removed_at: None,
            database: String::new(),
        }
    }

    fn ids(r: &[BackupRecord]) -> Vec<i64> {
        r.iter().map(|r| r.id).collect()
    }

    #[test]
    fn keep_counts_the_new_backup_and_removes_the_oldest_first() {
        let now = Utc::now();
        let known: Vec<_> = (1..=4).map(|i| (record(i, 10 - i, now), OnDisk::Intact)).collect();
        assert_eq!(ids(&select(&known, Some(2), None, now).remove), [1, 2, 3]);
        assert_eq!(ids(&select(&known, Some(1), None, now).remove), [1, 2, 3, 4]);
        assert!(select(&known, Some(5), None, now).remove.is_empty());
        assert!(
            select(&known, None, None, now).remove.is_empty(),
            "no rule, nothing removed"
        );
    }

    #[test]
    fn keep_and_keep_days_keep_the_union() {
        let now = Utc::now();
        // Ages 5, 4, 2, 1 days.
        let known: Vec<_> = [(1, 5), (2, 4), (3, 2), (4, 1)]
            .into_iter()
            .map(|(i, d)| (record(i, d, now), OnDisk::Intact))
            .collect();
        // keep: 2 keeps #4 (with the new one); keep_days: 3 keeps #3 and #4.
        assert_eq!(ids(&select(&known, Some(2), Some(3), now).remove), [1, 2]);
        assert_eq!(ids(&select(&known, None, Some(3), now).remove), [1, 2]);
        assert_eq!(ids(&select(&known, Some(4), Some(1), now).remove), [1]);
    }

    #[test]
    fn keep_days_keeps_what_is_younger_than_the_days_and_no_more() {
        // Exactly 3 days old is beyond `keep_days: 3`; a second younger is kept.
        let now = Utc::now();
        let mut on_the_day = record(1, 0, now);
        on_the_day.created_at = (now - chrono::Duration::seconds(3 * 86_400)).to_rfc3339();
        let mut a_second_younger = record(2, 0, now);
        a_second_younger.created_at = (now - chrono::Duration::seconds(3 * 86_400 - 1)).to_rfc3339();
        let known = vec![(on_the_day, OnDisk::Intact), (a_second_younger, OnDisk::Intact)];
        assert_eq!(ids(&select(&known, None, Some(3), now).remove), [1]);
    }

    #[test]
    fn the_journal_time_orders_not_the_name() {
        let now = Utc::now();
        let mut late_name = record(1, 1, now);
        late_name.path = "/b/p-dump-zzz-manual-copy.dump".into();
        let known = vec![(late_name, OnDisk::Intact), (record(2, 3, now), OnDisk::Intact)];
        assert_eq!(ids(&select(&known, Some(2), None, now).remove), [2]);
    }

    #[test]
    fn changed_or_missing_files_are_spared_and_named() {
        let now = Utc::now();
        let known = vec![
            (record(1, 3, now), OnDisk::Changed),
            (record(2, 2, now), OnDisk::Missing),
            (record(3, 1, now), OnDisk::Intact),
        ];
        let r = select(&known, Some(1), None, now);
        assert_eq!(ids(&r.remove), [3]);
        assert_eq!(r.spared.len(), 2);
        assert!(r.spared.iter().any(|(s, why)| s.id == 1 && why.contains("changed")));
    }
}
