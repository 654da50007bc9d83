//! Command-line flags generated from an action's argument schema
//! (`powernode_actions::schemas()`): every property becomes `--prop-name`
//! of its type, required ones required; the parsed flags become the
//! action's JSON arguments again.

use anyhow::{anyhow, Context};
use clap::{Arg, ArgAction, ArgMatches, Command};
use powernode_actions::ActionName;
use serde_json::{Map, Value};

/// The type of one argument property.
#[derive(Debug, Clone, PartialEq)]
pub enum PropType {
    /// A string.
    Str,
    /// An integer.
    Int,
    /// A number.
    Num,
    /// A boolean (a switch).
    Bool,
    /// A list of strings (repeat the flag or separate with commas).
    List,
    /// A map of strings (`key=value`, repeatable).
    Map,
    /// One of these strings.
    Enum(Vec<String>),
    /// Any JSON.
    Json,
}

/// One property of an action's arguments.
#[derive(Debug, Clone)]
pub struct Prop {
    /// The JSON name, e.g. `node_template_id`.
    pub name: String,
    /// Its type.
    pub ty: PropType,
    /// Whether the action needs it.
    pub required: bool,
    /// Its description.
    pub help: String,
}

impl Prop {
    /// The flag, e.g. `node-template-id`.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }
}

/// The properties of `action`'s arguments, in schema order.
pub fn props(action: ActionName) -> Vec<Prop> {
    let schema = powernode_actions::schemas()
        .into_iter()
        .find(|s| s.action == action)
        .map(|s| serde_json::to_value(&s.args).unwrap_or_default())
        .unwrap_or_default();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for (name, p) in schema["properties"].as_object().into_iter().flatten() {
        out.push(Prop {
            name: name.clone(),
            ty: prop_type(&schema, p),
            required: required.contains(&name.as_str()),
            help: p["description"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', " "),
        });
    }
    out
}

/// Follows `$ref` into the schema's `$defs`.
fn deref<'a>(root: &'a Value, p: &'a Value) -> &'a Value {
    match p["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => &root["$defs"][name],
        None => p,
    }
}

fn prop_type(root: &Value, p: &Value) -> PropType {
    let p = deref(root, p);
    // Option<T>: `anyOf: [T, {type: null}]`, or `type: [T, "null"]`.
    if let Some(alts) = p["anyOf"].as_array().or(p["oneOf"].as_array()) {
        let consts: Vec<String> = alts
            .iter()
            .map(|a| deref(root, a))
            .filter_map(|a| a["const"].as_str().or(a["enum"][0].as_str()))
            .map(str::to_string)
            .collect();
        if !consts.is_empty() && consts.len() == alts.len() {
            return PropType::Enum(consts);
        }
        if let Some(t) = alts.iter().find(|a| a["type"] != "null") {
            return prop_type(root, t);
        }
    }
    if let Some(values) = p["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        return PropType::Enum(names);
    }
    let ty = match &p["type"] {
        Value::String(s) => s.as_str(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "",
    };
    match ty {
        "string" => PropType::Str,
        "integer" => PropType::Int,
        "number" => PropType::Num,
        "boolean" => PropType::Bool,
        "array" => PropType::List,
        "object" if p["additionalProperties"]["type"] == "string" => PropType::Map,
        _ => PropType::Json,
    }
}

/// Adds a flag for every property of `props` to `cmd` (`aliases` gives
/// extra long names by property, e.g. `--template` for `template_id`).
pub fn add_flags(
    mut cmd: Command,
    props: &[Prop],
    aliases: &dyn Fn(&str) -> Vec<String>,
) -> Command {
    for p in props {
        let id = p.name.clone();
        let mut arg = Arg::new(id).long(p.flag()).help(p.help.clone());
        for a in aliases(&p.name) {
            arg = arg.visible_alias(a);
        }
        arg = match &p.ty {
            PropType::Bool => arg.action(ArgAction::SetTrue),
            PropType::List => arg
                .action(ArgAction::Append)
                .value_delimiter(',')
                .value_name("ITEM"),
            PropType::Map => arg.action(ArgAction::Append).value_name("KEY=VALUE"),
            PropType::Int => arg.value_parser(clap::value_parser!(u64)).value_name("N"),
            PropType::Num => arg
                .value_parser(clap::value_parser!(f64))
                .value_name("NUMBER"),
            PropType::Enum(values) => {
                arg.value_parser(clap::builder::PossibleValuesParser::new(values.clone()))
            }
            PropType::Json => arg.value_name("JSON"),
            PropType::Str => arg.value_name("TEXT"),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The JSON arguments the flags of `props` in `m` give.
pub fn args_from(m: &ArgMatches, props: &[Prop]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for p in props {
        let id = p.name.as_str();
        let v = match &p.ty {
            PropType::Bool => m.get_flag(id).then_some(Value::Bool(true)),
            PropType::List => m
                .get_many::<String>(id)
                .map(|vs| Value::Array(vs.map(|s| Value::String(s.clone())).collect())),
            PropType::Map => match m.get_many::<String>(id) {
                None => None,
                Some(vs) => {
                    let mut map = Map::new();
                    for kv in vs {
                        let (k, v) = kv
                            .split_once('=')
                            .ok_or_else(|| anyhow!("--{} takes KEY=VALUE, not {kv:?}", p.flag()))?;
                        map.insert(k.to_string(), Value::String(v.to_string()));
                    }
                    Some(Value::Object(map))
                }
            },
            PropType::Int => m.get_one::<u64>(id).map(|n| Value::from(*n)),
            PropType::Num => m.get_one::<f64>(id).map(|n| Value::from(*n)),
            PropType::Json => match m.get_one::<String>(id) {
                None => None,
                Some(s) => Some(
                    serde_json::from_str(s)
                        .with_context(|| format!("--{} takes JSON", p.flag()))?,
                ),
            },
            PropType::Str | PropType::Enum(_) => {
                m.get_one::<String>(id).map(|s| Value::String(s.clone()))
            }
        };
        if let Some(v) = v {
            out.insert(p.name.clone(), v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_come_from_the_action_table() {
        let p = props(ActionName::CreateNode);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["hostname", "memory_mb", "node_template_id"]);
        assert!(p.iter().all(|p| p.required));
        assert_eq!(p[1].ty, PropType::Int);
        let p = props(ActionName::AssignModuleToTemplate);
        let config = p.iter().find(|p| p.name == "config").unwrap();
        assert_eq!(config.ty, PropType::Map);
        assert!(!config.required);
        let p = props(ActionName::ProvisionInstance);
        let cni = p.iter().find(|p| p.name == "cni_plugin").unwrap();
        assert!(
            matches!(&cni.ty, PropType::Enum(v) if v.contains(&"flannel".to_string())),
            "{cni:?}"
        );
        let p = props(ActionName::CreateOperatorToken);
        let perms = p.iter().find(|p| p.name == "permissions").unwrap();
        assert_eq!(perms.ty, PropType::List);
    }

    #[test]
    fn flags_parse_back_into_arguments() {
        let p = props(ActionName::AssignModuleToTemplate);
        let cmd = add_flags(Command::new("x"), &p, &|_| Vec::new());
        let m = cmd
            .try_get_matches_from([
                "x",
                "--template-id",
                "t1",
                "--module-name",
                "k3s-agent",
                "--config",
                "target_cluster_id=c1",
            ])
            .unwrap();
        let args = args_from(&m, &p).unwrap();
        assert_eq!(
            Value::Object(args),
            serde_json::json!({"template_id": "t1", "module_name": "k3s-agent", "config": {"target_cluster_id": "c1"}})
        );
    }
}
