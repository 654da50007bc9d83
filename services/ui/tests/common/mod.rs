//! A fake [`Backend`] with canned answers, and helpers to sign in and send
//! requests through the dashboard's router (no server, no network).

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use futures::stream::BoxStream;
use powernode_actions::ActionName;
use powernode_ui::{At, Backend, BoxFut, EventQuery, Head, Mode, Principal, Refusal, Ui};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// The token the fake accepts.
pub const TOKEN: &str = "pn_good";

/// Canned answers by action, and every call made.
#[derive(Default)]
pub struct Fake {
    pub answers: Mutex<HashMap<&'static str, Result<Value, Refusal>>>,
    pub calls: Mutex<Vec<(String, At, Value)>>,
    pub offline: bool,
}

impl Fake {
    /// Answers `action` with `v` from now on.
    pub fn answer(&self, action: ActionName, v: Result<Value, Refusal>) {
        self.answers.lock().unwrap().insert(action.as_str(), v);
    }

    /// The names of the actions called, in order (sign-in's whoami left out).
    pub fn called(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _, _)| a.clone())
            .filter(|a| a != "system_whoami")
            .collect()
    }

    /// The arguments of the last call of `action`.
    pub fn args_of(&self, action: ActionName) -> Option<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(a, _, _)| a == action.as_str())
            .map(|(_, _, v)| v.clone())
    }
}

impl Backend for Fake {
    fn mode(&self) -> Mode {
        if self.offline {
            Mode::Offline {
                file: PathBuf::from("/tmp/export.pnx"),
                accounts: vec!["acct-1".into()],
            }
        } else {
            Mode::Live { https: false }
        }
    }

    fn call<'a>(
        &'a self,
        who: &'a Principal,
        at: At,
        action: ActionName,
        args: Value,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move {
            if let Principal::Token(t) = who {
                if t != TOKEN {
                    return Err(Refusal::new(401, "unauthorized", "unknown token"));
                }
            }
            self.calls
                .lock()
                .unwrap()
                .push((action.as_str().to_string(), at, args));
            if action == ActionName::Whoami {
                return Ok(json!({
                    "account_id": "acct-1",
                    "account_name": null,
                    "token_id": "tok-1",
                    "permissions": [],
                    "admin": false,
                    "other_accounts": [],
                }));
            }
            self.answers
                .lock()
                .unwrap()
                .get(action.as_str())
                .cloned()
                .unwrap_or_else(|| Err(Refusal::new(404, "not_found", "no canned answer")))
        })
    }

    fn head<'a>(&'a self, _who: &'a Principal) -> BoxFut<'a, Result<Head, Refusal>> {
        Box::pin(async move {
            Ok(Head {
                first_seq: 1,
                last_seq: 100,
            })
        })
    }

    fn event<'a>(&'a self, _who: &'a Principal, _seq: u64) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move { Err(Refusal::new(404, "not_found", "none")) })
    }

    fn diff<'a>(
        &'a self,
        _who: &'a Principal,
        _from: u64,
        _to: u64,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move { Ok(json!({})) })
    }

    fn explain<'a>(
        &'a self,
        _who: &'a Principal,
        _id: &'a str,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move { Err(Refusal::new(404, "not_found", "none")) })
    }

    fn events<'a>(
        &'a self,
        _who: &'a Principal,
        _query: EventQuery,
    ) -> BoxFut<'a, Result<BoxStream<'static, Value>, Refusal>> {
        Box::pin(async move {
            let s: BoxStream<'static, Value> = Box::pin(futures::stream::empty());
            Ok(s)
        })
    }
}

/// A cluster as `kubernetes_list_clusters` answers it.
pub fn cluster(id: &str, name: &str, status: &str) -> Value {
    json!({
        "id": id, "name": name, "flavor": "k3s", "status": status,
        "api_endpoint": format!("https://[fd00::{}]:6443", id.len()),
        "network_id": "net-1", "cni_plugin": "flannel", "pod_cidr": null,
        "server_flags": [], "join_token_fingerprint": "sha256:00",
        "bootstrap_instance_id": "inst-a", "k3s_version": "v1.31.4+k3s1",
        "created_seq": 10, "activated_seq": 12, "decommissioned_seq": null,
        "node_count": 2, "version": "v1.31.4+k3s1"
    })
}

/// A VIP held by inst-a (peer-a) at generation 3, candidate peer-b.
pub fn vip(split: bool) -> Value {
    json!({
        "id": "vip-1", "name": "k3s_api_endpoint", "vip": "fd00::100",
        "purpose": "k3s_api_endpoint", "network_id": "net-1", "cluster_id": "c-1",
        "api_endpoint": "https://[fd00::100]:6443", "status": "allocated",
        "generation": 3, "holders": ["inst-a"], "holder_peer_id": "peer-a",
        "holder_silent": true, "failover_holder_peer_ids": ["peer-b"],
        "failover_candidates": [{ "peer_id": "peer-b", "instance_id": "inst-b" }],
        "applied_generations": { "peer-a": 3 }, "split": split, "stale_holders": [],
        "silent_since": "2026-01-01T00:00:00Z", "pending_approval": "apr-1",
        "last_promotion": null, "release_reason": null, "silence_reason": "heartbeat",
        "reachable": null, "reachable_now": false
    })
}

/// An approval of a VIP failover.
pub fn approval(id: &str, status: &str, expires_at: &str) -> Value {
    json!({
        "id": id, "action": "vip_promotion", "subject": "virtual_ip/vip-1",
        "summary": "promote peer-b for fd00::100", "status": status,
        "expires_at": expires_at, "reason": null, "virtual_ip_id": "vip-1",
        "proposed_peer": "peer-b", "current_holder": "peer-a", "generation": 3,
        "candidates": [{ "peer": "peer-b", "instance_id": "inst-b", "score": 0.87,
                         "reasons": ["heard 2s ago", "same zone"] }],
        "requested_seq": 40, "decided_seq": null
    })
}

/// A fake with a small fleet: two clusters, one VIP, one waiting approval.
pub fn fleet() -> Arc<Fake> {
    let f = Arc::new(Fake::default());
    f.answer(
        ActionName::ListClusters,
        Ok(json!({ "clusters": [cluster("c-1", "prod-1", "active"), cluster("c-22", "edge-2", "bootstrapping")] })),
    );
    f.answer(ActionName::ListNetworks, Ok(json!({ "networks": [] })));
    f.answer(
        ActionName::GetCluster,
        Ok(json!({ "cluster": cluster("c-1", "prod-1", "active") })),
    );
    f.answer(
        ActionName::ListNodes,
        Ok(json!({ "nodes": [
            { "cluster_id": "c-1", "instance_id": "inst-a", "role": "control-plane", "status": "ready",
              "version": "v1.31.4+k3s1", "node_name": "a", "registered_seq": 11 },
            { "cluster_id": "c-1", "instance_id": "inst-b", "role": "worker", "status": "joining",
              "version": null, "node_name": null, "registered_seq": 13 }
        ] })),
    );
    f.answer(
        ActionName::GetVirtualIp,
        Ok(json!({ "virtual_ip": vip(false) })),
    );
    f.answer(
        ActionName::FailoverVirtualIp,
        Ok(json!({
            "resolved": false, "dry_run": true, "virtual_ip_id": "vip-1",
            "current_holder": "peer-a", "generation": 3, "holder_silent": true,
            "candidates": [{ "peer": "peer-b", "instance_id": "inst-b", "score": 0.87,
                             "reasons": ["heard 2s ago"], "heard_within_threshold": true }]
        })),
    );
    f.answer(
        ActionName::ListApprovals,
        Ok(json!({ "approvals": [
            approval("apr-0", "rejected", "2026-01-01T00:00:00Z"),
            approval("apr-1", "requested", "2999-01-01T00:00:00Z"),
        ] })),
    );
    f
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `Location` header.
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A signed-in browser: the router, the session cookie, the CSRF token.
pub struct Browser {
    pub ui: Ui,
    pub cookie: String,
}

impl Browser {
    /// Signs in to a dashboard over `fake`.
    pub async fn sign_in(fake: Arc<Fake>) -> Browser {
        let ui = Ui::new(fake);
        let res = send(
            &ui,
            Request::post("/ui/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={TOKEN}&next=%2Fui%2Fapprovals")))
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        assert_eq!(res.location(), "/ui/approvals");
        let set = res.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        let cookie = set.split(';').next().unwrap().to_string();
        Browser { ui, cookie }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        send(
            &self.ui,
            Request::get(path)
                .header(header::COOKIE, &self.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `GET path` as the live script asks (the `<main>` fragment).
    pub async fn fragment(&self, path: &str) -> Answer {
        send(
            &self.ui,
            Request::get(path)
                .header(header::COOKIE, &self.cookie)
                .header("x-pn-fragment", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `POST path` with a form body (as given: put `csrf=` in it or not).
    pub async fn post(&self, path: &str, form: &str) -> Answer {
        send(
            &self.ui,
            Request::post(path)
                .header(header::COOKIE, &self.cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::REFERER, "https://node.example/ui/approvals?x=1")
                .body(Body::from(form.to_string()))
                .unwrap(),
        )
        .await
    }

    /// The session's CSRF token, read from a page's forms.
    pub async fn csrf(&self) -> String {
        let page = self.get("/ui/fleet").await;
        let at = page
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        page.body[at..at + 48].to_string()
    }
}

/// Sends one request through the router.
pub async fn send(ui: &Ui, req: Request<Body>) -> Answer {
    let res = powernode_ui::router(ui.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}
