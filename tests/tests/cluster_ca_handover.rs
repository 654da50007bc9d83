//! The cluster CA through the intake: a bootstrap may hand over the CA its
//! (simulated) runtime made; it must be the CA the signed kubeconfig
//! carries, it is stored with the bootstrap's secrets and handed to a
//! joining `k3s-server` only — never to a worker — and its key is never in
//! the log.
//!
//! `cargo nextest run -p powernode-tests --test cluster_ca_handover`

use anyhow::{ensure, Context as _};
use powernode_agent::driver::apiserver::pki;
use powernode_events::payloads::k3s::{
    HandshakeBootstrap, HandshakeJoinRequest, HandshakeReady, K3sModule,
};
use powernode_events::wireguard::encode_base64;
use powernode_protocol::{fingerprint, BootstrapSecrets, ClusterCa};
use powernode_tests::lifecycle_support::*;

fn kubeconfig(ca: &ClusterCa) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:6443\n  name: default\n",
        encode_base64(ca.cert_pem.as_bytes())
    )
}

/// Submits a bootstrap report by `agent` with a kubeconfig carrying
/// `carried`'s certificate and `handed` as the CA; the raw reply.
async fn bootstrap(
    agent: &ManualAgent,
    carried: &ClusterCa,
    handed: &ClusterCa,
) -> anyhow::Result<serde_json::Value> {
    let node_token = format!("K10{}::server:{}", "ab".repeat(32), "cd".repeat(32));
    let kubeconfig = kubeconfig(carried);
    let e = agent.signed(HandshakeBootstrap {
        instance_id: agent.instance_id.clone(),
        k3s_version: K3S_VERSION.into(),
        node_token_fingerprint: fingerprint(node_token.as_bytes()),
        kubeconfig_fingerprint: fingerprint(kubeconfig.as_bytes()),
    })?;
    agent
        .submit(
            &e,
            Some(BootstrapSecrets {
                node_token,
                kubeconfig,
                cluster_ca: Some(handed.clone()),
            }),
        )
        .await
}

async fn join(
    p: &Platform,
    hostname: &str,
    module: K3sModule,
    cluster_id: &str,
) -> anyhow::Result<serde_json::Value> {
    let name = match module {
        K3sModule::K3sServer => SERVER,
        K3sModule::K3sAgent => AGENT,
    };
    let a = ManualAgent::enroll(p, &p.op, hostname, Some((name, Some(cluster_id)))).await?;
    let e = a.signed(HandshakeJoinRequest {
        instance_id: a.instance_id.clone(),
        module_name: module,
        target_cluster_id: Some(cluster_id.to_owned()),
    })?;
    a.submit(&e, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_goes_to_joining_servers_only() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let ca = pki::new_cluster_ca()?;
    let other = pki::new_cluster_ca()?;

    // A CA that is not the kubeconfig's is refused, and creates nothing.
    let liar = ManualAgent::enroll(&p, &p.op, "k3s-liar-1", Some((SERVER, None))).await?;
    let refused = bootstrap(&liar, &ca, &other).await?;
    ensure!(error_code(&refused) == Ok("ca_mismatch"), "{refused}");
    ensure!(p.clusters(true).await?.is_empty(), "a cluster was created");

    // The kubeconfig's own CA is taken.
    let server = ManualAgent::enroll(&p, &p.op, "k3s-server-1", Some((SERVER, None))).await?;
    let created = bootstrap(&server, &ca, &ca).await?;
    let cluster_id = str_at(&created, "/ok/cluster_id").with_context(|| format!("{created}"))?;
    let ready = server.signed(HandshakeReady {
        instance_id: server.instance_id.clone(),
        cluster_id: cluster_id.clone(),
        node_name: "k3s-server-1".into(),
        k3s_version: K3S_VERSION.into(),
        token_fingerprint: None,
    })?;
    let r = server.submit(&ready, None).await?;
    ensure!(r["ok"]["outcome"] == "accepted", "ready: {r}");
    p.wait_cluster_active(&server.instance_id).await?;

    // A worker gets the token and no CA; a server gets the CA too.
    let worker = join(&p, "k3s-worker-1", K3sModule::K3sAgent, &cluster_id).await?;
    ensure!(worker["ok"]["outcome"] == "join_granted", "{worker}");
    ensure!(
        worker["ok"].get("cluster_ca").is_none(),
        "a worker got the CA: {worker}"
    );
    let second = join(&p, "k3s-server-2", K3sModule::K3sServer, &cluster_id).await?;
    ensure!(second["ok"]["outcome"] == "join_granted", "{second}");
    ensure!(
        second["ok"]["cluster_ca"]["cert_pem"] == ca.cert_pem.as_str()
            && second["ok"]["cluster_ca"]["key_pem"] == ca.key_pem.as_str(),
        "the joining server did not get the cluster's CA: {}",
        second["ok"]["cluster_ca"]
    );

    // Its key is in no event.
    let key_body: String = ca
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    p.assert_log_free_of("the cluster CA key", &key_body)
        .await?;
    p.assert_log_free_of("the rejected CA key", &other.key_pem)
        .await?;
    Ok(())
}
