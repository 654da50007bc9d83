//! Structural differences between two JSON values, as dotted paths: what
//! `replay --diff` and `events explain` print as an event's state change.

use serde::Serialize;
use serde_json::Value;

/// One difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Dotted path (`clusters.c-1.status`; array items as `[3]`).
    pub path: String,
    /// The value before (`None`: added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The value after (`None`: removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

impl Change {
    /// `+ path = v`, `- path (was v)`, `~ path: a → b`.
    pub fn render(&self) -> String {
        match (&self.before, &self.after) {
            (None, Some(a)) => format!("+ {} = {}", self.path, short(a)),
            (Some(b), None) => format!("- {} (was {})", self.path, short(b)),
            (Some(b), Some(a)) => format!("~ {}: {} → {}", self.path, short(b), short(a)),
            (None, None) => format!("  {}", self.path),
        }
    }
}

/// A value on one line, cut at 120 characters.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// The differences from `before` to `after`, in path order. Objects are
/// compared key by key; arrays of equal length item by item, otherwise as a
/// whole; a key that appears or disappears is one change with its whole value.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(String::new(), before, after, &mut out);
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk(path: String, before: &Value, after: &Value, out: &mut Vec<Change>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = join(&path, k);
                match (b.get(k), a.get(k)) {
                    (Some(bv), Some(av)) => walk(p, bv, av, out),
                    (None, Some(av)) => out.push(Change {
                        path: p,
                        before: None,
                        after: Some(av.clone()),
                    }),
                    (Some(bv), None) => out.push(Change {
                        path: p,
                        before: Some(bv.clone()),
                        after: None,
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if a.len() == b.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                walk(format!("{path}[{i}]"), bv, av, out);
            }
        }
        _ => out.push(Change {
            path,
            before: Some(before.clone()),
            after: Some(after.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_added_removed_and_changed_paths() {
        let b = json!({"c": {"status": "bootstrapping", "n": [1, 2]}, "gone": 1});
        let a = json!({"c": {"status": "active", "n": [1, 3]}, "new": {"x": 1}});
        let d: Vec<String> = diff(&b, &a).iter().map(Change::render).collect();
        assert_eq!(
            d,
            vec![
                "~ c.n[1]: 2 → 3",
                "~ c.status: \"bootstrapping\" → \"active\"",
                "- gone (was 1)",
                "+ new = {\"x\":1}",
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn arrays_of_different_length_change_as_a_whole() {
        let d = diff(&json!({"h": [1]}), &json!({"h": [1, 2]}));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "h");
    }
}
