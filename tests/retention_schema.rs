//! Retention on the schemas real applications have (issue 11): archives
//! that would change a value are refused before anything is deleted.

use std::path::Path;

use crate::engine::{dbmaint, pg_count, rt};
use crate::pg::seeded_db;

fn plan(dir: &Path, target: &str, retention: &str) -> std::path::PathBuf {
    let path = dir.join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: rs\ntarget: \"{target}\"\nsteps:\n  purge:\n    retention: {{ {retention} }}\n"),
    )
    .expect("plan");
    path
}

#[test]
fn postgres_an_archive_that_would_narrow_a_value_is_refused_and_nothing_moves() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE pay (id int PRIMARY KEY, created_at timestamptz, amount numeric(10,4), note varchar(40)); \
         INSERT INTO pay SELECT g, now() - g * interval '1 day', 30.6789, 'n' FROM generate_series(1, 100) g; \
         CREATE TABLE pay_archive (id int PRIMARY KEY, created_at date, amount integer, note text);",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(
        dir.path(),
        &url,
        "table: pay, column: created_at, older_than: 30 days, archive: { table: pay_archive }",
    );
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would change values of `pay`"), "{text}");
    assert!(text.contains("amount numeric(10,4) → integer"), "{text}");
    assert!(text.contains("created_at timestamp with time zone → date"), "{text}");
    // varchar(40) → text keeps every value: not listed.
    assert!(!text.contains("note character varying"), "{text}");
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&p)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM pay")), 100);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM pay_archive")), 0);
    // With the source's types the same plan archives and deletes.
    rt.block_on(async {
        let mut c = crate::pg::connect(&url).await;
        sqlx::raw_sql("ALTER TABLE pay_archive ALTER created_at TYPE timestamptz, ALTER amount TYPE numeric(12,4)")
            .execute(&mut c)
            .await
            .expect("alter");
    });
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&p)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM pay_archive WHERE amount = 30.6789"
        )),
        70
    );
}
