//! The causal graph of an explanation as SVG, laid out server-side.
//!
//! Nodes are events (the explanation's steps, plus the causes and effects
//! they link to outside the object's own events), edges are causation
//! (cause → effect). The layout is layered: a node's column is its causal
//! depth (0 without a known cause, else one more than its deepest cause),
//! its row its place in log order — so every edge points right and down,
//! no two boxes overlap, and two hundred events stay legible in a
//! scrolling container (one row each).

use maud::{html, Markup};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Width of a node box.
pub const BOX_W: u32 = 250;
/// Height of a node box.
pub const BOX_H: u32 = 38;
/// Horizontal distance between columns.
pub const COL_W: u32 = 290;
/// Vertical distance between rows.
pub const ROW_H: u32 = 48;
/// Margin around the drawing.
pub const MARGIN: u32 = 12;
/// Characters of the kind shown in a box (the full kind is in its title).
const KIND_CHARS: usize = 34;
/// Characters of the actor shown in a box.
const ACTOR_CHARS: usize = 35;

/// One event of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Log sequence.
    pub seq: u64,
    /// Kind.
    pub kind: String,
    /// Who caused it (empty when unknown).
    pub actor: String,
    /// What it did, in words (empty when unknown).
    pub text: String,
    /// On the "why" chain (highlighted).
    pub why: bool,
    /// Not an event about the object: a cause or effect it links to.
    pub linked: bool,
}

/// A node placed: its column and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Causal depth.
    pub col: u32,
    /// Place in log order.
    pub row: u32,
}

/// The graph: nodes by sequence, edges (cause seq, effect seq).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// The events, by sequence.
    pub nodes: BTreeMap<u64, Node>,
    /// Causation edges, cause first.
    pub edges: BTreeSet<(u64, u64)>,
}

impl Graph {
    /// The graph of an explanation (the JSON `events explain -o json`
    /// prints): its steps, their `cause` and `caused` links that carry a
    /// sequence, and the why chain's sequences highlighted.
    pub fn from_explanation(ex: &Value) -> Self {
        let mut g = Graph::default();
        let why: BTreeSet<u64> = ex["why"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["seq"].as_u64())
            .collect();
        let steps = ex["events"].as_array().cloned().unwrap_or_default();
        for s in &steps {
            let Some(seq) = s["seq"].as_u64() else {
                continue;
            };
            g.nodes.insert(
                seq,
                Node {
                    seq,
                    kind: s["kind"].as_str().unwrap_or("?").to_string(),
                    actor: s["actor"].as_str().unwrap_or_default().to_string(),
                    text: s["text"].as_str().unwrap_or_default().to_string(),
                    why: why.contains(&seq),
                    linked: false,
                },
            );
        }
        for s in &steps {
            let Some(seq) = s["seq"].as_u64() else {
                continue;
            };
            let cause = std::iter::once(&s["cause"]).map(|c| (c, true));
            let caused = s["caused"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| (c, false));
            for (link, is_cause) in cause.chain(caused) {
                let Some(other) = link["seq"].as_u64() else {
                    continue;
                };
                g.nodes.entry(other).or_insert_with(|| Node {
                    seq: other,
                    kind: link["kind"].as_str().unwrap_or("?").to_string(),
                    actor: link["actor"].as_str().unwrap_or_default().to_string(),
                    text: String::new(),
                    why: why.contains(&other),
                    linked: true,
                });
                g.edges
                    .insert(if is_cause { (other, seq) } else { (seq, other) });
            }
        }
        g
    }

    /// Where each node goes: rows in log order; the column is the causal
    /// depth, counting only causes earlier in the log (a cause is always
    /// earlier, so this is the depth; a malformed later "cause" cannot
    /// make a cycle).
    pub fn layout(&self) -> BTreeMap<u64, Placed> {
        let mut placed: BTreeMap<u64, Placed> = BTreeMap::new();
        for (row, seq) in self.nodes.keys().enumerate() {
            let col = self
                .edges
                .iter()
                .filter(|(from, to)| to == seq && from < seq)
                .filter_map(|(from, _)| placed.get(from))
                .map(|p| p.col + 1)
                .max()
                .unwrap_or(0);
            placed.insert(
                *seq,
                Placed {
                    col,
                    row: row as u32,
                },
            );
        }
        placed
    }

    /// The SVG: `svg#graph`, a `g.node[data-seq][data-kind]` per event
    /// (a `<title>` and a link to `/ui/events/<seq>`), a
    /// `path.edge[data-from][data-to]` per causation.
    pub fn svg(&self, label: &str) -> Markup {
        let at = self.layout();
        let cols = at.values().map(|p| p.col + 1).max().unwrap_or(1);
        let rows = at.len().max(1) as u32;
        let width = 2 * MARGIN + (cols - 1) * COL_W + BOX_W;
        let height = 2 * MARGIN + (rows - 1) * ROW_H + BOX_H;
        let pos = |p: &Placed| (MARGIN + p.col * COL_W, MARGIN + p.row * ROW_H);
        html! {
            svg #graph xmlns="http://www.w3.org/2000/svg" role="group"
                width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) }
                aria-labelledby="graph-title" {
                title #graph-title { (label) }
                defs {
                    marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                        path d="M 0 0 L 10 5 L 0 10 z" fill="#57606a" {}
                    }
                }
                @for (from, to) in &self.edges {
                    @if let (Some(a), Some(b)) = (at.get(from), at.get(to)) {
                        @let (ax, ay) = pos(a);
                        @let (bx, by) = pos(b);
                        (edge(*from, *to, (ax, ay), (bx, by)))
                    }
                }
                @for (seq, node) in &self.nodes {
                    @if let Some(p) = at.get(seq) {
                        @let (x, y) = pos(p);
                        (node_box(node, x, y))
                    }
                }
            }
        }
    }
}

/// An edge from the box at `a` to the box at `b` (top-left corners).
fn edge(from: u64, to: u64, a: (u32, u32), b: (u32, u32)) -> Markup {
    let d = if b.0 > a.0 {
        // Right side of the cause to the left side of the effect.
        let (x1, y1) = (a.0 + BOX_W, a.1 + BOX_H / 2);
        let (x2, y2) = (b.0, b.1 + BOX_H / 2);
        let mid = (x1 + x2) / 2;
        format!("M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}")
    } else {
        // Same column (a cause not earlier in the log): down the left side.
        let (x1, y1) = (a.0, a.1 + BOX_H / 2);
        let (x2, y2) = (b.0, b.1 + BOX_H / 2);
        let bulge = x1.saturating_sub(MARGIN.min(x1));
        format!("M {x1} {y1} C {bulge} {y1}, {bulge} {y2}, {x2} {y2}")
    };
    html! {
        path.edge data-from=(from) data-to=(to) d=(d) fill="none" stroke="#57606a" stroke-width="1.5" marker-end="url(#arrow)" {}
    }
}

/// The kind shortened to fit a box (without `system.`).
fn short(kind: &str) -> String {
    truncate(kind.strip_prefix("system.").unwrap_or(kind), KIND_CHARS)
}

/// `s` cut to `n` characters (the last one `…` when cut).
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// One event's box at (x, y).
fn node_box(n: &Node, x: u32, y: u32) -> Markup {
    let mut class = String::from("node");
    if n.why {
        class.push_str(" why highlight");
    }
    if n.linked {
        class.push_str(" linked");
    }
    if n.kind.starts_with("system.approval.") {
        class.push_str(" approval");
    }
    let title = if n.text.is_empty() {
        format!("seq {} {} by {}", n.seq, n.kind, or_dash(&n.actor))
    } else {
        format!(
            "seq {} {} by {}: {}",
            n.seq,
            n.kind,
            or_dash(&n.actor),
            n.text
        )
    };
    let (fill, stroke) = match (n.why, n.linked) {
        (true, _) => ("#fff4ce", "#7d4e00"),
        (false, true) => ("#f6f8fa", "#8c959f"),
        (false, false) => ("#eef4ff", "#0b57d0"),
    };
    html! {
        g class=(class) data-seq=(n.seq) data-kind=(n.kind) {
            title { (title) }
            a href={ "/ui/events/" (n.seq) } {
                rect x=(x) y=(y) width=(BOX_W) height=(BOX_H) rx="5" fill=(fill) stroke=(stroke)
                    stroke-width=(if n.why { "2.5" } else { "1" })
                    stroke-dasharray=[n.linked.then_some("4 3")] {}
                text x=(x + 8) y=(y + 15) font-size="12" fill="#1b1f24" {
                    tspan font-weight="700" { "#" (n.seq) } " " (short(&n.kind))
                }
                text x=(x + 8) y=(y + 30) font-size="11" fill="#57606a" { (truncate(or_dash(&n.actor), ACTOR_CHARS)) }
            }
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
#[path = "explain_graph_tests.rs"]
mod tests;
