//! The page shell: head, navigation, the offline banner, messages and
//! refusals. Pages build their `<main>` and hand it to [`page`], which
//! answers the whole document, or only `<main>` when the live script asks
//! for the fragment.

use crate::backend::{At, Mode, Refusal};
use crate::session::{Ctx, CSRF_FIELD};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// The navigation's entries: (path under /ui, label).
pub const NAV: &[(&str, &str)] = &[
    ("fleet", "Fleet"),
    ("approvals", "Approvals"),
    ("events", "Events"),
    ("travel", "Time travel"),
    ("explain", "Explain"),
    ("skills", "Skills"),
    ("agents", "Agents"),
];

/// A page to answer.
pub struct Page {
    /// The `<title>` and `<h1>`.
    pub title: String,
    /// Which [`NAV`] entry is current (its path).
    pub nav: &'static str,
    /// The content of `<main>` (after the `<h1>`).
    pub body: Markup,
    /// Live updates: the `data-live` attribute of `<main>` — a
    /// comma-separated list of event kind prefixes whose arrival makes the
    /// script re-fetch `<main>` (empty: any event); `None`: not live (e.g.
    /// a page at a past sequence).
    pub live: Option<String>,
}

/// The hidden CSRF input every form must carry.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.csrf); }
}

/// The "as of seq N" banner of a page read at a past sequence, with a link
/// back to the live head.
pub fn at_banner(ctx: &Ctx) -> Markup {
    match ctx.at {
        At::Head => html! {},
        At::Seq(seq) => html! {
            p.banner.travel role="status" id="as-of" data-seq=(seq) {
                "As of seq " strong { (seq) } " (rebuilt by replay). "
                a href=(strip_at(&ctx.path)) { "Back to the live head" }
            }
        },
    }
}

/// `path` without its `at=` parameter.
pub fn strip_at(path: &str) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_string();
    };
    let rest: Vec<&str> = q.split('&').filter(|kv| !kv.starts_with("at=")).collect();
    if rest.is_empty() {
        p.to_string()
    } else {
        format!("{p}?{}", rest.join("&"))
    }
}

/// Answers `page` (the whole document, or `<main>` for the live script).
pub fn page(ctx: &Ctx, page: Page) -> Response {
    let main = html! {
        main id="main" data-live=[page.live.as_deref()] data-at=[match ctx.at { At::Seq(s) => Some(s), At::Head => None }] {
            h1 { (page.title) }
            (at_banner(ctx))
            (page.body)
        }
    };
    if ctx.fragment {
        return Html(main.into_string()).into_response();
    }
    let doc = shell(&page.title, Some(ctx), page.nav, main);
    Html(doc.into_string()).into_response()
}

/// The document around `main`.
fn shell(title: &str, ctx: Option<&Ctx>, nav: &str, main: Markup) -> Markup {
    let offline = ctx.and_then(|c| match &c.mode {
        Mode::Offline { file, accounts } => Some((file.display().to_string(), accounts.clone())),
        Mode::Live { .. } => None,
    });
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · powernode" }
                // No favicon request (a 404 would be logged as an error).
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(crate::assets::href("ui.css"));
                script src=(crate::assets::href("ui.js")) defer {}
            }
            body data-offline=[offline.as_ref().map(|_| "true")] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/fleet" { "powernode" }
                    @if let Some(ctx) = ctx {
                        nav aria-label="Main" {
                            ul {
                                @for (path, label) in NAV {
                                    li {
                                        a href={ "/ui/" (path) }
                                          aria-current=[(*path == nav).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                        div.who {
                            span.account title="account" { (ctx.account) }
                            @if offline.is_none() {
                                form method="post" action="/ui/logout" {
                                    (csrf_field(ctx))
                                    button type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                @if let Some((file, accounts)) = &offline {
                    div.banner.offline role="note" id="offline" {
                        "Offline: " code { (file) } " — read-only, every action is refused."
                        @if accounts.len() > 1 {
                            form method="get" {
                                label for="account" { " Account " }
                                select id="account" name="account" {
                                    @for a in accounts {
                                        option value=(a) selected[ctx.is_some_and(|c| &c.account == a)] { (a) }
                                    }
                                }
                                button type="submit" { "Show" }
                            }
                        }
                    }
                }
                (main)
            }
        }
    }
}

/// The login page (live mode), with an optional reason (e.g. the token
/// expired) or refusal of the last attempt.
pub fn login(next: Option<&str>, reason: Option<&str>, refused: Option<&Refusal>) -> Response {
    let status = match refused {
        Some(r) => StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNAUTHORIZED),
        None => StatusCode::OK,
    };
    let main = html! {
        main id="main" {
            h1 { "Sign in" }
            @if let Some(reason) = reason {
                @let (code, text) = reason_parts(reason);
                div.error role="alert" data-code=[code] {
                    @if let Some(code) = code { strong { (code) } ": " }
                    (text) @if !text.ends_with('.') { "." } " Sign in again."
                }
            }
            @if let Some(r) = refused {
                (refusal_box(r))
            }
            form id="login" method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next.unwrap_or("/ui/fleet"));
                label for="token" { "Operator token" }
                input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
                p.hint { "The token a platform admin gave you (" code { "pn_…" } "); the bootstrap admin's is in " code { "<data-dir>/admin.token" } "." }
                button type="submit" { "Sign in" }
            }
        }
    };
    (status, Html(shell("Sign in", None, "", main).into_string())).into_response()
}

/// `token_expired: the token …` as (`token_expired`, `the token …`); a
/// reason without a code prefix as it is.
fn reason_parts(reason: &str) -> (Option<&str>, &str) {
    match reason.split_once(": ") {
        Some((code, text))
            if !code.is_empty()
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()) =>
        {
            (Some(code), text)
        }
        _ => (None, reason),
    }
}

/// A refusal as a message box: code and message.
pub fn refusal_box(r: &Refusal) -> Markup {
    html! {
        div.error role="alert" data-code=(r.code) {
            strong { (r.code) } ": " (r.message)
        }
    }
}

/// Answers a refusal: back to the login page when the token no longer
/// works, else a page (or fragment) with the refusal and its status.
pub fn refusal(ctx: &Ctx, r: &Refusal) -> Response {
    if r.needs_login() && !ctx.mode.is_offline() {
        return crate::session::to_login(&ctx.path, Some(&format!("{}: {}", r.code, r.message)));
    }
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut res = page(
        ctx,
        Page {
            title: "Refused".to_string(),
            nav: "",
            body: html! { (refusal_box(r)) p { a href="javascript:history.back()" { "Back" } } },
            live: None,
        },
    );
    *res.status_mut() = status;
    res
}

/// A refusal before any context exists (e.g. a malformed `at=`).
pub fn bare_refusal(r: &Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    let main = html! { main id="main" { h1 { "Refused" } (refusal_box(r)) } };
    (status, Html(shell("Refused", None, "", main).into_string())).into_response()
}
