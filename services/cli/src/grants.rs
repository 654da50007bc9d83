//! `powernode networks grant`, `networks grants` and `networks revoke-grant`:
//! operator access grants. `grant` makes the WireGuard key pair on this
//! machine, sends only the public key, and writes the wg-quick file with
//! the private key filled in (mode 0600).

use super::output::{field, Ctx, Table};
use crate::ApiArgs;
use anyhow::Context;
use powernode_actions::grants::{
    CreateAccessGrantArgs, ListAccessGrantsArgs, RevokeAccessGrantArgs, PRIVATE_KEY_PLACEHOLDER,
};
use powernode_actions::{CreateAccessGrant, ListAccessGrants, RevokeAccessGrant};
use powernode_events::wireguard::encode_base64;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `powernode networks grant <network> --name laptop [--ttl 8h] --out laptop.conf`.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// Network id.
    pub network: String,
    /// The grant's name, e.g. `laptop`.
    #[arg(long)]
    pub name: String,
    /// How long it works (`30m`, `8h`, `7d`, `1h30m`); without it, until
    /// revoked.
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<u64>,
    /// Where to write the wg-quick file (created with mode 0600; an
    /// existing file is not overwritten).
    #[arg(long)]
    pub out: PathBuf,
}

/// `--ttl` as seconds.
fn parse_ttl(text: &str) -> Result<u64, String> {
    match powernode_server::api::sse::query::parse_duration(text) {
        Some(d) if d.as_secs() > 0 => Ok(d.as_secs()),
        _ => Err(format!(
            "{text:?} is not a duration like 30m, 8h, 7d or 1h30m"
        )),
    }
}

/// A fresh x25519 key pair: (private, public), base64.
pub(crate) fn key_pair() -> (String, String) {
    let secret = x25519_dalek::StaticSecret::random();
    let public = x25519_dalek::PublicKey::from(&secret);
    (
        encode_base64(secret.as_bytes()),
        encode_base64(public.as_bytes()),
    )
}

/// The server's file with the private key put where its placeholder is.
pub(crate) fn fill_in(config: &str, private_key: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        config.lines().any(|l| l == PRIVATE_KEY_PLACEHOLDER),
        "the API answered a config without the private key placeholder; not writing it"
    );
    Ok(config
        .lines()
        .map(|l| {
            if l == PRIVATE_KEY_PLACEHOLDER {
                format!("PrivateKey = {private_key}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// Writes `text` to a new file at `path`, readable by its owner only.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `powernode networks grant …`.
pub async fn grant(api: &ApiArgs, a: GrantArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    if a.out.exists() {
        anyhow::bail!("{} exists; choose another --out", a.out.display());
    }
    let (private_key, public_key) = key_pair();
    let answer = ctx
        .api
        .act::<CreateAccessGrant>(&CreateAccessGrantArgs {
            network_id: a.network,
            name: a.name,
            public_key: Some(public_key),
            ttl_secs: a.ttl,
        })
        .await?;
    let config = fill_in(&answer.wireguard_config, &private_key)?;
    write_private(&a.out, &config)?;
    let g = &answer.grant;
    if ctx.json() {
        let mut data = serde_json::to_value(g)?;
        data["config_path"] = a.out.display().to_string().into();
        super::output::print_json(&data);
    } else {
        let expires = g.expires_at.map_or("never".to_string(), |t| t.to_rfc3339());
        super::output::emit(&format!(
            "access grant {} ({}) on network {}: address {}, gateway {}, expires {expires}\n\
             wrote {} (mode 0600); bring it up with: wg-quick up {}\n",
            g.id,
            g.name,
            g.network_id,
            g.address,
            g.gateway_peer_id,
            a.out.display(),
            a.out.display(),
        ));
    }
    Ok(())
}

/// Runs `powernode networks grants [<network>]`.
pub async fn list(api: &ApiArgs, network: Option<String>) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    let answer = ctx
        .api
        .act::<ListAccessGrants>(&ListAccessGrantsArgs {
            network_id: network,
        })
        .await?;
    let data = serde_json::to_value(&answer)?;
    ctx.show(&data, |d| {
        let mut t = Table::new(&[
            "ID", "NAME", "NETWORK", "ADDRESS", "GATEWAY", "STATUS", "EXPIRES",
        ]);
        for g in d["grants"].as_array().into_iter().flatten() {
            t.row(vec![
                field(g, "id"),
                field(g, "name"),
                field(g, "network_id"),
                field(g, "address"),
                field(g, "gateway_peer_id"),
                field(g, "status"),
                field(g, "expires_at"),
            ]);
        }
        t.render("No access grants found.")
    });
    Ok(())
}

/// Runs `powernode networks revoke-grant <grant>`.
pub async fn revoke(api: &ApiArgs, grant_id: String) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    let answer = ctx
        .api
        .act::<RevokeAccessGrant>(&RevokeAccessGrantArgs { grant_id })
        .await?;
    let data = serde_json::to_value(&answer)?;
    ctx.show(&data, |d| {
        let g = &d["grant"];
        format!(
            "access grant {} ({}) revoked; its peer is removed from the gateway\n",
            field(g, "id"),
            field(g, "name")
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_key_goes_where_the_placeholder_was() {
        let config = format!("[Interface]\n{PRIVATE_KEY_PLACEHOLDER}\nAddress = fd00::1000/128\n");
        let filled = fill_in(&config, "cHJpdmF0ZQ==").expect("filled in");
        assert_eq!(
            filled,
            "[Interface]\nPrivateKey = cHJpdmF0ZQ==\nAddress = fd00::1000/128\n"
        );
        assert!(fill_in("[Interface]\nAddress = x\n", "k").is_err());
    }

    #[test]
    fn ttls_are_durations_and_zero_is_refused() {
        assert_eq!(parse_ttl("8h"), Ok(8 * 3600));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("eight hours").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_the_owners_only_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("laptop.conf");
        write_private(&path, "secret\n").expect("written");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_private(&path, "other\n").is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "secret\n");
    }

    #[test]
    fn key_pairs_are_x25519() {
        let (private, public) = key_pair();
        let bytes: [u8; 32] = powernode_events::wireguard::decode_base64(&private)
            .expect("base64")
            .try_into()
            .expect("32 bytes");
        let derived = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes));
        assert_eq!(public, encode_base64(derived.as_bytes()));
    }
}
