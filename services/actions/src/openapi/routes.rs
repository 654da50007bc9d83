//! The routes that are no action: `/healthz`, the event stream, the
//! export, `/metrics`, the document itself and `/mcp`.

use super::components::Components;
use super::{error_responses, DuplicateSchema};
use crate::ErrorCode;
use serde_json::{json, Map, Value};

/// The tags of these routes, with their descriptions.
pub(super) const TAGS: &[(&str, &str)] = &[
    ("node", "The node itself: health, metrics, this document."),
    (
        "event streams",
        "The account's events as server-sent events, and the log's export.",
    ),
    ("mcp", "The MCP server for assistants (streamable HTTP)."),
];

/// The authentication refusals of every operator route.
const AUTH: &[ErrorCode] = &[
    ErrorCode::Unauthorized,
    ErrorCode::TokenRevoked,
    ErrorCode::TokenExpired,
];

/// A query parameter (optional string).
fn query(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": description,
        "schema": {"type": "string"},
    })
}

/// Responses: `ok` under 200 and the error bodies of `codes`.
fn responses(ok: Value, codes: &[ErrorCode]) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("200".into(), ok);
    error_responses(codes, &mut r);
    r
}

/// Adds the routes to `paths`.
pub(super) fn add(
    paths: &mut Map<String, Value>,
    components: &mut Components,
) -> Result<(), DuplicateSchema> {
    components.insert_own(
        "Health",
        json!({
            "title": "Health",
            "description": "The node is up and its log answers.",
            "type": "object",
            "required": ["status", "log", "last_seq", "applied_seq"],
            "properties": {
                "status": {"const": "ok"},
                "log": {"type": "string", "description": "Which log the node uses."},
                "last_seq": {"type": "integer", "minimum": 0, "description": "The log's last sequence."},
                "applied_seq": {"type": "integer", "minimum": 0, "description": "The sequence the API's state has applied through."},
            },
        }),
    )?;
    paths.insert(
        "/healthz".into(),
        json!({"get": {
            "operationId": "healthz",
            "summary": "Whether the node is up and its log answers (no token needed).",
            "tags": ["node"],
            "security": [],
            "responses": responses(
                json!({
                    "description": "Up.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                }),
                &[ErrorCode::LogUnavailable],
            ),
        }}),
    );

    let mut stream_codes = AUTH.to_vec();
    stream_codes.extend([ErrorCode::InvalidArguments, ErrorCode::Unavailable]);
    let mut stream_params = vec![
        query("kind_prefix", "Only event kinds starting with this."),
        query(
            "since",
            "Where to start (ignored when `Last-Event-ID` is sent): a sequence number, an \
             RFC 3339 time (like 2026-11-21T10:00:00Z) or a duration back from now like 30s, \
             10m, 2h, 1d. Without it and without `Last-Event-ID`: from now.",
        ),
        query("cluster", "Only events about this cluster."),
        query("instance", "Only events about this instance."),
    ];
    stream_params.push(json!({
        "name": "Last-Event-ID",
        "in": "header",
        "required": false,
        "description": "Resume after this sequence (a reconnecting client gets exactly what it has not seen).",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }));
    paths.insert(
        "/v1/events/stream".into(),
        json!({"get": {
            "operationId": "events_stream",
            "summary": "The account's events as server-sent events, catch-up then live.",
            "description": "Each event is `id: <seq>`, `event: <kind>`, `data: <the JSON object \
                `recent_events` answers, with seq>`; a comment every 15 s keeps idle connections \
                alive. When the start is a sequence, the stream opens with an event carrying \
                only `id: <start - 1>`.",
            "tags": ["event streams"],
            "parameters": stream_params,
            "responses": responses(
                json!({
                    "description": "The stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }),
                &stream_codes,
            ),
        }}),
    );

    let mut export_codes = AUTH.to_vec();
    export_codes.extend([
        ErrorCode::Forbidden,
        ErrorCode::InvalidArguments,
        ErrorCode::Unavailable,
    ]);
    paths.insert(
        "/v1/events/export".into(),
        json!({"get": {
            "operationId": "events_export",
            "summary": "The log in the portable export format, streamed while it is read.",
            "description": "A token sees only its account's events; the admin's exports the \
                whole log, or one account with `account`. A body that ends without its trailer \
                (the log failed midway) is refused by every reader.",
            "tags": ["event streams"],
            "parameters": [
                query("since", "From here: a sequence number, an RFC 3339 time or a duration back from now."),
                query("until", "Up to here: a sequence number, an RFC 3339 time or a duration back from now."),
                query("kind_prefix", "Only event kinds starting with this."),
                query("account", "Only this account (the admin's token; another token may name only its own)."),
            ],
            "responses": responses(
                json!({
                    "description": "The export (`powernode-events.pnx`).",
                    "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
                }),
                &export_codes,
            ),
        }}),
    );

    paths.insert(
        "/metrics".into(),
        json!({"get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics of the node, in the text exposition format.",
            "tags": ["node"],
            "security": [],
            "responses": {"200": {
                "description": "The scrape.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }},
        }}),
    );

    paths.insert(
        "/v1/openapi.json".into(),
        json!({"get": {
            "operationId": "openapi",
            "summary": "This document (no token needed: it is the same for everyone).",
            "tags": ["node"],
            "security": [],
            "responses": {"200": {
                "description": "The OpenAPI 3.1 document.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }},
        }}),
    );

    let mcp_message = json!({
        "description": "A JSON-RPC 2.0 message (or batch) of the Model Context Protocol.",
        "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
    });
    let mcp_ok = json!({
        "description": "The JSON-RPC answer, as JSON or as a server-sent event stream.",
        "content": {
            "application/json": {"schema": {"type": ["object", "array"]}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    });
    paths.insert(
        "/mcp".into(),
        json!({
            "description": "The MCP server (streamable HTTP transport): every action is a tool, \
                under the presented operator token's scope.",
            "post": {
                "operationId": "mcp_post",
                "summary": "Sends an MCP message.",
                "tags": ["mcp"],
                "requestBody": {"required": true, "content": mcp_message["content"].clone(), "description": mcp_message["description"].clone()},
                "responses": responses(mcp_ok, AUTH),
            },
            "get": {
                "operationId": "mcp_get",
                "summary": "Opens the server-to-client event stream of an MCP session.",
                "tags": ["mcp"],
                "responses": responses(
                    json!({
                        "description": "The stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }),
                    AUTH,
                ),
            },
        }),
    );
    Ok(())
}
