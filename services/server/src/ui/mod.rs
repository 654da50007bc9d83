//! The dashboard's backends ([`powernode_ui::Backend`]):
//!
//! * [`live::LiveBackend`] — over this API node: every call is the action
//!   dispatch in-process with the session's bearer token (scoping and
//!   permissions are the API's own); time travel, "what changed" and
//!   explain replay the log server-side ([`powernode_inspect`]), scoped to
//!   the token's account;
//! * [`offline::OfflineBackend`] — over an export file, read-only
//!   (`powernode ui --file export.pnx`).

mod history;
pub mod live;
pub mod offline;
#[cfg(test)]
mod tests;

use crate::api::error::ApiError;
pub use powernode_ui::{At, Backend, EventQuery, Head, Mode, Principal, Refusal};

/// An API refusal as the dashboard shows it.
pub fn refusal(e: ApiError) -> Refusal {
    Refusal::new(e.status.as_u16(), e.code.as_str(), e.message)
}

/// An answer of the dispatch as JSON.
pub fn answer_json(a: crate::api::Answer) -> Result<serde_json::Value, Refusal> {
    match a {
        crate::api::Answer::Json(v) => Ok(v),
        crate::api::Answer::Raw(text) => serde_json::from_str(&text)
            .map_err(|e| Refusal::new(500, "internal", format!("the answer is not JSON: {e}"))),
    }
}

/// Serves the dashboard over the export `file`, read-only, on `listen`
/// (loopback only: plain http, no sign-in) until Ctrl-C; `account`, when
/// given, is the account shown first. Prints the dashboard's URL once it
/// listens.
pub async fn serve_file(
    file: &std::path::Path,
    listen: std::net::SocketAddr,
    account: Option<&str>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if !listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {listen}: the offline dashboard listens on a loopback address only \
             (127.0.0.1 or ::1): it is plain http without sign-in"
        );
    }
    if !file.is_file() {
        anyhow::bail!("{}: no such export file", file.display());
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (backend, loaded) = offline::OfflineBackend::open(file, account, shutdown.clone())
        .await
        .with_context(|| format!("cannot serve {}", file.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    if loaded.renumbered {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "note: {} is a filtered or partial export: its {} records are numbered 1… here, \
             not as in the log they came from",
            file.display(),
            loaded.records
        );
    }
    // Written whatever becomes of stdout (a closed pipe must not stop the
    // server, as `println!` would).
    let mut announce = format!(
        "Dashboard (read-only, {}): http://{addr}/ui/\n",
        file.display()
    );
    if !backend.accounts().is_empty() {
        announce.push_str(&format!("accounts: {}\n", backend.accounts().join(", ")));
    }
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out
            .write_all(announce.as_bytes())
            .and_then(|()| out.flush());
    }
    let app = powernode_ui::router(powernode_ui::Ui::new(std::sync::Arc::new(backend)));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("the dashboard's server stopped")
}

/// What the live and the offline dashboards do differently: how they are
/// served and who a request acts as. Everything else is [`History`],
/// answered by the one [`Backend`] impl of [`Dashboard`].
pub trait Sessions: Send + Sync + 'static {
    /// Live or offline.
    fn mode(&self) -> powernode_ui::Mode;
    /// The history core both answer from.
    fn history(&self) -> &history::History;
    /// The operator a request acts as (a refusal names why there is none).
    fn operator<'a>(
        &'a self,
        who: &'a powernode_ui::Principal,
    ) -> powernode_ui::BoxFut<'a, Result<crate::api::auth::Operator, powernode_ui::Refusal>>;
}

/// A dashboard backend: [`Sessions`] resolve the operator, [`History`]
/// answers for the operator's account.
pub struct Dashboard<S>(pub S);

impl<S: Sessions> powernode_ui::Backend for Dashboard<S> {
    fn mode(&self) -> powernode_ui::Mode {
        self.0.mode()
    }

    fn call<'a>(
        &'a self,
        who: &'a powernode_ui::Principal,
        at: powernode_ui::At,
        action: powernode_actions::ActionName,
        args: serde_json::Value,
    ) -> powernode_ui::BoxFut<'a, Result<serde_json::Value, powernode_ui::Refusal>> {
        Box::pin(async move {
            let operator = self.0.operator(who).await?;
            self.0.history().call(operator, at, action, args).await
        })
    }

    fn head<'a>(
        &'a self,
        who: &'a powernode_ui::Principal,
    ) -> powernode_ui::BoxFut<'a, Result<powernode_ui::Head, powernode_ui::Refusal>> {
        Box::pin(async move {
            self.0.operator(who).await?;
            self.0.history().head().await
        })
    }

    fn event<'a>(
        &'a self,
        who: &'a powernode_ui::Principal,
        seq: u64,
    ) -> powernode_ui::BoxFut<'a, Result<serde_json::Value, powernode_ui::Refusal>> {
        Box::pin(async move {
            let operator = self.0.operator(who).await?;
            self.0.history().event(&operator.account, seq).await
        })
    }

    fn diff<'a>(
        &'a self,
        who: &'a powernode_ui::Principal,
        from: u64,
        to: u64,
    ) -> powernode_ui::BoxFut<'a, Result<serde_json::Value, powernode_ui::Refusal>> {
        Box::pin(async move {
            let operator = self.0.operator(who).await?;
            self.0.history().diff(&operator.account, from, to).await
        })
    }

    fn explain<'a>(
        &'a self,
        who: &'a powernode_ui::Principal,
        id: &'a str,
    ) -> powernode_ui::BoxFut<'a, Result<serde_json::Value, powernode_ui::Refusal>> {
        Box::pin(async move {
            let operator = self.0.operator(who).await?;
            self.0.history().explain(&operator.account, id).await
        })
    }

    fn events<'a>(
        &'a self,
        who: &'a powernode_ui::Principal,
        query: powernode_ui::EventQuery,
    ) -> powernode_ui::BoxFut<
        'a,
        Result<futures::stream::BoxStream<'static, serde_json::Value>, powernode_ui::Refusal>,
    > {
        Box::pin(async move {
            let operator = self.0.operator(who).await?;
            self.0.history().events(&operator.account, query).await
        })
    }
}
