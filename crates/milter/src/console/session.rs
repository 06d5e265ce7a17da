//! Console sessions: a random token in a cookie, and a table of the sessions
//! open, in memory, bounded.
//!
//! The cookie (`chaff_session`) carries 32 random bytes; the table keeps their
//! SHA-256, the user's name and role, the session's CSRF token and two times.
//! A session ends:
//! - after [`IDLE_TIMEOUT`] without a request, or [`MAX_AGE`] after the login,
//!   whichever comes first;
//! - at logout;
//! - when its user leaves the users file (its role is read from the file in
//!   force at every request, so a lowered role applies at once);
//! - when the table is full ([`MAX_SESSIONS`]) and a login needs room: expired
//!   sessions go first, then the one idle longest.
//!
//! The table lives in the process: a restart logs everyone out. At
//! [`MAX_SESSIONS`] sessions it holds about 200 KiB.

use crate::http::Principal;
use crate::users::Role;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most sessions open at once.
pub const MAX_SESSIONS: usize = 1000;
/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after its login, used or not.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "chaff_session";

/// 32 random bytes as unpadded base64url (43 characters).
pub fn random_token() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What a request's session says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    /// The user's name.
    pub name: String,
    /// The user's role.
    pub role: Role,
    /// The session's CSRF token, for its forms.
    pub csrf: String,
}

impl SessionUser {
    /// The user, for the API's functions.
    pub fn principal(&self) -> Principal {
        Principal {
            name: self.name.clone(),
            role: self.role,
        }
    }
}

#[derive(Debug)]
struct Open {
    user: SessionUser,
    created: Instant,
    last: Instant,
}

impl Open {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= IDLE_TIMEOUT
            || now.saturating_duration_since(self.created) >= MAX_AGE
    }
}

/// The sessions open.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Open>>,
}

impl Sessions {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Open>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `p`: its cookie token and the session.
    pub fn open(&self, p: &Principal, now: Instant) -> Result<(String, SessionUser), String> {
        let token = random_token()?;
        let user = SessionUser {
            name: p.name.clone(),
            role: p.role,
            csrf: random_token()?,
        };
        let mut t = self.table();
        if t.len() >= MAX_SESSIONS {
            t.retain(|_, s| !s.expired(now));
        }
        if t.len() >= MAX_SESSIONS
            && let Some(k) = t.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k)
        {
            t.remove(&k);
        }
        t.insert(
            key(&token),
            Open {
                user: user.clone(),
                created: now,
                last: now,
            },
        );
        Ok((token, user))
    }

    /// The session of `token`, if open, marked used at `now`; `role` gives the
    /// user's role in force (None: the user is gone, and so is the session).
    pub fn get(
        &self,
        token: &str,
        now: Instant,
        role: impl FnOnce(&str) -> Option<Role>,
    ) -> Option<SessionUser> {
        let k = key(token);
        let mut t = self.table();
        let s = t.get_mut(&k)?;
        if s.expired(now) {
            t.remove(&k);
            return None;
        }
        match role(&s.user.name) {
            Some(r) => {
                s.user.role = r;
                s.last = now;
                Some(s.user.clone())
            }
            None => {
                t.remove(&k);
                None
            }
        }
    }

    /// Ends the session of `token`.
    pub fn close(&self, token: &str) {
        self.table().remove(&key(token));
    }

    /// Sessions in the table (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, `Secure` when
/// the listener speaks TLS; `max_age` None for a browser-session cookie, zero
/// to delete it.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            name: "alice".into(),
            role: Role::Admin,
        }
    }

    #[test]
    fn sessions_open_expire_and_follow_the_users_file() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (token, user) = s.open(&alice(), t0).unwrap();
        assert_eq!(token.len(), 43);
        assert_ne!(user.csrf, token);
        let got = s.get(&token, t0, |_| Some(Role::Admin)).unwrap();
        assert_eq!(got, user);
        assert!(s.get("not a token", t0, |_| Some(Role::Admin)).is_none());
        // A lowered role applies at once.
        let got = s.get(&token, t0, |_| Some(Role::Read)).unwrap();
        assert_eq!(got.role, Role::Read);
        // Used: the idle time starts again.
        let later = t0 + IDLE_TIMEOUT - Duration::from_secs(1);
        assert!(s.get(&token, later, |_| Some(Role::Admin)).is_some());
        assert!(
            s.get(&token, later + IDLE_TIMEOUT, |_| Some(Role::Admin))
                .is_none()
        );
        assert!(s.is_empty());
        // The user removed from the file: the session ends.
        let (token, _) = s.open(&alice(), t0).unwrap();
        assert!(s.get(&token, t0, |_| None).is_none());
        assert!(s.get(&token, t0, |_| Some(Role::Admin)).is_none());
        // Logout.
        let (token, _) = s.open(&alice(), t0).unwrap();
        s.close(&token);
        assert!(s.get(&token, t0, |_| Some(Role::Admin)).is_none());
    }

    #[test]
    fn sessions_end_at_their_max_age_even_when_used() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (token, _) = s.open(&alice(), t0).unwrap();
        let mut t = t0;
        while t < t0 + MAX_AGE - IDLE_TIMEOUT {
            t += IDLE_TIMEOUT / 2;
            assert!(s.get(&token, t, |_| Some(Role::Admin)).is_some());
        }
        assert!(s.get(&token, t0 + MAX_AGE, |_| Some(Role::Admin)).is_none());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_longest_idle() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (first, _) = s.open(&alice(), t0).unwrap();
        let mut last = String::new();
        for i in 1..=MAX_SESSIONS {
            last = s
                .open(&alice(), t0 + Duration::from_millis(i as u64))
                .unwrap()
                .0;
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first, t0, |_| Some(Role::Admin)).is_none());
        assert!(s.get(&last, t0, |_| Some(Role::Admin)).is_some());
    }

    #[test]
    fn cookies_are_read_and_set_with_their_attributes() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; chaff_session=abc ; b=2".parse().unwrap());
        h.append("cookie", "chaff_lang=zh-CN".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "chaff_lang"), Some("zh-CN"));
        assert_eq!(cookie(&h, "none"), None);
        assert_eq!(
            set_cookie(COOKIE, "x", true, None),
            "chaff_session=x; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            set_cookie(COOKIE, "", false, Some(0)),
            "chaff_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
    }
}
