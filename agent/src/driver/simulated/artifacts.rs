//! What a fresh simulated `k3s server --cluster-init` writes: the admin
//! kubeconfig (the cluster CA as `certificate-authority-data`, an admin
//! client certificate issued by it) and the node token
//! `K10<sha256 of the CA PEM>::server:<password>`.

use crate::driver::apiserver::pki;
use crate::driver::{BootstrapArtifacts, ClusterCa, RuntimeError};
use powernode_events::wireguard::encode_base64;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The artefacts of a cluster whose CA is `ca`, with the kubeconfig
/// pointing at `https://127.0.0.1:<port>` (as k3s writes it; the platform
/// points it at the cluster's endpoint) and a random password when `token`
/// is empty (as k3s does).
pub(super) fn bootstrap_artifacts(
    token: &str,
    ca: &ClusterCa,
    port: u16,
) -> Result<BootstrapArtifacts, RuntimeError> {
    let admin = pki::admin_client_cert(ca)?;
    let password = if token.is_empty() {
        random_hex(16)
    } else {
        token.to_owned()
    };
    let ca_hash = hex::encode(Sha256::digest(ca.cert_pem.as_bytes()));
    let kubeconfig = format!(
        "apiVersion: v1\n\
         clusters:\n\
         - cluster:\n    \
         certificate-authority-data: {ca}\n    \
         server: https://127.0.0.1:{port}\n  \
         name: default\n\
         contexts:\n\
         - context:\n    \
         cluster: default\n    \
         user: default\n  \
         name: default\n\
         current-context: default\n\
         kind: Config\n\
         preferences: {{}}\n\
         users:\n\
         - name: default\n  \
         user:\n    \
         client-certificate-data: {cert}\n    \
         client-key-data: {key}\n",
        ca = encode_base64(ca.cert_pem.as_bytes()),
        cert = encode_base64(admin.cert_pem.as_bytes()),
        key = encode_base64(admin.key_pem.as_bytes()),
    );
    Ok(BootstrapArtifacts {
        kubeconfig,
        node_token: format!("K10{ca_hash}::server:{password}"),
        cluster_ca: Some(ca.clone()),
    })
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}
