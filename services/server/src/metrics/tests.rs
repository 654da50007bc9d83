//! The Grafana dashboard against the registry, the scrape token, and a
//! scrape of an in-process log and board.

use super::*;
use powernode_log::metrics::METRICS;

const DASHBOARD: &str = include_str!("../../../../docs/grafana/powernode.json");

/// Every `powernode_…` name in `expr`, without a histogram's suffix.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("powernode_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.push(base.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_parses_and_queries_only_metrics_the_registry_has() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    assert_eq!(
        d["__inputs"][0]["pluginId"], "prometheus",
        "{}",
        d["__inputs"]
    );
    let panels = d["panels"].as_array().expect("panels");
    let mut queried = std::collections::BTreeSet::new();
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} queries nothing", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr} names no metric");
            for n in names {
                assert!(
                    METRICS.iter().any(|m| m.name == n),
                    "panel {} queries {n}, which the registry does not have",
                    p["title"]
                );
                queried.insert(n);
            }
        }
    }
    for m in METRICS {
        assert!(queried.contains(m.name), "no panel shows {}", m.name);
    }
}

#[test]
fn names_follow_prometheus_conventions() {
    for m in METRICS {
        assert!(m.name.starts_with("powernode_"), "{}", m.name);
        assert_eq!(
            m.kind == m::MetricType::Counter,
            m.name.ends_with("_total"),
            "{}: counters, and only they, end in _total",
            m.name
        );
        if m.kind == m::MetricType::Histogram {
            assert!(m.name.ends_with("_seconds"), "{}", m.name);
        }
    }
}

#[test]
fn the_token_comes_from_the_flag_or_the_file_and_is_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t");
    std::fs::write(&file, "s3cret\n").unwrap();
    let from_file = MetricsArgs {
        metrics_token_file: Some(file),
        ..Default::default()
    };
    assert_eq!(from_file.token().unwrap().as_deref(), Some("s3cret"));
    let empty = MetricsArgs {
        metrics_token: Some(" ".into()),
        ..Default::default()
    };
    assert!(empty.token().unwrap_err().to_string().contains("empty"));
    assert_eq!(MetricsArgs::default().token().unwrap(), None);
    let debug = format!(
        "{:?}",
        MetricsArgs {
            metrics_token: Some("s3cret".into()),
            ..Default::default()
        }
    );
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

#[tokio::test]
async fn a_scrape_shows_the_head_and_each_consumers_lag() {
    let dir = tempfile::tempdir().unwrap();
    let log: SharedLog = Arc::new(powernode_log::embedded::EmbeddedLog::open(dir.path()).unwrap());
    let board = crate::status::StatusBoard::shared();
    let s = board.track("sensor", "sensor-a");
    s.started(0, 0);
    let text = render(&log, &board).await;
    assert!(text.contains("powernode_log_head_seq 0\n"), "{text}");
    assert!(
        text.contains("powernode_consumer_lag_events{service=\"sensor\",replica=\"sensor-a\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("powernode_build_info{version=\""), "{text}");
}
