//! The step dependency graph (petgraph): cycle finding for validation, and
//! execution levels for `plan show` and, later, the executor's ready-queue.
//!
//! Works on step indices and edge lists so validation can map findings back
//! to the `needs` entries (and their places) that made each edge.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::plan::Plan;

/// An edge `from → to` meaning "`to` needs `from`" (from runs first).
pub type Edge = (usize, usize);

/// Every strongly connected part of the graph that holds a cycle, as the
/// indices (into `edges`) of the edges inside it — each of them lies on a
/// cycle — and one concrete cycle through it as a node path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub edges: Vec<usize>,
    /// Node path `a → b → … → a` (first node repeated at the end).
    pub path: Vec<usize>,
}

pub fn find_cycles(nodes: usize, edges: &[Edge]) -> Vec<Cycle> {
    let mut g = DiGraph::<(), usize>::with_capacity(nodes, edges.len());
    for _ in 0..nodes {
        g.add_node(());
    }
    for (i, (a, b)) in edges.iter().enumerate() {
        g.add_edge(NodeIndex::new(*a), NodeIndex::new(*b), i);
    }
    let mut out = Vec::new();
    for scc in petgraph::algo::tarjan_scc(&g) {
        let self_loop = scc.len() == 1 && g.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let member: std::collections::HashSet<usize> = scc.iter().map(|n| n.index()).collect();
        let mut inside: Vec<usize> = edges
            .iter()
            .enumerate()
            .filter(|(_, (a, b))| member.contains(a) && member.contains(b))
            .map(|(i, _)| i)
            .collect();
        inside.sort_unstable();
        let start = scc.iter().map(|n| n.index()).min().unwrap_or(0);
        let path = shortest_cycle(start, edges, &inside);
        out.push(Cycle { edges: inside, path });
    }
    out.sort_by_key(|c| c.path.first().copied());
    out
}

/// Breadth-first search for the shortest way from `start` back to itself
/// using only the edges `allowed`.
fn shortest_cycle(start: usize, edges: &[Edge], allowed: &[usize]) -> Vec<usize> {
    let mut succ: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in allowed {
        succ.entry(edges[i].0).or_default().push(edges[i].1);
    }
    for v in succ.values_mut() {
        v.sort_unstable();
    }
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &m in succ.get(&n).map(Vec::as_slice).unwrap_or(&[]) {
            if m == start {
                // Walk back from `n` to `start`, then read it forwards.
                let mut path = vec![n];
                while *path.last().unwrap_or(&start) != start {
                    let last = *path.last().unwrap_or(&start);
                    path.push(prev[&last]);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m)
                && m != start
            {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![start, start]
}

/// Execution levels: level 0 needs nothing; a step's level is one more than
/// the highest level among its needs. Steps in one level may run together.
/// Requires an acyclic graph (validated plans are).
pub fn levels(nodes: usize, edges: &[Edge]) -> Vec<usize> {
    let mut indegree = vec![0usize; nodes];
    let mut succ = vec![Vec::new(); nodes];
    for &(a, b) in edges {
        indegree[b] += 1;
        succ[a].push(b);
    }
    let mut level = vec![0usize; nodes];
    let mut queue: VecDeque<usize> = (0..nodes).filter(|n| indegree[*n] == 0).collect();
    while let Some(n) = queue.pop_front() {
        for &m in &succ[n] {
            level[m] = level[m].max(level[n] + 1);
            indegree[m] -= 1;
            if indegree[m] == 0 {
                queue.push_back(m);
            }
        }
    }
    level
}

/// A validated plan's steps and their order.
#[derive(Debug, Clone)]
pub struct StepGraph {
    pub ids: Vec<String>,
    pub edges: Vec<Edge>,
    pub level: Vec<usize>,
}

impl StepGraph {
    pub fn new(plan: &Plan) -> Self {
        let ids: Vec<String> = plan.steps.keys().cloned().collect();
        let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let mut edges = Vec::new();
        for (i, step) in plan.steps.values().enumerate() {
            for need in &step.needs {
                if let Some(&from) = index.get(need.as_str()) {
                    edges.push((from, i));
                }
            }
        }
        let level = levels(ids.len(), &edges);
        Self { ids, edges, level }
    }

    /// Step ids grouped by level, in file order within a level.
    pub fn by_level(&self) -> Vec<Vec<&str>> {
        let depth = self.level.iter().max().map_or(0, |m| m + 1);
        let mut out = vec![Vec::new(); depth];
        for (i, id) in self.ids.iter().enumerate() {
            out[self.level[i]].push(id.as_str());
        }
        out
    }

    /// Graphviz, one cluster per level.
    pub fn to_dot(&self, plan: &Plan) -> String {
        let mut s = format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n", plan.name);
        for (level, ids) in self.by_level().iter().enumerate() {
            let _ = writeln!(s, "  subgraph cluster_level_{level} {{\n    label=\"level {level}\";");
            for id in ids {
                let op = plan.steps[*id].op.key();
                let _ = writeln!(s, "    \"{id}\" [label=\"{id}\\n{op}\"];");
            }
            s.push_str("  }\n");
        }
        for (a, b) in &self.edges {
            let _ = writeln!(s, "  \"{}\" -> \"{}\";", self.ids[*a], self.ids[*b]);
        }
        s.push_str("}\n");
        s
    }

    /// Mermaid flowchart, one subgraph per level.
    pub fn to_mermaid(&self, plan: &Plan) -> String {
        let node = |id: &str| id.replace('-', "_");
        let mut s = String::from("flowchart LR\n");
        for (level, ids) in self.by_level().iter().enumerate() {
            let _ = writeln!(s, "  subgraph level_{level}[\"level {level}\"]");
            for id in ids {
                let op = plan.steps[*id].op.key();
                let _ = writeln!(s, "    {}[\"{id}<br/>{op}\"]", node(id));
            }
            s.push_str("  end\n");
        }
        for (a, b) in &self.edges {
            let _ = writeln!(s, "  {} --> {}", node(&self.ids[*a]), node(&self.ids[*b]));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_whole_cycle_in_order() {
        // 0 → 1 → 2 → 0, and 2 → 3 outside the cycle.
        let cycles = find_cycles(4, &[(0, 1), (1, 2), (2, 0), (2, 3)]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].path, vec![0, 1, 2, 0]);
        assert_eq!(cycles[0].edges, vec![0, 1, 2]);
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let cycles = find_cycles(2, &[(1, 1)]);
        assert_eq!(cycles[0].path, vec![1, 1]);
    }

    #[test]
    fn levels_are_longest_paths() {
        assert_eq!(levels(4, &[(0, 1), (1, 2), (0, 2), (3, 2)]), vec![0, 1, 2, 0]);
    }
}
