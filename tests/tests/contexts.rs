//! Contexts (issue 17 item 2): `context add` trusts the API's CA on first
//! use (refusing without a terminal or --yes), pins it, and a later server
//! with another CA is refused naming the pin; the config file is 0600;
//! `POWERNODE_CONTEXT` overrides the current context; an unknown context is
//! an error listing the ones there are.

use powernode_tests::tls_support::{cli, port, stderr, stdout, Up};

#[tokio::test]
async fn tofu_pins_the_ca_and_a_changed_ca_is_refused_naming_the_pin() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("cfg").join("config.yaml");
    let elsewhere = dir.path().join("no-data");
    let data = dir.path().join("data");
    let up = Up::start(&data, port(), &[]).await?;
    let token = data.join("admin.token");
    let token = token.to_str().unwrap();
    let add = [
        "context",
        "add",
        "prod",
        "--url",
        &up.url(),
        "--token-file",
        token,
    ];
    let out = cli(&config, &elsewhere, &add)?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("not a terminal") && e.contains("--yes"), "{e}");
    assert!(!config.exists(), "refused, yet written");
    let ca_pem = std::fs::read(up.ca())?;
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&ca_pem)
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())?;
    let fp = powernode_client::fingerprint(&der);
    let mut with_yes = add.to_vec();
    with_yes.push("--yes");
    let out = cli(&config, &elsewhere, &with_yes)?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&fp),
        "the fingerprint is not shown: {}",
        stderr(&out)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The context is current: no flags at all, from another data dir.
    let out = cli(&config, &elsewhere, &["clusters", "list"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&config, &elsewhere, &["context", "list", "-o", "json"])?;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(listed[0]["name"], "prod");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(listed[0]["ca_fingerprint"], fp.as_str());
    assert!(
        !stdout(&out).contains(std::fs::read_to_string(token)?.trim()),
        "token listed"
    );

    // Another server (another CA) on the same address.
    let port = up.port;
    drop(up);
    let other = Up::start(&dir.path().join("data-other"), port, &[]).await?;
    let out = cli(&config, &elsewhere, &["clusters", "list"])?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("not signed by the CA pinned in context `prod`")
            && e.contains(&format!("pinned {fp}")),
        "{e}"
    );
    drop(other);
    Ok(())
}

#[tokio::test]
async fn the_environment_overrides_the_current_context_and_unknown_names_are_listed(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    let data = dir.path().join("data");
    let up = Up::start(&data, port(), &["--insecure-http"]).await?;
    let token = data.join("admin.token");
    let token = token.to_str().unwrap();
    let nowhere = dir.path().join("no-data");
    let url = format!("http://127.0.0.1:{}", up.port);
    let out = cli(
        &config,
        &nowhere,
        &[
            "context",
            "add",
            "local",
            "--url",
            &url,
            "--token-file",
            token,
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    // A second context whose API is down (added while it answers, then moved).
    let out = cli(
        &config,
        &nowhere,
        &[
            "context",
            "add",
            "other",
            "--url",
            &url,
            "--token-file",
            token,
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&config)?;
    let dead = format!("http://127.0.0.1:{}", port());
    let moved = text
        .replacen(&url, "PLACEHOLDER", 1)
        .replacen(&url, &dead, 1)
        .replacen("PLACEHOLDER", &url, 1);
    std::fs::write(&config, moved)?;
    let out = cli(&config, &nowhere, &["context", "current"])?;
    assert_eq!(stdout(&out).trim(), "local");
    let out = cli(&config, &nowhere, &["clusters", "list"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&config, &nowhere, &["--timeout", "5s", "clusters", "list"]).and_then(|_| {
        Ok(
            powernode_tests::cli_support::powernode(&powernode_tests::bins::powernode_bin()?)
                .env("POWERNODE_CONFIG", &config)
                .env("POWERNODE_CONTEXT", "other")
                .args(["clusters", "list"])
                .output()?,
        )
    })?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(&dead),
        "POWERNODE_CONTEXT=other did not reach {dead}: {e}"
    );
    let out = cli(
        &config,
        &nowhere,
        &["--context", "nope", "clusters", "list"],
    )?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("no context `nope`") && e.contains("there are: local, other"),
        "{e}"
    );
    let out = cli(&config, &nowhere, &["context", "use", "other"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&config, &nowhere, &["context", "list", "-o", "name"])?;
    assert_eq!(stdout(&out), "context/local\ncontext/other\n");
    let out = cli(&config, &nowhere, &["context", "delete", "other"])?;
    assert!(out.status.success());
    let out = cli(&config, &nowhere, &["context", "current"])?;
    assert!(!out.status.success());
    Ok(())
}
