//! Sign-in and the request context.
//!
//! Live, a session starts at `POST /ui/login` with an operator token: the
//! token is checked with `system_whoami` and kept server-side; the browser
//! holds only a random session id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` over https). Every form carries the session's CSRF
//! token, and a post without it (or with another's) is refused before
//! anything runs. A token that expires or is revoked sends the browser
//! back to the login page with the reason. Offline there is no sign-in:
//! the principal is an account of the export (`?account=`).

use crate::backend::{At, Mode, Principal, Refusal};
use crate::layout;
use crate::Ui;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use powernode_actions::accounts::WhoamiAnswer;
use powernode_actions::ActionName;
use rand::RngCore;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "pn_ui_session";
/// The form field (and `x-pn-csrf` header) every post must carry.
pub const CSRF_FIELD: &str = "csrf";
/// How long a session lasts without use.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);

/// One signed-in session.
#[derive(Debug, Clone)]
struct Entry {
    token: String,
    csrf: String,
    account: String,
    last_used: Instant,
}

/// Signed-in sessions, by session id (in this process only: a restart
/// signs everyone out).
#[derive(Debug, Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    /// The CSRF token of offline pages (one per process).
    offline_csrf: Arc<std::sync::OnceLock<String>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Store {
    fn insert(&self, token: String, account: String) -> (String, String) {
        let (sid, csrf) = (random_hex(), random_hex());
        let mut map = self.inner.lock().expect("session store");
        map.retain(|_, e| e.last_used.elapsed() < IDLE);
        map.insert(
            sid.clone(),
            Entry {
                token,
                csrf: csrf.clone(),
                account,
                last_used: Instant::now(),
            },
        );
        (sid, csrf)
    }

    fn get(&self, sid: &str) -> Option<Entry> {
        let mut map = self.inner.lock().expect("session store");
        let e = map.get_mut(sid)?;
        if e.last_used.elapsed() >= IDLE {
            map.remove(sid);
            return None;
        }
        e.last_used = Instant::now();
        Some(e.clone())
    }

    /// Ends a session.
    pub fn remove(&self, sid: &str) {
        self.inner.lock().expect("session store").remove(sid);
    }

    fn offline_csrf(&self) -> String {
        self.offline_csrf.get_or_init(random_hex).clone()
    }
}

/// Reads one cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// What every page handler gets: who asks, at which point of the log, and
/// how to answer (a whole page, or only its `<main>` for the live script).
#[derive(Clone)]
pub struct Ctx {
    /// The dashboard.
    pub ui: Ui,
    /// Who the request acts as.
    pub who: Principal,
    /// The account shown (the token's; offline, the chosen one).
    pub account: String,
    /// The session's CSRF token (put it in every form: [`layout::csrf_field`]).
    pub csrf: String,
    /// `?at=<seq>`: time travel for read pages.
    pub at: At,
    /// The request asked for the `<main>` fragment only (`x-pn-fragment`).
    pub fragment: bool,
    /// The request's path and query (for `next=` after sign-in).
    pub path: String,
    /// Live or offline.
    pub mode: Mode,
}

impl Ctx {
    /// Runs an action at this request's point of the log.
    pub async fn call(
        &self,
        action: ActionName,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, Refusal> {
        self.ui.backend.call(&self.who, self.at, action, args).await
    }

    /// Runs an action at the live head (actions that change the fleet).
    pub async fn call_head(
        &self,
        action: ActionName,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, Refusal> {
        self.ui
            .backend
            .call(&self.who, At::Head, action, args)
            .await
    }

    /// Refuses a post whose CSRF token is missing or not this session's:
    /// 403 `csrf_failed`, before anything runs.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), Refusal> {
        match presented {
            Some(p) if same(p, &self.csrf) => Ok(()),
            Some(_) => Err(Refusal::new(
                403,
                "csrf_failed",
                "this form was not issued to this session (a forged or stale post); reload the page and try again",
            )),
            None => Err(Refusal::new(
                403,
                "csrf_failed",
                "the post carries no CSRF token (a forged post?); nothing was done",
            )),
        }
    }
}

#[derive(Deserialize, Default)]
struct AtQuery {
    at: Option<String>,
    account: Option<String>,
}

/// The rejection of [`Ctx`]: to the login page, or a refusal page.
pub struct Rejection(Response);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<Ui> for Ctx {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Self::Rejection> {
        let mode = ui.backend.mode();
        let q: AtQuery = Query::try_from_uri(&parts.uri)
            .map(|Query(q)| q)
            .unwrap_or_default();
        let path = if parts.method == Method::GET || parts.method == Method::HEAD {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| crate::PATH.to_string())
        } else {
            // A post's `next=` is the page its form was on.
            referer_path(&parts.headers)
        };
        let fragment = parts.headers.contains_key("x-pn-fragment");
        let at = match q.at.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None | Some("head") => At::Head,
            Some(s) => match s.parse::<u64>() {
                Ok(seq) => At::Seq(seq),
                Err(_) => {
                    return Err(Rejection(layout::bare_refusal(&Refusal::new(
                        422,
                        "invalid_arguments",
                        format!("at={s:?} is not a sequence number (or `head`)"),
                    ))))
                }
            },
        };
        let (who, account, csrf) = match &mode {
            Mode::Offline { accounts, .. } => {
                let account = q
                    .account
                    .filter(|a| accounts.contains(a))
                    .or_else(|| cookie(&parts.headers, "pn_ui_account").map(str::to_string))
                    .filter(|a| accounts.contains(a))
                    .or_else(|| accounts.first().cloned())
                    .unwrap_or_default();
                (
                    Principal::Offline {
                        account: account.clone(),
                    },
                    account,
                    ui.sessions.offline_csrf(),
                )
            }
            Mode::Live { .. } => {
                let entry = cookie(&parts.headers, COOKIE).and_then(|sid| ui.sessions.get(sid));
                match entry {
                    Some(e) => (Principal::Token(e.token), e.account, e.csrf),
                    None => {
                        return Err(Rejection(to_login(&path, None)));
                    }
                }
            }
        };
        Ok(Ctx {
            ui: ui.clone(),
            who,
            account,
            csrf,
            at,
            fragment,
            path,
            mode,
        })
    }
}

/// A redirect to the login page, back to `next` afterwards, with a reason.
pub fn to_login(next: &str, reason: Option<&str>) -> Response {
    let mut url = format!("{}/login?next={}", crate::PATH, urlencode(next));
    if let Some(r) = reason {
        url.push_str("&reason=");
        url.push_str(&urlencode(r));
    }
    Redirect::to(&url).into_response()
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The dashboard path of the request's `Referer` (the fleet without one).
fn referer_path(headers: &HeaderMap) -> String {
    let fallback = || format!("{}/fleet", crate::PATH);
    let Some(r) = headers.get(header::REFERER).and_then(|v| v.to_str().ok()) else {
        return fallback();
    };
    let rest = match r.split_once("://") {
        Some((_, after)) => after.find('/').map(|i| &after[i..]).unwrap_or("/"),
        None => r,
    };
    let rest = rest.split('#').next().unwrap_or_default();
    if rest.starts_with(crate::PATH) && !rest.starts_with("//") {
        rest.to_string()
    } else {
        fallback()
    }
}

/// `next=` must stay inside the dashboard (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.starts_with("//") && !n.contains("://") => {
            n.to_string()
        }
        _ => format!("{}/fleet", crate::PATH),
    }
}

/// The login page's query: where to go afterwards, and why the session
/// ended (set by [`to_login`]).
#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
    reason: Option<String>,
}

/// `GET /ui/login`.
pub async fn login_page(State(ui): State<Ui>, Query(q): Query<LoginQuery>) -> Response {
    if ui.backend.mode().is_offline() {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    layout::login(q.next.as_deref(), q.reason.as_deref(), None)
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /ui/login`: checks the token with `system_whoami`, starts a
/// session.
pub async fn login(State(ui): State<Ui>, Form(form): Form<LoginForm>) -> Response {
    let Mode::Live { https } = ui.backend.mode() else {
        return Redirect::to(&safe_next(form.next.as_deref())).into_response();
    };
    let token = form.token.trim().to_string();
    if token.is_empty() {
        return layout::login(
            form.next.as_deref(),
            None,
            Some(&Refusal::new(
                422,
                "invalid_arguments",
                "enter an operator token",
            )),
        );
    }
    let who = Principal::Token(token.clone());
    match ui
        .backend
        .call(&who, At::Head, ActionName::Whoami, serde_json::json!({}))
        .await
    {
        Ok(me) => {
            let account = match serde_json::from_value::<WhoamiAnswer>(me) {
                Ok(me) => me.account_id,
                Err(e) => {
                    let r = Refusal::new(
                        502,
                        "bad_answer",
                        format!("the API answered system_whoami with something else: {e}"),
                    );
                    return layout::login(form.next.as_deref(), None, Some(&r));
                }
            };
            let (sid, _) = ui.sessions.insert(token, account);
            let mut res = Redirect::to(&safe_next(form.next.as_deref())).into_response();
            let cookie = format!(
                "{COOKIE}={sid}; Path={}; HttpOnly; SameSite=Strict{}",
                crate::PATH,
                if https { "; Secure" } else { "" }
            );
            res.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
            );
            res
        }
        Err(r) => layout::login(form.next.as_deref(), None, Some(&r)),
    }
}

/// The sign-out form.
#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /ui/logout`: CSRF-checked (a forged post cannot sign anyone
/// out); the session ends server-side and the cookie is cleared.
pub async fn logout(ctx: Ctx, headers: HeaderMap, Form(form): Form<LogoutForm>) -> Response {
    if let Err(r) = ctx.check_csrf(form.csrf.as_deref()) {
        return layout::refusal(&ctx, &r);
    }
    if let Some(sid) = cookie(&headers, COOKIE) {
        ctx.ui.sessions.remove(sid);
    }
    let mut res = Redirect::to(&format!("{}/login", crate::PATH)).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Strict",
            crate::PATH
        ))
        .expect("ASCII"),
    );
    res
}
