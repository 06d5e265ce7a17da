//! Cross-site request forgery: every state-changing request of the console (a
//! `POST`) carries a token in a form field (`csrf`) that a page of another site
//! cannot read, and is refused with 403 without it.
//!
//! - Signed in, the token is the session's (made at login, kept server-side in
//!   the session table, [`super::session`]).
//! - The login form, before any session, uses a double-submit token: a random
//!   value in a cookie (`chaff_login`, SameSite=Strict) and in the form; both
//!   must match.
//!
//! The session cookie is SameSite=Strict too, so a cross-site form does not
//! even send it; the token also stops a request from a sibling subdomain or a
//! browser that ignores SameSite. The JSON API under `/api/` does not read
//! cookies at all (credentials are headers only), so a console session cannot
//! act there.

use super::form::Form;

/// The form field carrying the token.
pub const FIELD: &str = "csrf";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "chaff_login";

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// True when `form` carries `expected` (which must not be empty).
pub fn valid(form: &Form, expected: &str) -> bool {
    !expected.is_empty() && form.get(FIELD).is_some_and(|t| same(t, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_must_be_there_and_equal() {
        let f = Form::parse(b"csrf=abc&x=1").unwrap();
        assert!(valid(&f, "abc"));
        assert!(!valid(&f, "abd"));
        assert!(!valid(&f, "ab"));
        assert!(!valid(&f, ""));
        let none = Form::parse(b"x=1").unwrap();
        assert!(!valid(&none, "abc"));
        let empty = Form::parse(b"csrf=").unwrap();
        assert!(!valid(&empty, ""));
    }
}
