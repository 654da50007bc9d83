//! # powernode-ui — the web dashboard at `/ui`
//!
//! Server-rendered HTML ([maud]) that reads and works without JavaScript;
//! a small hand-written script (`assets/ui.js`) adds live updates over
//! server-sent events (`/ui/stream`) and the confirmations. Every asset is
//! embedded in the binary: nothing is fetched from anywhere else.
//!
//! The dashboard is generic over a [`Backend`]: a live API node (sign in
//! with an operator token; actions run through the API's own dispatch) or
//! an export file (`powernode ui --file export.pnx`: read-only, no sign-in).
//!
//! * [`session`] — sign-in, the session cookie, CSRF tokens, the request
//!   context [`Ctx`];
//! * [`layout`] — the page shell, navigation, messages and refusals;
//! * [`assets`] — the embedded stylesheet and script;
//! * [`live`] — `/ui/stream`, the live feed for the script;
//! * [`pages`] — one module per page;
//! * [`widgets`] — badges, flash messages, countdowns the pages share.

pub mod assets;
pub mod backend;
pub mod layout;
pub mod live;
pub mod pages;
pub mod session;
pub mod widgets;

pub use backend::{At, Backend, BoxFut, EventQuery, Head, Mode, Principal, Refusal};
pub use session::Ctx;

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Where the dashboard is mounted.
pub const PATH: &str = "/ui";

/// What the dashboard's handlers share.
#[derive(Clone)]
pub struct Ui {
    /// What pages read and act through.
    pub backend: Arc<dyn Backend>,
    /// Signed-in sessions.
    pub sessions: session::Store,
}

impl Ui {
    /// A dashboard over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            sessions: session::Store::default(),
        }
    }
}

/// The dashboard's routes, all under [`PATH`]:
///
/// | route | page |
/// |---|---|
/// | `GET /ui`, `GET /ui/` | redirect to the fleet |
/// | `GET/POST /ui/login`, `POST /ui/logout` | sign-in |
/// | `GET /ui/fleet?q=&status=&at=` | the fleet |
/// | `GET /ui/clusters/{id}?at=` | one cluster, its nodes and VIP |
/// | `GET /ui/clusters/{id}/kubeconfig` | kubeconfig download (audited) |
/// | `POST /ui/clusters/{id}/decommission` | typed-name confirmation |
/// | `GET /ui/approvals?at=` | the approval queue and decided ones |
/// | `POST /ui/approvals/{id}/approve`, `…/reject` | decide (reject needs a reason) |
/// | `GET /ui/events?kind_prefix=&cluster=&instance=` | live tail |
/// | `GET /ui/events/{seq}` | one event's envelope |
/// | `GET /ui/travel?seq=&from=&to=` | time travel and "what changed" |
/// | `GET /ui/explain?id=` | the causal graph and the why |
/// | `GET /ui/skills`, `GET /ui/skills/{id}` | skill executions |
/// | `GET /ui/agents` | agent introspection |
/// | `GET /ui/stream?…` | server-sent events for the script |
/// | `GET /ui/assets/{file}` | the embedded stylesheet and script |
pub fn router(ui: Ui) -> Router {
    Router::new()
        .route("/ui", get(pages::home))
        .route("/ui/", get(pages::home))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/fleet", get(pages::fleet::page))
        .route("/ui/clusters/{id}", get(pages::cluster::page))
        .route(
            "/ui/clusters/{id}/kubeconfig",
            get(pages::cluster::kubeconfig),
        )
        .route(
            "/ui/clusters/{id}/decommission",
            post(pages::cluster::decommission),
        )
        .route("/ui/approvals", get(pages::approvals::page))
        .route(
            "/ui/approvals/{id}/approve",
            post(pages::approvals::approve),
        )
        .route("/ui/approvals/{id}/reject", post(pages::approvals::reject))
        .route("/ui/events", get(pages::events::page))
        .route("/ui/events/{seq}", get(pages::events::one))
        .route("/ui/travel", get(pages::travel::page))
        .route("/ui/explain", get(pages::explain::page))
        .route("/ui/skills", get(pages::skills::page))
        .route("/ui/skills/{id}", get(pages::skills::one))
        .route("/ui/agents", get(pages::agents::page))
        .route("/ui/stream", get(live::stream))
        .route("/ui/assets/{file}", get(assets::serve))
        .with_state(ui)
}
