//! The page around every screen: the header with the navigation, the user and
//! the logout button, the language switch, and the notices; and the error page.

use super::csrf;
use super::form::query;
use super::i18n::Lang;
use super::request::Signed;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// The screens, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The dashboard.
    Dashboard,
    /// The spam report list.
    Reports,
    /// Locked accounts.
    Accounts,
    /// Allow and block lists.
    Senders,
    /// The scan history.
    History,
    /// Trying a message.
    Try,
    /// None of them (errors).
    None,
}

const NAV: [(Nav, &str, &str); 6] = [
    (Nav::Dashboard, "/", "nav.dashboard"),
    (Nav::Reports, "/reports", "nav.reports"),
    (Nav::Accounts, "/accounts", "nav.accounts"),
    (Nav::Senders, "/senders", "nav.senders"),
    (Nav::History, "/history", "nav.history"),
    (Nav::Try, "/try", "nav.try"),
];

/// The document around `body`, for pages with or without a user.
pub fn document(lang: Lang, title: &str, header: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · chaff" }
                link rel="stylesheet" href=(super::assets::CSS_PATH);
                link rel="icon" href=(super::assets::ICON_PATH) type="image/svg+xml";
                script src=(super::assets::JS_PATH) defer {}
            }
            body {
                a.skip href="#main" { (lang.t("page.skip")) }
                (header)
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The language switch: a link to each other language, back to `path`.
pub fn language_switch(lang: Lang, path: &str) -> Markup {
    html! {
        nav.lang aria-label=(lang.t("page.language")) {
            @for l in Lang::ALL {
                @if l == lang {
                    span aria-current="true" { (l.name()) }
                } @else {
                    a href={ "/lang?" (query(&[("to", l.tag()), ("back", path)])) } hreflang=(l.tag()) lang=(l.tag()) { (l.name()) }
                }
            }
        }
    }
}

/// The hidden field with the session's CSRF token, for every form that posts.
pub fn csrf_field(s: &Signed) -> Markup {
    html! { input type="hidden" name=(csrf::FIELD) value=(s.user.csrf); }
}

fn header(s: &Signed, active: Nav) -> Markup {
    let l = s.lang;
    html! {
        header.top {
            a.brand href="/" { "chaff" }
            nav.main aria-label=(l.t("page.navigation")) {
                ul {
                    @for (nav, href, key) in NAV {
                        li {
                            @if nav == active {
                                a href=(href) aria-current="page" { (l.t(key)) }
                            } @else {
                                a href=(href) { (l.t(key)) }
                            }
                        }
                    }
                }
            }
            div.who {
                span.user { (s.user.name) " (" (l.lookup(&format!("role.{}", s.user.role)).unwrap_or(s.user.role.as_str())) ")" }
                form method="post" action="/logout" {
                    (csrf_field(s))
                    button type="submit" { (l.t("page.logout")) }
                }
                (language_switch(l, &s.path))
            }
        }
    }
}

/// The notice a redirect after an action asks for (`?ok=KEY`): only keys of
/// the catalogue are shown, so a link cannot put words on the page.
pub fn notice(s: &Signed, key: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = key.filter(|k| k.starts_with("ok.")).and_then(|k| s.lang.lookup(k)) {
            p.notice role="status" { (text) }
        }
    }
}

/// A whole page for a signed-in user.
pub fn page(s: &Signed, active: Nav, title: &str, body: Markup) -> Response {
    Html(document(s.lang, title, header(s, active), body).into_string()).into_response()
}

/// An error page with `status`: what went wrong and a way back.
pub fn error_page(s: &Signed, status: StatusCode, message: &str) -> Response {
    let l = s.lang;
    let body = html! {
        p.error role="alert" { (message) }
        p { a href="/" { (l.t("nav.dashboard")) } }
    };
    let mut r = page(s, Nav::None, l.t("page.error"), body);
    *r.status_mut() = status;
    r
}
