//! Property tests: random DAGs validate and `plan show` orders every edge;
//! a back edge is always reported as a cycle through it; mutated sample
//! plans never panic the loader.

use std::fmt::Write as _;

use dbmaint::load_str;
use proptest::prelude::*;

use crate::support::options;

/// A plan with `n` steps where step `i` needs each `j < i` in `edges`.
fn plan_text(n: usize, edges: &[(usize, usize)]) -> String {
    let mut s = String::from("version: 1\nname: random\nsteps:\n");
    for i in 0..n {
        let needs: Vec<String> = edges
            .iter()
            .filter(|(_, to)| *to == i)
            .map(|(from, _)| format!("s{from}"))
            .collect();
        let _ = writeln!(s, "  s{i}:\n    needs: [{}]\n    stats: {{}}", needs.join(", "));
    }
    s
}

fn dag() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (2usize..24).prop_flat_map(|n| {
        let pairs = proptest::collection::vec((0..n, 0..n), 0..n * 3);
        (Just(n), pairs).prop_map(|(n, pairs)| {
            let mut edges: Vec<(usize, usize)> = pairs
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect();
            edges.sort_unstable();
            edges.dedup();
            (n, edges)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn acyclic_plans_validate_and_levels_order_every_edge((n, edges) in dag()) {
        let loaded = load_str("random.yaml", &plan_text(n, &edges), &options());
        prop_assert!(loaded.is_valid(), "{}", crate::support::rendered(&loaded));
        let graph = loaded.graph.as_ref().expect("graph");
        let level_of = |id: &str| graph.ids.iter().position(|x| x == id).map(|i| graph.level[i]).expect("id");
        for (from, to) in &edges {
            let (a, b) = (level_of(&format!("s{}", from)), level_of(&format!("s{}", to)));
            prop_assert!(a < b, "s{} (level {}) must come before s{} (level {})", from, a, to, b);
        }
    }

    #[test]
    fn a_back_edge_is_reported_as_a_cycle_through_it(((n, edges), pick) in (dag(), any::<prop::sample::Index>())) {
        prop_assume!(!edges.is_empty());
        // Pick an edge a → b and a path b ⇝ … back: adding b needs… makes a cycle
        // through the new entry `s{a}` needs `s{b}`... we add "a needs b" where b
        // already (transitively) needs a.
        let (a, b) = edges[pick.index(edges.len())];
        let mut with_back = edges.clone();
        with_back.push((b, a)); // a needs b, while b needs a
        let text = plan_text(n, &with_back);
        let loaded = load_str("random.yaml", &text, &options());
        prop_assert!(!loaded.is_valid());
        let cycles: Vec<_> = loaded.diags.items.iter().filter(|d| d.code == "cycle").collect();
        prop_assert!(!cycles.is_empty(), "{}", crate::support::rendered(&loaded));
        // The new entry is `s{b}` inside `s{a}`'s needs; some cycle must label it.
        let step_line = format!("  s{a}:\n    needs: [");
        let start = text.find(&step_line).expect("step") + step_line.len();
        let needs_end = start + text[start..].find(']').expect("list end");
        let entry = format!("s{b}");
        let offset = start + text[start..needs_end].split(", ").scan(0, |pos, item| {
            let here = *pos;
            *pos += item.len() + 2;
            Some((here, item))
        }).find(|(_, item)| *item == entry).map(|(p, _)| p).expect("entry");
        let labelled = cycles.iter().any(|d| {
            d.primary.iter().chain(d.secondary.iter()).any(|l| l.span.start == offset)
        });
        prop_assert!(labelled, "no cycle labels offset {offset}:\n{}", crate::support::rendered(&loaded));
    }
}

/// A tiny deterministic generator (xorshift), so the mutation test is
/// reproducible without a seed file.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn ten_thousand_mutated_sample_plans_never_panic_the_loader() {
    let samples: Vec<Vec<u8>> = crate::support::yaml_files("plans")
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let interesting = b"{}[]:-,&*!|>'\"#%@` \n\t0123456789{{ }}";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed_ok = 0;
    for i in 0..10_000 {
        let mut bytes = samples[i % samples.len()].clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[at] = interesting[rng.below(interesting.len())],
                1 => bytes[at] = (rng.next() & 0xff) as u8,
                2 => {
                    bytes.remove(at);
                }
                _ => {
                    let from = rng.below(bytes.len());
                    let len = rng.below(40).min(bytes.len() - from);
                    let chunk = bytes[from..from + len].to_vec();
                    bytes.splice(at..at, chunk);
                }
            }
        }
        // The loader takes text; invalid UTF-8 is refused before YAML (tested
        // through `load`), so mutate on the lossy text like an editor would.
        let text = String::from_utf8_lossy(&bytes);
        let loaded = std::panic::catch_unwind(|| load_str("mutated.yaml", &text, &options()));
        let loaded = loaded.unwrap_or_else(|_| panic!("loader panicked on mutation {i}:\n{text}"));
        if loaded.is_valid() {
            parsed_ok += 1;
        }
        // Rendering diagnostics must not panic either.
        let _ = crate::support::rendered(&loaded);
    }
    // Many single-byte mutations land in comments and stay valid; most do not.
    assert!(parsed_ok < 10_000, "mutations changed nothing");
}
