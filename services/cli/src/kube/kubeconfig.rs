//! Merging a kubeconfig into an existing one (`clusters kubeconfig
//! --write FILE --merge`): clusters, contexts and users replace the
//! entries of the same name or are appended; `current-context` becomes
//! the new file's.

use anyhow::{bail, Context};
use serde_json::Value;

/// `old` with `new` merged in, as YAML.
pub fn merge(old: &str, new: &str) -> anyhow::Result<String> {
    let mut base: Value = if old.trim().is_empty() {
        serde_json::json!({ "apiVersion": "v1", "kind": "Config" })
    } else {
        serde_norway::from_str(old).context("the existing file is not a kubeconfig (YAML)")?
    };
    let add: Value = serde_norway::from_str(new).context("the new kubeconfig is not YAML")?;
    let Value::Object(b) = &mut base else {
        bail!("the existing file is not a kubeconfig (not a YAML mapping)");
    };
    for list in ["clusters", "contexts", "users"] {
        let entries = b.entry(list).or_insert_with(|| Value::Array(Vec::new()));
        if entries.is_null() {
            *entries = Value::Array(Vec::new());
        }
        let Value::Array(entries) = entries else {
            bail!("the existing file's {list} is not a list");
        };
        for e in add[list].as_array().into_iter().flatten() {
            match entries.iter_mut().find(|x| x["name"] == e["name"]) {
                Some(x) => *x = e.clone(),
                None => entries.push(e.clone()),
            }
        }
    }
    if let Some(c) = add.get("current-context").filter(|c| !c.is_null()) {
        b.insert("current-context".into(), c.clone());
    }
    Ok(serde_norway::to_string(&base)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_merge_by_name() {
        let old = "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster: {server: 'https://a'}\n- name: b\n  cluster: {server: 'https://old-b'}\ncontexts:\n- name: a\n  context: {cluster: a, user: a}\nusers:\n- name: a\n  user: {token: x}\ncurrent-context: a\n";
        let new = "apiVersion: v1\nkind: Config\nclusters:\n- name: b\n  cluster: {server: 'https://b'}\ncontexts:\n- name: b\n  context: {cluster: b, user: b}\nusers:\n- name: b\n  user: {token: y}\ncurrent-context: b\n";
        let merged: Value = serde_norway::from_str(&merge(old, new).unwrap()).unwrap();
        assert_eq!(merged["clusters"].as_array().unwrap().len(), 2);
        assert_eq!(merged["clusters"][1]["cluster"]["server"], "https://b");
        assert_eq!(merged["contexts"].as_array().unwrap().len(), 2);
        assert_eq!(merged["users"].as_array().unwrap().len(), 2);
        assert_eq!(merged["current-context"], "b");
        assert!(merge("- just a list", new).is_err());
    }
}
