//! # powernode-mcp — the concierge's MCP server
//!
//! One MCP tool per operator action, generated from the action table in
//! `powernode-actions` ([`tools`]): the same names, docs and argument
//! schemas, annotated from each action's [`Effect`]. Destructive tools need
//! a confirmation a client cannot skip ([`confirm`]): the human types the
//! object's name back when the client supports elicitation, else a first
//! call answers a `request_confirmation` with a single-use id that a second
//! call must present.
//!
//! [`Concierge`] is the `rmcp::ServerHandler`; it is generic over a
//! [`Caller`], which runs an action for the principal of the current
//! request: `powernode mcp` (stdio) calls the HTTP API with the operator's
//! token, `/mcp` on the API calls the dispatch in-process with the
//! request's bearer token. Every tool call is audited by the API as a
//! `system.mcp.tool_called` event ([`Tag`]).

pub mod confirm;
pub mod target;
pub mod tools;

use powernode_actions::effect::Effect;
use powernode_actions::ActionName;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Extensions, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{ElicitationError, ElicitationMode, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;

/// An action's refusal as a tool error: `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The error code (`not_found`, `forbidden`, `confirmation_expired` …).
    pub code: String,
    /// What is wrong.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// How a tool call is tagged for the audit (the API appends one
/// `system.mcp.tool_called` per tagged call).
#[derive(Debug, Clone, Default)]
pub struct Tag {
    /// The confirmation id the call presents or was answered.
    pub confirmation_id: Option<String>,
    /// An outcome the MCP server settled itself (`confirmation_requested`,
    /// a confirmation refusal's code): the API only audits, runs nothing.
    pub outcome: Option<String>,
}

/// The request headers of the audit tag (the API's dispatch reads them).
pub mod headers {
    /// The tool (an action's name).
    pub const TOOL: &str = "x-powernode-mcp-tool";
    /// `stdio` or `http`.
    pub const TRANSPORT: &str = "x-powernode-mcp-transport";
    /// The confirmation id.
    pub const CONFIRMATION: &str = "x-powernode-mcp-confirmation";
    /// An outcome settled by the MCP server (audit only).
    pub const OUTCOME: &str = "x-powernode-mcp-outcome";
}

impl Tag {
    /// The audit headers of a call of `tool` over `transport`.
    pub fn headers(&self, tool: ActionName, transport: &str) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (headers::TOOL, tool.as_str().to_string()),
            (headers::TRANSPORT, transport.to_string()),
        ];
        if let Some(id) = &self.confirmation_id {
            out.push((headers::CONFIRMATION, id.clone()));
        }
        if let Some(outcome) = &self.outcome {
            out.push((headers::OUTCOME, outcome.clone()));
        }
        out
    }
}

/// Runs actions for the principal of the current MCP request.
pub trait Caller: Send + Sync + 'static {
    /// Runs `action` with `args` for the principal of the request whose
    /// extensions are `ext` (on `/mcp` they hold the HTTP request's parts,
    /// with its bearer token); answers the action's `data`. With `tag`,
    /// the call is audited as a tool call.
    fn call(
        &self,
        ext: &Extensions,
        action: ActionName,
        args: Value,
        tag: Option<Tag>,
    ) -> impl Future<Output = Result<Value, Refusal>> + Send;
}

/// The MCP server: tools from the action table, confirmation for the
/// destructive ones.
pub struct Concierge<C> {
    caller: Arc<C>,
    confirmations: confirm::Store,
    tools: Arc<Vec<rmcp::model::Tool>>,
}

impl<C> Clone for Concierge<C> {
    fn clone(&self) -> Self {
        Self {
            caller: self.caller.clone(),
            confirmations: self.confirmations.clone(),
            tools: self.tools.clone(),
        }
    }
}

/// What the human types back when asked by elicitation.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct TypedName {
    /// The object's name, typed back to confirm.
    pub name: String,
}
rmcp::elicit_safe!(TypedName);

impl<C: Caller> Concierge<C> {
    /// A server calling actions through `caller`, keeping confirmations in
    /// `confirmations` (share one store between the sessions of a process).
    pub fn new(caller: Arc<C>, confirmations: confirm::Store) -> Self {
        Self {
            caller,
            confirmations,
            tools: Arc::new(tools::all()),
        }
    }

    async fn principal(&self, ext: &Extensions) -> Result<String, Refusal> {
        let who = self
            .caller
            .call(ext, ActionName::Whoami, json!({}), None)
            .await?;
        who["token_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Refusal::new("unavailable", "system_whoami answered no token_id"))
    }

    /// Audits an outcome settled here and answers `refusal` as a tool error.
    async fn refuse(
        &self,
        ext: &Extensions,
        action: ActionName,
        args: Value,
        confirmation_id: Option<String>,
        refusal: Refusal,
    ) -> CallToolResult {
        let tag = Tag {
            confirmation_id,
            outcome: Some(refusal.code.clone()),
        };
        if let Err(e) = self.caller.call(ext, action, args, Some(tag)).await {
            tracing::warn!(code = %e.code, "the audit of an MCP tool call was refused");
        }
        error_result(&refusal)
    }

    /// One tool call.
    pub async fn call(
        &self,
        ext: &Extensions,
        ctx: Option<&RequestContext<RoleServer>>,
        name: &str,
        args: Option<rmcp::model::JsonObject>,
    ) -> CallToolResult {
        let Ok(action) = name.parse::<ActionName>() else {
            return error_result(&Refusal::new(
                "unknown_action",
                format!("unknown tool {name:?}: the tools are the actions of tools/list"),
            ));
        };
        let mut args = args.unwrap_or_default();
        let presented = if action.effect() == Effect::Destructive {
            match args.remove(tools::CONFIRMATION_ARG) {
                None => None,
                Some(Value::String(id)) => Some(id),
                Some(_) => {
                    return error_result(&Refusal::new(
                        "invalid_arguments",
                        "confirmation_id must be a string",
                    ))
                }
            }
        } else {
            None
        };
        let args = Value::Object(args);
        let object = action.object_id(&args);
        let (true, Some(object)) = (action.effect_of(&args) == Effect::Destructive, object) else {
            // Not destructive (or no object: the action refuses the arguments).
            return self.run(ext, action, args, None).await;
        };
        // Only ids of our own shape are echoed into the audit.
        let presented_tag = presented.clone().filter(|id| {
            id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        let principal = match self.principal(ext).await {
            Ok(p) => p,
            Err(r) => return error_result(&r),
        };
        let elicits = presented.is_none()
            && ctx.is_some_and(|c| {
                c.peer
                    .supported_elicitation_modes()
                    .contains(&ElicitationMode::Form)
            });
        if presented.is_none() {
            let target = match target::describe(&*self.caller, ext, action, &object).await {
                Ok(t) => t,
                Err(r) => return self.refuse(ext, action, args, None, r).await,
            };
            if let (true, Some(ctx)) = (elicits, ctx) {
                let message = format!(
                    "{} To confirm, type the name {:?}.",
                    target.summary, target.name
                );
                return match ctx.peer.elicit::<TypedName>(message).await {
                    Ok(Some(typed)) if typed.name.trim() == target.name => {
                        self.run(ext, action, args, Some(Tag::default())).await
                    }
                    Ok(Some(_)) | Ok(None) => {
                        let r = Refusal::new(
                            "confirmation_mismatch",
                            format!("the name typed is not {:?}; nothing was done", target.name),
                        );
                        self.refuse(ext, action, args, None, r).await
                    }
                    Err(ElicitationError::UserDeclined) | Err(ElicitationError::UserCancelled) => {
                        let r = Refusal::new(
                            "confirmation_declined",
                            "the confirmation was declined; nothing was done",
                        );
                        self.refuse(ext, action, args, None, r).await
                    }
                    Err(e) => {
                        let r = Refusal::new(
                            "confirmation_failed",
                            format!("the confirmation could not be asked: {e}; nothing was done"),
                        );
                        self.refuse(ext, action, args, None, r).await
                    }
                };
            }
            let id = self
                .confirmations
                .issue(&principal, action.as_str(), &object);
            let tag = Tag {
                confirmation_id: Some(id.clone()),
                outcome: Some("confirmation_requested".into()),
            };
            if let Err(r) = self.caller.call(ext, action, args, Some(tag)).await {
                return error_result(&r);
            }
            let answer = json!({
                "status": "request_confirmation",
                "confirmation_id": id,
                "tool": action.as_str(),
                "object_id": object,
                "object_name": target.name,
                "summary": target.summary,
                "expires_in_secs": self.confirmations.ttl().as_secs(),
                "next": format!("show the summary to the human; only if they agree, call {action} again with the same arguments and \"confirmation_id\": \"{id}\""),
            });
            return CallToolResult::structured(answer);
        }
        let id = presented.unwrap_or_default();
        match self
            .confirmations
            .redeem(&id, &principal, action.as_str(), &object)
        {
            Ok(()) => {
                let tag = Tag {
                    confirmation_id: presented_tag,
                    outcome: None,
                };
                self.run(ext, action, args, Some(tag)).await
            }
            Err(refused) => {
                let r = Refusal::new(refused.code(), refused.message(&id, &object));
                self.refuse(ext, action, args, presented_tag, r).await
            }
        }
    }

    async fn run(
        &self,
        ext: &Extensions,
        action: ActionName,
        args: Value,
        tag: Option<Tag>,
    ) -> CallToolResult {
        let tag = tag.unwrap_or_default();
        match self.caller.call(ext, action, args, Some(tag)).await {
            Ok(data @ Value::Object(_)) => CallToolResult::structured(data),
            Ok(other) => CallToolResult::structured(json!({ "value": other })),
            Err(r) => error_result(&r),
        }
    }
}

/// A refusal as a tool error (`isError: true`, `{code, message}`).
pub fn error_result(r: &Refusal) -> CallToolResult {
    CallToolResult::structured_error(json!({ "code": r.code, "message": r.message }))
}

impl<C: Caller> ServerHandler for Concierge<C> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("powernode", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "powernode's operator actions as tools. Destructive tools (destructiveHint) ask \
                 for a confirmation: show the human the summary they answer and call again with \
                 the confirmation_id only if the human agrees.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items((*self.tools).clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let ext = context.extensions.clone();
        Ok(self
            .call(&ext, Some(&context), &request.name, request.arguments)
            .await
            .into())
    }
}
