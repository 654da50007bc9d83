//! What the k3s driver writes: the plan's checks, the platform's extra
//! flags parsed, and the rendering of `config.yaml` and the systemd
//! drop-ins.

use super::*;

pub(super) fn invalid(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Unexpected(message.into())
}

/// Checks a token can be written into a YAML file and a unit file as is.
pub(super) fn check_token(token: &str) -> Result<(), RuntimeError> {
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "the token contains whitespace or control characters",
        ));
    }
    Ok(())
}

/// Checks `url` is `https://host:port` with an IPv6 host bracketed.
pub(super) fn check_server_url(url: &str) -> Result<(), RuntimeError> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(invalid(format!(
            "server URL `{url}` must start with https://"
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid(format!("server URL `{url}` has no host")));
    }
    if !authority.starts_with('[') && authority.matches(':').count() > 1 {
        return Err(invalid(format!(
            "server URL `{url}`: an IPv6 address must be bracketed, e.g. {}",
            api_server_url("fd00::1")
        )));
    }
    Ok(())
}

/// What k3s would refuse (or silently misread) in a server plan.
pub(crate) fn validate_server_plan(plan: &ServerPlan) -> Result<(), RuntimeError> {
    check_token(&plan.token)?;
    match (&plan.server_url, plan.cluster_init) {
        (Some(_), true) => Err(invalid(
            "a server plan cannot both create a cluster (cluster_init) and join one (server_url)",
        )),
        (None, false) => Err(invalid(
            "a server plan must either create a cluster (cluster_init) or join one (server_url)",
        )),
        (Some(url), false) => {
            check_server_url(url)?;
            if plan.token.is_empty() {
                return Err(invalid("joining a cluster needs its token"));
            }
            Ok(())
        }
        (None, true) => Ok(()),
    }?;
    if plan.tls_sans.iter().any(|san| bare_host(san).is_empty()) {
        return Err(invalid("a tls-san is empty"));
    }
    Ok(())
}

/// What k3s would refuse in an agent plan.
pub(crate) fn validate_agent_plan(plan: &AgentPlan) -> Result<(), RuntimeError> {
    check_server_url(&plan.server_url)?;
    check_token(&plan.token)?;
    if plan.token.is_empty() {
        return Err(invalid("an agent needs the cluster's token"));
    }
    Ok(())
}

/// One value of a configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FlagValue {
    Bool(bool),
    Text(String),
}

/// The platform's extra flags, parsed: `--key=value`, `--key value`,
/// `--flag`, or `--key` followed by a separate `value` item. `--tls-san`s
/// join the plan's.
#[derive(Debug, Default)]
pub(super) struct ExtraFlags {
    pub(super) tls_sans: Vec<String>,
    /// Keys in first-seen order with every value given (repeated flags such
    /// as `--node-label` become YAML lists).
    entries: Vec<(String, Vec<FlagValue>)>,
}

impl ExtraFlags {
    pub(super) fn parse(plan_sans: &[String], flags: &[String]) -> Result<Self, RuntimeError> {
        let mut parsed = Self::default();
        for san in plan_sans {
            parsed.add_san(san);
        }
        // The entry whose last value is a bare flag that may still take the
        // next item as its value.
        let mut open: Option<usize> = None;
        for (n, item) in flags.iter().enumerate() {
            let item = item.trim();
            let Some(body) = item.strip_prefix("--") else {
                match open.take() {
                    Some(index) if !item.is_empty() => {
                        let values = &mut parsed.entries[index].1;
                        values.pop();
                        values.push(value_of(item));
                        continue;
                    }
                    _ => {
                        // Not quoting the item: it may be a secret value.
                        return Err(invalid(format!("extra flag #{} is not a --flag", n + 1)));
                    }
                }
            };
            let (key, value) = match body.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => match body.split_once(char::is_whitespace) {
                    Some((key, value)) => (key, Some(value.trim())),
                    None => (body, None),
                },
            };
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(format!(
                    "extra flag #{} has an invalid name",
                    n + 1
                )));
            }
            if PLAN_KEYS.contains(&key) {
                return Err(invalid(format!(
                    "extra flag --{key} conflicts with the server plan, which sets it"
                )));
            }
            open = None;
            if key == "tls-san" {
                match value {
                    Some(value) => parsed.add_san(unquote(value)),
                    None => return Err(invalid("extra flag --tls-san needs a value")),
                }
                continue;
            }
            let bare = value.is_none();
            let value = value.map_or(FlagValue::Bool(true), value_of);
            let index = match parsed.entries.iter().position(|(k, _)| k == key) {
                Some(index) => {
                    parsed.entries[index].1.push(value);
                    index
                }
                None => {
                    parsed.entries.push((key.to_owned(), vec![value]));
                    parsed.entries.len() - 1
                }
            };
            open = bare.then_some(index);
        }
        Ok(parsed)
    }

    fn add_san(&mut self, san: &str) {
        let san = bare_host(san).to_owned();
        if !san.is_empty() && !self.tls_sans.contains(&san) {
            self.tls_sans.push(san);
        }
    }

    /// The flags as command-line words (`--key=value`, `--flag`).
    pub(super) fn command_line(&self) -> Vec<String> {
        let mut words = Vec::new();
        for (key, values) in &self.entries {
            for value in values {
                words.push(match value {
                    FlagValue::Bool(true) => format!("--{key}"),
                    FlagValue::Bool(false) => format!("--{key}=false"),
                    FlagValue::Text(text) => format!("--{key}={text}"),
                });
            }
        }
        words
    }
}

pub(super) fn unquote(value: &str) -> &str {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

pub(super) fn value_of(raw: &str) -> FlagValue {
    match unquote(raw) {
        "true" => FlagValue::Bool(true),
        "false" => FlagValue::Bool(false),
        text => FlagValue::Text(text.to_owned()),
    }
}

/// A YAML double-quoted scalar (never a YAML 1.1 surprise such as `0644`
/// read as octal or `no` as false).
pub(super) fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn yaml_value(value: &FlagValue) -> String {
    match value {
        FlagValue::Bool(b) => b.to_string(),
        FlagValue::Text(text) => yaml_string(text),
    }
}

/// `/etc/rancher/k3s/config.yaml` for a server plan.
pub(super) fn server_config(plan: &ServerPlan, flags: &ExtraFlags) -> String {
    let mut out = String::from(FILE_HEADER);
    match &plan.server_url {
        Some(url) => out.push_str(&format!("server: {}\n", yaml_string(url))),
        None => out.push_str("cluster-init: true\n"),
    }
    if !plan.token.is_empty() {
        out.push_str(&format!("token: {}\n", yaml_string(&plan.token)));
    }
    if !flags.tls_sans.is_empty() {
        out.push_str("tls-san:\n");
        for san in &flags.tls_sans {
            out.push_str(&format!("  - {}\n", yaml_string(san)));
        }
    }
    push_entries(&mut out, flags);
    out
}

/// `/etc/rancher/k3s/config.yaml` for a worker: its stamped flags only
/// (its URL and token stay in the `k3s-agent` drop-in).
pub(super) fn agent_config(flags: &ExtraFlags) -> String {
    let mut out = String::from(FILE_HEADER);
    push_entries(&mut out, flags);
    out
}

/// One YAML key per flag (a list for repeated flags).
fn push_entries(out: &mut String, flags: &ExtraFlags) {
    for (key, values) in &flags.entries {
        match values.as_slice() {
            [one] => out.push_str(&format!("{key}: {}\n", yaml_value(one))),
            many => {
                out.push_str(&format!("{key}:\n"));
                for value in many {
                    out.push_str(&format!("  - {}\n", yaml_value(value)));
                }
            }
        }
    }
}

/// One `ExecStart` word: `%` and `$` escaped, quoted when it holds spaces
/// or quotes.
pub(super) fn systemd_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let needs_quotes = escaped.is_empty()
        || escaped
            .chars()
            .any(|c| c.is_whitespace() || "\"'\\;".contains(c));
    if needs_quotes {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// One `Environment=` assignment, quoted.
pub(super) fn systemd_env(name: &str, value: &str) -> String {
    let value = value
        .replace('%', "%%")
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("\"{name}={value}\"")
}

/// The `k3s.service` drop-in: the same flags as the config, explicitly on
/// the command line.
pub(super) fn server_drop_in(plan: &ServerPlan, flags: &ExtraFlags) -> String {
    let mut words: Vec<String> = vec![K3S_BIN.into(), "server".into()];
    match &plan.server_url {
        Some(url) => words.extend(["--server".into(), url.clone()]),
        None => words.push("--cluster-init".into()),
    }
    if !plan.token.is_empty() {
        words.extend(["--token".into(), plan.token.clone()]);
    }
    for san in &flags.tls_sans {
        words.extend(["--tls-san".into(), san.clone()]);
    }
    words.extend(flags.command_line());
    let exec: Vec<String> = words.iter().map(|w| systemd_word(w)).collect();
    format!(
        "{FILE_HEADER}[Service]\nExecStart=\nExecStart={}\n",
        exec.join(" ")
    )
}
