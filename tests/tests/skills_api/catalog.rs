//! The module catalog and the version an assignment pins.

use super::world::*;
use anyhow::ensure;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_versions_and_who_runs_what() -> anyhow::Result<()> {
    let w = world().await?;
    // Creating a version again with the same release answers it; another
    // release under the same version is refused; nothing is appended.
    let before = w.last_seq().await?;
    let again = w.version("k3s-server", "1.31.0").await?;
    ensure!(
        again["module_version"]["id"] == "v-k3s-1.31.0"
            && again["module_version"]["module_id"] == "mod-k3s-server"
            && again["module_version"]["k3s_version"] == "v1.31.0+k3s1",
        "{again}"
    );
    let (status, code, message) = w
        .refused(
            "system_create_module_version",
            json!({"module_name": "k3s-server", "version": "1.31.0", "k3s_version": "v1.31.0+k3s2"}),
        )
        .await?;
    ensure!(
        status == 409 && code == "module_version_exists",
        "{code}: {message}"
    );
    ensure!(message.contains("v1.31.0+k3s1"), "{message}");
    for (args, field) in [
        (
            json!({"module_name": "etcd", "version": "1.0.0", "k3s_version": "v1.0.0+k3s1"}),
            "module_name",
        ),
        (
            json!({"module_name": "k3s-server", "version": "latest", "k3s_version": "v1.0.0+k3s1"}),
            "version",
        ),
        (
            json!({"module_name": "k3s-server", "version": "1.32.0", "k3s_version": "1.32.0"}),
            "k3s_version",
        ),
    ] {
        let (status, code, message) = w.refused("system_create_module_version", args).await?;
        ensure!(
            status == 400 && code == "invalid_arguments",
            "{code}: {message}"
        );
        ensure!(message.contains(field), "{field}: {message}");
    }
    ensure!(
        w.last_seq().await? == before,
        "a refusal appended something"
    );

    // An agent module version is named after its module.
    let v = w.version("k3s-agent", "1.32.0").await?;
    ensure!(v["module_version"]["id"] == "v-k3s-agent-1.32.0", "{v}");

    let list = w.ok("system_list_modules", json!({})).await?;
    let modules = list["modules"].as_array().cloned().unwrap_or_default();
    ensure!(modules.len() == 2, "{list}");
    let server = &modules[0];
    ensure!(server["id"] == "mod-k3s-server", "{server}");
    let ids: Vec<String> = server["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| s(&v["id"]))
        .collect();
    ensure!(ids == ["v-k3s-1.30.0", "v-k3s-1.31.0"], "{ids:?}");
    ensure!(server["newest_version_id"] == "v-k3s-1.31.0", "{server}");
    let runs: Vec<(String, String, String)> = server["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                s(&i["hostname"]),
                s(&i["module_version_id"]),
                s(&i["k3s_version"]),
            )
        })
        .collect();
    ensure!(
        runs == (1..=3)
            .map(|i| (
                format!("prod-server-{i}"),
                "v-k3s-1.30.0".to_string(),
                "v1.30.0+k3s1".to_string()
            ))
            .collect::<Vec<_>>(),
        "{runs:?}"
    );
    let agent = &modules[1];
    ensure!(
        agent["newest_version_id"] == "v-k3s-agent-1.32.0",
        "{agent}"
    );
    ensure!(
        agent["instances"].as_array().map(Vec::len) == Some(3),
        "{agent}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_pins_a_version_of_its_module_or_the_newest() -> anyhow::Result<()> {
    let w = world().await?;
    let t = s(&w
        .ok("system_create_template", json!({"name": "edge"}))
        .await?["template"]["id"]);
    let before = w.last_seq().await?;
    let (status, code, message) = w
        .refused(
            "system_assign_module_to_template",
            json!({"template_id": t, "module_name": "k3s-server", "module_version_id": "v-k3s-agent-1.31.0"}),
        )
        .await?;
    ensure!(
        status == 422 && code == "version_of_another_module",
        "{code}: {message}"
    );
    ensure!(
        message == "v-k3s-agent-1.31.0 is a version of mod-k3s-agent, not of mod-k3s-server",
        "{message}"
    );
    let (status, code, _) = w
        .refused(
            "system_assign_module_to_template",
            json!({"template_id": t, "module_name": "k3s-server", "module_version_id": "v-k3s-9.0.0"}),
        )
        .await?;
    ensure!(status == 404 && code == "not_found", "{code}");
    ensure!(
        w.last_seq().await? == before,
        "a refusal appended something"
    );

    let a = w
        .ok(
            "system_assign_module_to_template",
            json!({"template_id": t, "module_name": "k3s-server"}),
        )
        .await?;
    let pinned = &a["template"]["module_assignments"][0]["module_version_id"];
    ensure!(pinned == "v-k3s-1.31.0", "the newest is pinned: {a}");
    let a = w
        .ok(
            "system_assign_module_to_template",
            json!({"template_id": t, "module_name": "k3s-server", "module_version_id": "v-k3s-1.30.0"}),
        )
        .await?;
    let pinned = &a["template"]["module_assignments"][0]["module_version_id"];
    ensure!(pinned == "v-k3s-1.30.0", "{a}");
    Ok(())
}
