//! Unit tests of the k3s driver's config rendering.
use super::config::{check_server_url, systemd_word};
use super::*;

#[test]
fn urls_bracket_ipv6_and_sans_are_bare() {
    assert_eq!(
        api_server_url("fd00:abcd:1::100"),
        "https://[fd00:abcd:1::100]:6443"
    );
    assert_eq!(
        api_server_url("[fd00:abcd:1::100]"),
        "https://[fd00:abcd:1::100]:6443"
    );
    assert_eq!(api_server_url("10.0.0.1"), "https://10.0.0.1:6443");
    assert_eq!(bare_host("[fd00::1]"), "fd00::1");
    assert!(check_server_url("https://[fd00::1]:6443").is_ok());
    assert!(check_server_url("https://fd00::1:6443").is_err());
    assert!(check_server_url("http://10.0.0.1:6443").is_err());
}

#[test]
fn extra_flags_become_config_keys() {
    let flags: Vec<String> = [
        "--flannel-iface=wg0",
        "--disable-network-policy",
        "--node-label=a=b",
        "--node-label=c=d",
        "--node-ip",
        "10.0.0.1",
        "--write-kubeconfig-mode '0644'",
        "--tls-san=[fd00::2]",
        "--secrets-encryption=true",
    ]
    .map(String::from)
    .to_vec();
    let parsed = ExtraFlags::parse(&["fd00::1".into()], &flags).unwrap();
    assert_eq!(parsed.tls_sans, ["fd00::1", "fd00::2"]);
    let plan = ServerPlan {
        cluster_init: true,
        ..ServerPlan::default()
    };
    let yaml = server_config(&plan, &parsed);
    for line in [
        "cluster-init: true\n",
        "flannel-iface: \"wg0\"\n",
        "disable-network-policy: true\n",
        "node-label:\n  - \"a=b\"\n  - \"c=d\"\n",
        "node-ip: \"10.0.0.1\"\n",
        "write-kubeconfig-mode: \"0644\"\n",
        "tls-san:\n  - \"fd00::1\"\n  - \"fd00::2\"\n",
        "secrets-encryption: true\n",
    ] {
        assert!(yaml.contains(line), "{line:?} not in\n{yaml}");
    }
    assert!(!yaml.contains("token"), "{yaml}");
    assert_eq!(
        parsed.command_line(),
        [
            "--flannel-iface=wg0",
            "--disable-network-policy",
            "--node-label=a=b",
            "--node-label=c=d",
            "--node-ip=10.0.0.1",
            "--write-kubeconfig-mode=0644",
            "--secrets-encryption",
        ]
    );
}

#[test]
fn extra_flags_may_not_override_the_plan_or_be_garbage() {
    for bad in [
        "--token=x",
        "--server=https://a:6443",
        "--cluster-init",
        "oops",
        "--",
    ] {
        let err = ExtraFlags::parse(&[], &[bad.to_owned()]).unwrap_err();
        assert!(!err.to_string().contains("=x"), "{err}");
    }
}

#[test]
fn systemd_words_are_escaped() {
    assert_eq!(systemd_word("--flannel-iface=wg0"), "--flannel-iface=wg0");
    assert_eq!(systemd_word("a b"), "\"a b\"");
    assert_eq!(systemd_word("50%"), "50%%");
    assert_eq!(systemd_word("$HOME"), "$$HOME");
    assert_eq!(systemd_env("K3S_URL", "x\"y"), "\"K3S_URL=x\\\"y\"");
}

#[test]
fn secure_tokens_are_recognised() {
    assert_eq!(
        secure_token_parts("K10abcdef0123::server:secret"),
        Some(("abcdef0123", "server:secret"))
    );
    assert_eq!(secure_token_parts("secret"), None);
    assert_eq!(secure_token_parts("K10xyz::server:secret"), None);
    assert_eq!(secure_token_parts("K10abc::"), None);
    assert_eq!(token_password("K10abcdef0123::server:secret"), "secret");
    assert_eq!(token_password("secret"), "secret");
}
