//! Facts about the concierge's MCP server (audit only; they change no state).

payload! {
    /// Transport an MCP tool call came over.
    pub enum McpTransport {
        /// `powernode mcp` on the operator's machine (calls the HTTP API).
        Stdio,
        /// `/mcp` on the API (streamable HTTP).
        Http,
    }
}

payload! {
    /// An MCP tool was called (audit). The arguments are not recorded, only
    /// the id of the object the call acted on.
    pub struct McpToolCalled {
        /// The tool (an action's name, e.g. `kubernetes_decommission_cluster`).
        pub tool: String,
        /// The operator token the call was made with (its id, never the token).
        pub token_id: String,
        /// Which transport.
        pub transport: McpTransport,
        /// `ok`, an error code (`forbidden`, `confirmation_expired` …) or
        /// `confirmation_requested`.
        pub outcome: String,
        /// The confirmation id the call asked for or presented.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub confirmation_id: Option<String>,
        /// The id of the object the call acted on (`cluster_id` …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub object_id: Option<String>,
    }
}
