//! One request to the simulated API: routing, authentication (a client
//! certificate issued by the cluster CA, except for the public paths) and
//! the `x-powernode-*` headers every answer carries.

use super::{kube, ApiState};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// The instance id of the answering node.
pub const INSTANCE_HEADER: &str = "x-powernode-instance";
/// The Kubernetes node name of the answering node.
pub const NODE_HEADER: &str = "x-powernode-node";
/// The fencing generation of the VIP the request was addressed to, when
/// the answering node holds it.
pub const VIP_GENERATION_HEADER: &str = "x-powernode-vip-generation";

/// Paths anyone may read (as `system:public-info-viewer` allows in k3s).
const PUBLIC: [&str; 4] = ["/version", "/healthz", "/readyz", "/livez"];

/// What is known of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The address the client connected to (the VIP or the node's own).
    pub local: SocketAddr,
    /// Whether the client presented a certificate the cluster CA issued.
    pub authenticated: bool,
}

/// The host a request was addressed to: the URI's authority or the `Host`
/// header, without port or IPv6 brackets.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })?;
    Some(bare_host(&authority).to_owned())
}

/// `[fd00::1]:6443` → `fd00::1`; `10.0.0.1:6443` → `10.0.0.1`; `name` → `name`.
fn bare_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => authority,
    }
}

/// The answer to `req`.
pub fn respond<B>(state: &ApiState, conn: Connection, req: &Request<B>) -> Response<Full<Bytes>> {
    let host = request_host(req);
    let mut response = route(state, conn, req, host.as_deref());
    let headers = response.headers_mut();
    if let Some(id) = state.instance_id.as_deref() {
        if let Ok(v) = HeaderValue::from_str(id) {
            headers.insert(INSTANCE_HEADER, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&state.node_name) {
        headers.insert(NODE_HEADER, v);
    }
    let generation = host
        .as_deref()
        .and_then(|h| (state.vip_generation)(h))
        .or_else(|| (state.vip_generation)(&conn.local.ip().to_string()));
    if let Some(generation) = generation {
        headers.insert(VIP_GENERATION_HEADER, HeaderValue::from(generation));
    }
    response
}

fn route<B>(
    state: &ApiState,
    conn: Connection,
    req: &Request<B>,
    host: Option<&str>,
) -> Response<Full<Bytes>> {
    if state.restarting {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "k3s is restarting (upgrade in progress)",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the simulated k3s API only reads (GET)",
        );
    }
    let path = match req.uri().path().trim_end_matches('/') {
        "" => "/",
        path => path,
    };
    if !PUBLIC.contains(&path) && !conn.authenticated {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let table = req
        .headers()
        .get(ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => json(StatusCode::OK, &kube::version(state)),
        ["healthz"] | ["readyz"] | ["livez"] => text(StatusCode::OK, "ok"),
        ["api"] => {
            let address = server_address(host, conn.local);
            json(StatusCode::OK, &kube::api_versions(&address))
        }
        ["apis"] => json(StatusCode::OK, &kube::api_group_list()),
        ["api", "v1"] => json(StatusCode::OK, &kube::api_resource_list()),
        ["api", "v1", "nodes"] => {
            if table {
                json(
                    StatusCode::OK,
                    &kube::node_table(state, &kube::nodes(state)),
                )
            } else {
                json(StatusCode::OK, &kube::node_list(state))
            }
        }
        ["api", "v1", "nodes", name] => {
            match kube::nodes(state).into_iter().find(|n| n.name == *name) {
                Some(n) if table => json(StatusCode::OK, &kube::node_table(state, &[n])),
                Some(n) => json(StatusCode::OK, &kube::node(state, &n)),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("nodes \"{name}\" not found"),
                ),
            }
        }
        ["api", "v1", "namespaces", _, "services"] => {
            json(StatusCode::OK, &kube::empty_service_list())
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// `host:port` the client reached the API at (for `APIVersions`).
fn server_address(host: Option<&str>, local: SocketAddr) -> String {
    match host.map(|h| h.parse::<IpAddr>()) {
        Some(Ok(ip)) => SocketAddr::new(ip, local.port()).to_string(),
        Some(Err(_)) => format!("{}:{}", host.unwrap_or_default(), local.port()),
        None => local.to_string(),
    }
}

fn json(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    json(code, &kube::status(code.as_u16(), reason, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_ports_and_brackets() {
        assert_eq!(bare_host("[fd00:abcd:1::100]:6443"), "fd00:abcd:1::100");
        assert_eq!(bare_host("[fd00::1]"), "fd00::1");
        assert_eq!(bare_host("127.0.0.1:6443"), "127.0.0.1");
        assert_eq!(bare_host("fd00::1"), "fd00::1");
        assert_eq!(bare_host("api.example.net:443"), "api.example.net");
        assert_eq!(bare_host("api.example.net"), "api.example.net");
    }
}
