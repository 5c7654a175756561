//! `plan validate` speed: a generated plan of 1,000 steps and 3,000 `needs`
//! edges, loaded from a file through the whole pipeline (read, YAML, render,
//! decode, validate, graph). Target: under 100 ms in a release build.
//!
//! Run: `cargo bench --bench validate`. Criterion prints the time per load.

use std::fmt::Write as _;

use criterion::{Criterion, criterion_group, criterion_main};

/// Step `i` needs up to three earlier steps, chosen deterministically, so
/// the graph is acyclic with exactly 3,000 edges for 1,000 steps (the first
/// few steps have fewer predecessors; the shortfall is made up at the end).
fn generated_plan(steps: usize, edges: usize) -> String {
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); steps];
    let mut count = 0;
    let mut i = 1;
    let mut round = 0u64;
    while count < edges {
        let pick = ((i as u64).wrapping_mul(2_654_435_761).wrapping_add(round * 97) % i as u64) as usize;
        if !needs[i].contains(&pick) {
            needs[i].push(pick);
            count += 1;
        }
        i += 1;
        if i == steps {
            i = 1;
            round += 1;
        }
    }
    let mut s = String::from(
        "version: 1\nname: big\ntarget: postgres://maint@localhost/app\nvars:\n  days: 90\ndefaults:\n  lock_timeout: 2s\nsteps:\n",
    );
    for (i, n) in needs.iter().enumerate() {
        let list: Vec<String> = n.iter().map(|j| format!("step-{j}")).collect();
        let _ = writeln!(s, "  step-{i}:\n    needs: [{}]", list.join(", "));
        match i % 4 {
            0 => {
                let _ = writeln!(
                    s,
                    "    retention:\n      table: t{i}\n      column: created_at\n      older_than: \"{{{{ vars.days }}}} days\"\n      batch_size: 5000"
                );
            }
            1 => s.push_str("    vacuum: {min_dead_ratio: 0.2, analyze: true}\n"),
            2 => s.push_str("    reindex: {concurrently: true, min_bloat_ratio: 0.3}\n"),
            _ => s.push_str("    check: {checks: [unused_indexes, long_queries], max_query_age: 10m}\n"),
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, generated_plan(1_000, 3_000)).expect("write plan");
    let opts = dbmaint::LoadOptions {
        now: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };

    let loaded = dbmaint::load(&path, &opts);
    let graph = loaded.graph.as_ref().expect("generated plan is valid");
    assert_eq!((graph.ids.len(), graph.edges.len()), (1_000, 3_000));
    println!(
        "generated plan: {} steps, {} needs edges, {} levels",
        graph.ids.len(),
        graph.edges.len(),
        graph.by_level().len()
    );

    c.bench_function("plan validate: 1000 steps, 3000 needs", |b| {
        b.iter(|| {
            let l = dbmaint::load(&path, &opts);
            assert!(l.is_valid());
            l
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
