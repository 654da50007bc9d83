//! The cluster CA a bootstrap server may hand over with its secrets (the
//! simulated runtime makes one; real k3s keeps its own). It is checked
//! against the signed report — its certificate must be the one the
//! kubeconfig (whose fingerprint the report signs) carries — stored
//! write-once with the bootstrap's other secrets, and handed only to
//! servers that join the cluster. Never logged.

use super::{refusal, Refusal};
use powernode_protocol::ClusterCa;

/// Checks that `ca`'s certificate is the kubeconfig's
/// `certificate-authority-data` (so the signed kubeconfig fingerprint
/// vouches for it) and that it holds a key.
pub(super) fn check(ca: &ClusterCa, kubeconfig: &str) -> Result<(), Refusal> {
    let mismatch = |why: &str| {
        refusal(
            "ca_mismatch",
            format!("the cluster CA handed over does not match the kubeconfig: {why}"),
        )
    };
    if !ca.cert_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(mismatch("its certificate is not PEM"));
    }
    if !ca.key_pem.contains("PRIVATE KEY-----") {
        return Err(mismatch("its key is not a PEM private key"));
    }
    let doc: serde_norway::Value = serde_norway::from_str(kubeconfig)
        .map_err(|e| mismatch(&format!("the kubeconfig is not YAML ({e})")))?;
    let carried = doc["clusters"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|c| c["cluster"]["certificate-authority-data"].as_str())
        .filter_map(powernode_events::wireguard::decode_base64)
        .any(|pem| pem == ca.cert_pem.as_bytes());
    if !carried {
        return Err(mismatch(
            "its certificate is not the kubeconfig's certificate-authority-data",
        ));
    }
    Ok(())
}

/// The stored form (JSON).
pub(super) fn encode(ca: &ClusterCa) -> Vec<u8> {
    // Two strings always serialize.
    serde_json::to_vec(ca).expect("a ClusterCa serializes")
}

/// The stored form read back.
pub(super) fn decode(bytes: &[u8], cluster_id: &str) -> Result<ClusterCa, Refusal> {
    serde_json::from_slice(bytes).map_err(|_| {
        refusal(
            "ca_unreadable",
            format!("the stored CA of cluster {cluster_id} is not readable"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn kubeconfig(ca_pem: &str) -> String {
        format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:6443\n  name: default\n",
            powernode_events::wireguard::encode_base64(ca_pem.as_bytes())
        )
    }

    fn ca() -> ClusterCa {
        ClusterCa {
            cert_pem: CERT.into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n".into(),
        }
    }

    #[test]
    fn the_ca_must_be_the_kubeconfigs() {
        assert!(check(&ca(), &kubeconfig(CERT)).is_ok());
        let other = kubeconfig("-----BEGIN CERTIFICATE-----\nOTHER\n-----END CERTIFICATE-----\n");
        let err = check(&ca(), &other).expect_err("another CA");
        assert_eq!(err.code, "ca_mismatch");
        let keyless = ClusterCa {
            key_pem: "nothing".into(),
            ..ca()
        };
        assert!(check(&keyless, &kubeconfig(CERT)).is_err());
        assert!(check(&ca(), "clusters: [").is_err());
    }

    #[test]
    fn stored_form_round_trips_and_errors_name_no_secret() {
        let bytes = encode(&ca());
        assert_eq!(decode(&bytes, "c1").expect("decodes"), ca());
        let err = decode(b"not json", "c1").expect_err("garbage");
        assert!(!err.message.contains("PRIVATE"), "{}", err.message);
    }
}
