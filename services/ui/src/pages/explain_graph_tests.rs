//! The graph's layout and markup.

use super::{Graph, Node, BOX_H, BOX_W, COL_W, MARGIN, ROW_H};
use crate::pages::events::testkit::fixture;

fn node(seq: u64) -> Node {
    Node {
        seq,
        kind: format!("system.test.k{seq}"),
        actor: "service:test".into(),
        text: String::new(),
        why: false,
        linked: false,
    }
}

#[test]
fn columns_are_causal_depth_rows_are_log_order() {
    let mut g = Graph::default();
    for s in [1, 2, 3, 5, 8] {
        g.nodes.insert(s, node(s));
    }
    g.edges.extend([(1, 3), (3, 5), (2, 5), (5, 8), (1, 8)]);
    let at = g.layout();
    let cols: Vec<u32> = at.values().map(|p| p.col).collect();
    let rows: Vec<u32> = at.values().map(|p| p.row).collect();
    assert_eq!(cols, [0, 0, 1, 2, 3]);
    assert_eq!(rows, [0, 1, 2, 3, 4]);
}

#[test]
fn a_cause_later_in_the_log_makes_no_cycle() {
    let mut g = Graph::default();
    g.nodes.insert(1, node(1));
    g.nodes.insert(2, node(2));
    g.edges.extend([(2, 1), (1, 2)]);
    let at = g.layout();
    assert_eq!(at[&1].col, 0);
    assert_eq!(at[&2].col, 1);
}

#[test]
fn two_hundred_events_do_not_overlap_and_every_edge_is_drawn() {
    let mut g = Graph::default();
    for s in 1..=200u64 {
        g.nodes.insert(s, node(s));
        if s > 1 && s % 3 != 0 {
            g.edges.insert((s - 1, s));
        }
    }
    let at = g.layout();
    let mut seen = std::collections::BTreeSet::new();
    for p in at.values() {
        assert!(seen.insert((p.col, p.row)), "two boxes in one place");
    }
    let svg = g.svg("g").into_string();
    assert_eq!(svg.matches("<g class=\"node").count(), 200);
    assert_eq!(svg.matches("<path class=\"edge\"").count(), g.edges.len());
    let rows = 200u32;
    let height = 2 * MARGIN + (rows - 1) * ROW_H + BOX_H;
    assert!(svg.contains(&format!("height=\"{height}\"")));
    const { assert!(ROW_H > BOX_H && COL_W > BOX_W, "gaps between boxes") };
}

#[test]
fn an_explanation_becomes_nodes_links_and_the_why() {
    let ex = fixture("explain_vip.json");
    let g = Graph::from_explanation(&ex);
    // The six steps plus the causes and effects outside them.
    let seqs: Vec<u64> = g.nodes.keys().copied().collect();
    assert_eq!(seqs, [16, 17, 18, 21, 71, 72, 96, 97, 98, 99]);
    let linked: Vec<u64> = g
        .nodes
        .values()
        .filter(|n| n.linked)
        .map(|n| n.seq)
        .collect();
    assert_eq!(linked, [16, 18, 71, 98]);
    assert!(g.nodes[&97].why && g.nodes[&96].why && !g.nodes[&17].why);
    assert!(
        g.edges.contains(&(16, 17)) && g.edges.contains(&(96, 97)) && g.edges.contains(&(97, 98))
    );
    let svg = g.svg("Causal graph").into_string();
    assert!(svg.starts_with("<svg id=\"graph\""));
    assert!(svg.contains(r#"<g class="node why highlight" data-seq="97" data-kind="system.sdwan.virtual_ip.promoted"><title>"#), "{svg}");
    assert!(svg.contains(r#"<a href="/ui/events/97">"#));
    assert!(svg.contains(r#"<path class="edge" data-from="96" data-to="97""#));
    assert!(
        svg.contains(r#"stroke-dasharray="4 3""#),
        "linked events are dashed"
    );
}

#[test]
fn text_in_the_svg_is_escaped() {
    let mut g = Graph::default();
    let mut n = node(1);
    n.kind = "<script>alert(1)</script>".into();
    n.text = "a & b".into();
    g.nodes.insert(1, n);
    let svg = g.svg("x<y").into_string();
    assert!(!svg.contains("<script>"));
    assert!(svg.contains("&lt;script&gt;") && svg.contains("a &amp; b") && svg.contains("x&lt;y"));
}
