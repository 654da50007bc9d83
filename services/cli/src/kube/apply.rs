//! `powernode apply -f FILE|-`: a YAML (several documents allowed) or
//! JSON list of actions, each `{action: NAME, args: {…}}`, optionally
//! `name: LABEL`. Every action is checked before the first is sent: its
//! name against the table and its arguments against the action's typed
//! `Args` (offline, exactly as the server parses them). A string
//! `${N.path.to.field}` (or `${LABEL.path}`) is the answer of the N-th
//! action (counted from 0 over the whole file), so a file needs no ids
//! copied by hand. On a refusal mid-way, the applied ones are named.

use crate::output::{line, print_data, Format};
use crate::ApiArgs;
use anyhow::{anyhow, bail, Context};
use powernode_actions::ActionName;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::Path;

/// One action of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The action.
    pub action: ActionName,
    /// Its arguments, references unresolved.
    pub args: Value,
    /// Its label, for `${LABEL.path}`.
    pub label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    action: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    name: Option<String>,
}

/// The documents of `text` (JSON, or YAML with `---` documents), each a
/// list of actions or one action, flattened in file order.
pub fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let trimmed = text.trim_start();
    let docs: Vec<Value> = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        vec![serde_json::from_str(text).context("the file is not valid JSON")?]
    } else {
        let mut out = Vec::new();
        for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
            let v = Value::deserialize(doc)
                .with_context(|| format!("YAML document {i} is not valid YAML"))?;
            out.push(v);
        }
        out
    };
    let mut items = Vec::new();
    for d in docs {
        match d {
            Value::Null => {}
            Value::Array(a) => items.extend(a),
            other => items.push(other),
        }
    }
    Ok(items)
}

/// The references (`${…}`) in `v`'s strings: (the text inside, whole
/// string is one reference).
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                match rest[i + 2..].find('}') {
                    Some(j) => {
                        out.push(rest[i + 2..i + 2 + j].to_string());
                        rest = &rest[i + 3 + j..];
                    }
                    None => break,
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        Value::Object(m) => m.values().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// `v` with every reference replaced by `lookup(reference)`; a string
/// that is one reference takes the referenced value as it is.
fn substitute(v: &Value, lookup: &dyn Fn(&str) -> anyhow::Result<Value>) -> anyhow::Result<Value> {
    Ok(match v {
        Value::String(s) => {
            if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                if !inner.contains("${") && !inner.contains('}') {
                    return lookup(inner);
                }
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                let j = rest[i + 2..]
                    .find('}')
                    .ok_or_else(|| anyhow!("unclosed ${{ in {s:?}"))?;
                out.push_str(&rest[..i]);
                match lookup(&rest[i + 2..i + 2 + j])? {
                    Value::String(x) => out.push_str(&x),
                    other => out.push_str(&other.to_string()),
                }
                rest = &rest[i + 3 + j..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute(x, lookup))
                .collect::<anyhow::Result<_>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), substitute(x, lookup)?)))
                .collect::<anyhow::Result<Map<_, _>>>()?,
        ),
        other => other.clone(),
    })
}

/// Checks `args` against `action`'s typed arguments; the error names the
/// field.
pub fn check_args(action: ActionName, args: &Value) -> Result<(), String> {
    macro_rules! check {
        ($($ty:ident)*) => {
            match action {
                $( ActionName::$ty => {
                    let mut track = serde_path_to_error::Track::new();
                    let de = serde_path_to_error::Deserializer::new(args, &mut track);
                    <<powernode_actions::$ty as powernode_actions::Action>::Args as serde::Deserialize>::deserialize(de)
                        .map(|_| ())
                        .map_err(|e| (track.path().to_string(), e.to_string()))
                } )*
            }
        };
    }
    let r: Result<(), (String, String)> = powernode_actions::for_each_action!(check);
    r.map_err(|(path, e)| match path.as_str() {
        "" | "." => e,
        p => format!("field `{p}`: {e}"),
    })
}

/// Parses and checks every action of `text`: nothing is sent when one is
/// wrong, and the error names its index.
pub fn parse(text: &str) -> anyhow::Result<Vec<Item>> {
    let docs = documents(text)?;
    if docs.is_empty() {
        bail!("the file holds no action");
    }
    let mut items: Vec<Item> = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let raw: RawItem = serde_json::from_value(d).map_err(|e| {
            anyhow!("document {i}: {e} (each document is `action: NAME` with `args: {{…}}`)")
        })?;
        let action: ActionName = raw
            .action
            .parse()
            .map_err(|e| anyhow!("document {i}: {e}"))?;
        let args = raw.args.unwrap_or_else(|| json!({}));
        if !args.is_object() {
            bail!("document {i} ({action}): args must be an object");
        }
        let mut found = Vec::new();
        refs(&args, &mut found);
        for r in &found {
            let head = r.split('.').next().unwrap_or_default();
            let earlier = match head.parse::<usize>() {
                Ok(n) => n < i,
                Err(_) => items.iter().any(|it| it.label.as_deref() == Some(head)),
            };
            if !earlier {
                bail!("document {i} ({action}): ${{{r}}} refers to no earlier document");
            }
        }
        // References stand for strings (ids) while checking.
        let probe = substitute(&args, &|_| Ok(json!("<ref>")))?;
        check_args(action, &probe).map_err(|e| anyhow!("document {i} ({action}): {e}"))?;
        items.push(Item {
            action,
            args,
            label: raw.name,
        });
    }
    Ok(items)
}

/// The value at `path` (`N.a.b` or `LABEL.a.b`) among the answers so far.
fn lookup(items: &[Item], answers: &[Value], path: &str) -> anyhow::Result<Value> {
    let mut parts = path.split('.');
    let head = parts.next().unwrap_or_default();
    let n = match head.parse::<usize>() {
        Ok(n) => n,
        Err(_) => items
            .iter()
            .position(|it| it.label.as_deref() == Some(head))
            .ok_or_else(|| anyhow!("no document labelled {head:?}"))?,
    };
    let mut cur = answers
        .get(n)
        .ok_or_else(|| anyhow!("${{{path}}}: document {n} has no answer yet"))?;
    for p in parts {
        cur = match (cur, p.parse::<usize>()) {
            (Value::Array(a), Ok(i)) => a.get(i),
            (v, _) => v.get(p),
        }
        .filter(|v| !v.is_null())
        .ok_or_else(|| anyhow!("${{{path}}}: the answer of document {n} has no {p:?}"))?;
    }
    Ok(cur.clone())
}

/// `powernode apply -f FILE`.
pub async fn run(api_args: &ApiArgs, file: &Path, dry_run: bool) -> anyhow::Result<()> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let items = parse(&text).context("nothing applied")?;
    let format = api_args.output;
    if dry_run {
        for (i, it) in items.iter().enumerate() {
            line(&format!("[{i}] {} (checked; not sent)", it.action));
        }
        return Ok(());
    }
    let api = api_args.client()?;
    let mut answers: Vec<Value> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let applied = || match i {
            0 => "none applied".to_string(),
            n => format!("documents 0..={} applied", n - 1),
        };
        let args = substitute(&it.args, &|r| lookup(&items, &answers, r))
            .with_context(|| format!("document {i} ({}): not sent; {}", it.action, applied()))?;
        let data = api
            .call(it.action.as_str(), &args)
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "document {i} ({}) refused; {}, later ones not sent",
                    it.action,
                    applied()
                )
            })?;
        if !format.is_data() {
            let id = super::create::made_id(&data);
            let what = if id == "-" {
                String::new()
            } else {
                format!(" → {id}")
            };
            match format {
                Format::Name if id != "-" => line(&id),
                Format::Name => {}
                _ => line(&format!("[{i}] {}{what}", it.action)),
            }
        }
        answers.push(data);
    }
    if format.is_data() {
        print_data(format, &Value::Array(answers));
    } else if format != Format::Name {
        line(&format!("applied {} action(s)", items.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_parses_with_references() {
        let text = "- action: system_create_template\n  args: {name: web}\n---\n- action: system_create_node\n  args:\n    hostname: web-1\n    node_template_id: ${0.template.id}\n    memory_mb: 2048\n";
        let items = parse(text).unwrap();
        assert_eq!(items.len(), 2);
        let answers = vec![json!({"template": {"id": "tmpl-1"}})];
        let args = substitute(&items[1].args, &|r| lookup(&items, &answers, r)).unwrap();
        assert_eq!(args["node_template_id"], "tmpl-1");
    }

    #[test]
    fn a_bad_document_names_its_index_and_field() {
        let text = "- action: system_create_template\n  args: {name: web}\n- action: system_create_node\n  args: {hostname: x, node_template_id: t, memory_mb: lots}\n";
        let e = format!("{:#}", parse(text).unwrap_err());
        assert!(e.contains("document 1") && e.contains("memory_mb"), "{e}");
        let e = parse("[{\"action\": \"system_reboot\"}]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("document 0") && e.contains("system_reboot"),
            "{e}"
        );
        let e = parse("- action: system_create_template\n  args: {name: '${1.x}'}\n- action: system_list_templates\n").unwrap_err().to_string();
        assert!(e.contains("no earlier document"), "{e}");
        let e = parse("- action: system_create_template\n  args: {nam: web}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("document 0") && e.contains("nam"), "{e}");
    }
}
