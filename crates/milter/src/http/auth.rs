//! Who is asking: credentials, the users file, roles.
//!
//! A request authenticates with one of:
//! - `Authorization: Bearer TOKEN` (the admin API, scripts);
//! - `Authorization: Basic` with `NAME:PASSWORD` (the console, curl `-u`);
//! - Rspamd's `Password:` header, what `rspamc -P` sends: a token, or
//!   `NAME:PASSWORD` (a token never contains `:`, a name never does).
//!
//! Tokens are looked up by their SHA-256 (no Argon2 on the scanning path).
//! Passwords are checked with Argon2id on the blocking threads, at most
//! [`MAX_CONCURRENT_VERIFICATIONS`] at once, and a correct one is remembered for
//! [`CACHE_TTL`] under a keyed hash of name and password (the key is random per
//! process, the cache holds no password and at most [`CACHE_ENTRIES`] entries, and
//! an entry counts only while the user's stored hash is unchanged). Failures are
//! counted per source address and per user (module `attempts`).
//!
//! The users file is read at start and again, at most once a second, when its
//! modification time, size or inode changes; a file that fails to load is logged
//! and the previous users stay in force. Its path is the one configured at start
//! (a change of `[users] file` takes effect after a restart).
//!
//! Roles: without credentials a request is anonymous ([`Caller::user`] is None):
//! it may scan (without its `User:` header) when `[http] anonymous_scan` allows,
//! and nothing else. [`Caller::require`] answers 401 to anonymous requests and 403
//! to a role below the one needed; the extractors [`Reader`], [`Scanner`] and
//! [`Admin`] do the same in a handler's signature.

use super::attempts::Attempts;
use super::error::ApiError;
use super::state::HttpState;
use crate::throttle;
use crate::users::{Role, Users, verify_password};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tracing::{error, info, warn};

/// Most Argon2 verifications running at once; more wait their turn.
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 2;
/// How long a verified password is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// Most remembered passwords.
pub const CACHE_ENTRIES: usize = 1024;
/// Least time between two looks at the users file.
const RECHECK: Duration = Duration::from_secs(1);

/// A user who proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
}

/// The client's connection address, set on every request by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Who made a request: a user, or nobody (anonymous), and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated user, if the request carried credentials.
    pub user: Option<Principal>,
    /// The client's address.
    pub peer: IpAddr,
}

impl Caller {
    /// The caller's role, if authenticated.
    pub fn role(&self) -> Option<Role> {
        self.user.as_ref().map(|p| p.role)
    }

    /// True when the caller has at least `role`.
    pub fn has(&self, role: Role) -> bool {
        self.role().is_some_and(|r| r >= role)
    }

    /// The user, if they have at least `role`: 401 when anonymous, 403 when the
    /// role is lower.
    pub fn require(&self, role: Role) -> Result<&Principal, ApiError> {
        match &self.user {
            None => Err(ApiError::unauthorized(format!(
                "credentials needed (a user with the `{role}` role): \
                 `Authorization: Bearer TOKEN`, Basic, or `Password:`"
            ))),
            Some(p) if p.role >= role => Ok(p),
            Some(p) => Err(ApiError::forbidden(format!(
                "user `{}` has the `{}` role; this needs `{role}`",
                p.name, p.role
            ))),
        }
    }

    /// The name for logs: the user's, or `-`.
    pub fn name(&self) -> &str {
        self.user.as_ref().map_or("-", |p| p.name.as_str())
    }
}

impl FromRequestParts<Arc<HttpState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HttpState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let peer = parts
            .extensions
            .get::<Peer>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
        let file = state.users_file.as_deref();
        let user = state
            .auth
            .authenticate(&parts.headers, peer, file)
            .await
            .inspect_err(|e| {
                if e.status == axum::http::StatusCode::UNAUTHORIZED {
                    state.service.metrics().http.auth_failure();
                }
            })?;
        let caller = Caller { user, peer };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

macro_rules! role_extractor {
    ($name:ident, $role:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub Principal);

        impl FromRequestParts<Arc<HttpState>> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &Arc<HttpState>,
            ) -> Result<Self, Self::Rejection> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($role).cloned().map($name)
            }
        }
    };
}

role_extractor!(
    Reader,
    Role::Read,
    "A user with at least the `read` role (401 or 403 otherwise)."
);
role_extractor!(
    Scanner,
    Role::Scan,
    "A user with at least the `scan` role (401 or 403 otherwise)."
);
role_extractor!(
    Admin,
    Role::Admin,
    "A user with the `admin` role (401 or 403 otherwise)."
);

/// What a request claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// An API token.
    Token(String),
    /// A user name and password.
    Password {
        /// The name.
        name: String,
        /// The password.
        password: String,
    },
}

/// The credentials a request carries, if any: `Authorization` (Bearer or Basic)
/// first, then `Password`. Malformed ones are a 401 naming the header.
pub fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>, ApiError> {
    use base64::Engine as _;
    fn text<'a>(name: &str, v: &'a axum::http::HeaderValue) -> Result<&'a str, ApiError> {
        std::str::from_utf8(v.as_bytes())
            .map(str::trim)
            .map_err(|_| ApiError::unauthorized(format!("header `{name}`: not UTF-8")))
    }
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = text("Authorization", v)?;
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(Some(Credentials::Token(rest.to_string())));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "header `Authorization`: Basic credentials are not base64 of UTF-8",
                    )
                })?;
            let (name, password) = decoded.split_once(':').ok_or_else(|| {
                ApiError::unauthorized("header `Authorization`: Basic credentials have no `:`")
            })?;
            return Ok(Some(Credentials::Password {
                name: name.to_string(),
                password: password.to_string(),
            }));
        }
        return Err(ApiError::unauthorized(
            "header `Authorization`: use `Bearer TOKEN` or `Basic`",
        ));
    }
    if let Some(v) = headers.get("password") {
        let v = text("Password", v)?;
        if v.is_empty() {
            return Err(ApiError::unauthorized("header `Password`: empty"));
        }
        return Ok(Some(match v.split_once(':') {
            Some((name, password)) => Credentials::Password {
                name: name.to_string(),
                password: password.to_string(),
            },
            None => Credentials::Token(v.to_string()),
        }));
    }
    Ok(None)
}

/// The users file as loaded, and what it was loaded from.
#[derive(Debug, Default)]
struct Loaded {
    path: Option<PathBuf>,
    /// Modification time, size and inode when read.
    stamp: Option<(SystemTime, u64, u64)>,
    users: Option<Arc<Users>>,
}

/// A verified password: the PHC string it matched, and when.
type Remembered = (Arc<str>, Instant);

/// Checks credentials against the users file.
pub struct Authenticator {
    loaded: Mutex<Loaded>,
    /// When the file was last looked at, in milliseconds since `epoch`.
    checked_ms: AtomicU64,
    epoch: Instant,
    attempts: Attempts,
    cache_key: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], Remembered>>,
    verifications: tokio::sync::Semaphore,
    failure_logs: throttle::Shared,
    /// The PHC string checked for unknown names (and users without a password),
    /// so that they cost as much as known ones and do not tell which names exist.
    decoy: Arc<std::sync::OnceLock<String>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

fn stamp(path: &std::path::Path) -> std::io::Result<(SystemTime, u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.modified()?, m.len(), m.ino()))
}

impl Authenticator {
    /// Reads the users file `path` (None: no users). An unreadable or invalid
    /// file is an error here, at start; later reloads keep the previous users.
    pub fn new(path: Option<PathBuf>) -> Result<Authenticator, String> {
        let mut cache_key = [0u8; 32];
        getrandom::fill(&mut cache_key).map_err(|e| format!("no randomness: {e}"))?;
        // Made at its first use, on a blocking thread: a service with no users,
        // or whose clients send only tokens, never pays for it.
        let decoy = Arc::new(std::sync::OnceLock::new());
        let a = Authenticator {
            loaded: Mutex::new(Loaded::default()),
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            attempts: Attempts::default(),
            cache_key,
            cache: Mutex::new(HashMap::new()),
            verifications: tokio::sync::Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
            failure_logs: throttle::Shared::default(),
            decoy,
        };
        a.reload(path.as_deref(), true)?;
        Ok(a)
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the file again if its path or stamp changed. `strict`: an error is
    /// returned rather than logged.
    fn reload(&self, path: Option<&std::path::Path>, strict: bool) -> Result<(), String> {
        let mut l = self.loaded();
        let Some(path) = path else {
            if l.path.is_some() {
                info!("users file no longer configured: only anonymous scans are allowed");
            }
            *l = Loaded::default();
            return Ok(());
        };
        let now_stamp = stamp(path).ok();
        if l.path.as_deref() == Some(path) && now_stamp.is_some() && l.stamp == now_stamp {
            return Ok(());
        }
        match Users::load(path) {
            Ok(users) => {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(m) = std::fs::metadata(path)
                    && m.permissions().mode() & 0o077 != 0
                {
                    warn!(
                        file = %path.display(),
                        mode = format!("{:o}", m.permissions().mode() & 0o777),
                        "the users file can be read by other users: it holds password \
                         hashes; make it mode 0600"
                    );
                }
                let same_path = l.path.as_deref() == Some(path);
                if !strict || !same_path {
                    info!(file = %path.display(), users = users.len(), "users file loaded");
                }
                *l = Loaded {
                    path: Some(path.to_path_buf()),
                    stamp: now_stamp,
                    users: Some(Arc::new(users)),
                };
                // Remembered passwords count only while their hash is unchanged;
                // clearing is simpler and costs one Argon2 per user.
                self.cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
                Ok(())
            }
            Err(e) if strict => Err(e.to_string()),
            Err(e) => {
                // Logged once per version of the file; the previous users serve on.
                if l.stamp != now_stamp || l.path.as_deref() != Some(path) {
                    error!(error = %e, "users file refused; the previous users stay in force");
                    l.stamp = now_stamp;
                    if l.path.as_deref() != Some(path) {
                        l.path = Some(path.to_path_buf());
                    }
                }
                Ok(())
            }
        }
    }

    /// The users in force, looking at the file (at most once a second) first.
    fn users(&self, configured: Option<&std::path::Path>) -> Option<Arc<Users>> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.checked_ms.load(Relaxed);
        let path_changed = self.loaded().path.as_deref() != configured;
        if (path_changed || now.saturating_sub(last) >= RECHECK.as_millis() as u64)
            && self
                .checked_ms
                .compare_exchange(last, now.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            let _ = self.reload(configured, false);
        }
        self.loaded().users.clone()
    }

    fn cache_slot(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn remembered(&self, slot: &[u8; 32], phc: &str) -> bool {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(slot)
            .is_some_and(|(h, at)| &**h == phc && at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, slot: [u8; 32], phc: &str) {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(slot, (Arc::from(phc), Instant::now()));
    }

    fn fail(&self, peer: IpAddr, user: Option<&str>, why: &str) -> ApiError {
        let n = self.attempts.failed(peer, user, Instant::now());
        if let Some(since_last) = self.failure_logs.tick() {
            warn!(
                peer = %peer,
                user = user.unwrap_or("-"),
                failures_from_peer = n,
                since_last,
                "authentication failed: {why}"
            );
        }
        ApiError::unauthorized(why)
    }

    /// Checks a request's credentials against the users file `users_file` (the
    /// `[users] file` of the settings in force): Ok(None) without any, the user
    /// when they are right, 401 when wrong (or when no users are configured), 429
    /// while the source address must wait.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: IpAddr,
        users_file: Option<&std::path::Path>,
    ) -> Result<Option<Principal>, ApiError> {
        let Some(creds) = credentials(headers)? else {
            return Ok(None);
        };
        self.check(creds, peer, users_file).await.map(Some)
    }

    /// The role of user `name` in the users file in force, if it has that user
    /// (a console session ends when its user is removed or changes role).
    pub(crate) fn role_of(&self, name: &str, users_file: Option<&std::path::Path>) -> Option<Role> {
        self.users(users_file)?.get(name).map(|a| a.role)
    }

    /// Checks `creds` (a request's, or the console's login form's) against the
    /// users file `users_file`, with the same delays for failed attempts: the
    /// user when they are right, 401 when wrong, 429 while the address waits.
    pub(crate) async fn check(
        &self,
        creds: Credentials,
        peer: IpAddr,
        users_file: Option<&std::path::Path>,
    ) -> Result<Principal, ApiError> {
        let Some(users) = self.users(users_file) else {
            return Err(ApiError::unauthorized(
                "credentials given, but no users are configured (`[users] file`)",
            ));
        };
        if let Some(wait) = self.attempts.source_wait(peer, Instant::now()) {
            return Err(ApiError::too_many(
                "too many failed attempts from this address; try again later",
                wait,
            ));
        }
        match creds {
            Credentials::Token(token) => match users.by_token(&token) {
                Some(a) => Ok(Principal {
                    name: a.name.clone(),
                    role: a.role,
                }),
                None => Err(self.fail(peer, None, "unknown token")),
            },
            Credentials::Password { name, password } => {
                let wait = self.attempts.user_wait(&name, Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let account = users.get(&name);
                let phc = account.and_then(|a| a.password.clone());
                let slot = self.cache_slot(&name, &password);
                let ok = match &phc {
                    Some(phc) if self.remembered(&slot, phc) => true,
                    _ => {
                        let _permit = self
                            .verifications
                            .acquire()
                            .await
                            .map_err(|_| ApiError::unavailable("shutting down"))?;
                        let (known, decoy) = (phc.clone(), Arc::clone(&self.decoy));
                        let verified = tokio::task::spawn_blocking(move || match known {
                            Some(phc) => verify_password(&phc, &password),
                            None => {
                                let d = decoy.get_or_init(|| {
                                    crate::users::hash_password("chaff decoy password")
                                        .unwrap_or_default()
                                });
                                let _ = verify_password(d, &password);
                                false
                            }
                        })
                        .await
                        .unwrap_or(false);
                        if let (true, Some(phc)) = (verified, &phc) {
                            self.remember(slot, phc);
                        }
                        verified
                    }
                };
                match (ok, account) {
                    (true, Some(a)) => {
                        self.attempts.succeeded(&name);
                        Ok(Principal {
                            name: a.name.clone(),
                            role: a.role,
                        })
                    }
                    _ => Err(self.fail(peer, Some(&name), "wrong user name or password")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{UserEntry, UsersFile, hash_password, new_token};
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn credentials_are_read_from_authorization_then_password() {
        use Credentials::*;
        let c = |pairs: &[(&str, &str)]| credentials(&headers(pairs));
        assert_eq!(c(&[]), Ok(None));
        assert_eq!(
            c(&[("Authorization", "Bearer chf_x"), ("Password", "other")]),
            Ok(Some(Token("chf_x".into())))
        );
        // base64("alice:pa:ss")
        assert_eq!(
            c(&[("Authorization", "Basic YWxpY2U6cGE6c3M=")]),
            Ok(Some(Password {
                name: "alice".into(),
                password: "pa:ss".into()
            }))
        );
        assert_eq!(
            c(&[("Password", "chf_tok")]),
            Ok(Some(Token("chf_tok".into())))
        );
        assert_eq!(
            c(&[("Password", "bob:secret")]),
            Ok(Some(Password {
                name: "bob".into(),
                password: "secret".into()
            }))
        );
        for bad in [
            ("Authorization", "Digest x"),
            ("Authorization", "Basic !!!"),
            ("Authorization", "Basic YWxpY2U="),
            ("Password", ""),
        ] {
            let e = c(&[bad]).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn tokens_and_passwords_authenticate_and_failures_slow_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let (token, hash) = new_token().unwrap();
        let mut f = UsersFile::default();
        f.add(
            "alice",
            UserEntry {
                role: Role::Admin,
                password: Some(hash_password("right password").unwrap()),
                token: None,
            },
        )
        .unwrap();
        f.add(
            "bot",
            UserEntry {
                role: Role::Scan,
                password: None,
                token: Some(hash),
            },
        )
        .unwrap();
        f.save(&path).unwrap();
        let a = Authenticator::new(Some(path.clone())).unwrap();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let who = |p: Option<Principal>| p.map(|p| (p.name, p.role));
        let ok = a
            .authenticate(&headers(&[("Password", &token)]), peer, Some(&path))
            .await
            .unwrap();
        assert_eq!(who(ok), Some(("bot".into(), Role::Scan)));
        let ok = a
            .authenticate(
                &headers(&[("Password", "alice:right password")]),
                peer,
                Some(&path),
            )
            .await
            .unwrap();
        assert_eq!(who(ok), Some(("alice".into(), Role::Admin)));
        // Remembered: the second check is fast.
        let t = Instant::now();
        a.authenticate(
            &headers(&[("Password", "alice:right password")]),
            peer,
            Some(&path),
        )
        .await
        .unwrap();
        assert!(t.elapsed() < Duration::from_millis(5), "{:?}", t.elapsed());
        assert_eq!(
            a.authenticate(&headers(&[]), peer, Some(&path)).await,
            Ok(None)
        );
        // Wrong passwords, unknown users and tokens: 401, then 429 for the address.
        let bad = [
            ("Password", "alice:wrong"),
            ("Password", "nobody:x"),
            ("Authorization", "Bearer chf_nothing"),
            ("Password", "alice:wrong"),
            ("Password", "alice:wrong"),
        ];
        for h in bad {
            let e = a
                .authenticate(&headers(&[h]), peer, Some(&path))
                .await
                .unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED, "{h:?}");
        }
        let e = a
            .authenticate(&headers(&[("Password", &token)]), peer, Some(&path))
            .await
            .unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(e.retry_after.is_some());
        // Another address is not held up, though alice's checks now wait.
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t = Instant::now();
        let ok = a
            .authenticate(
                &headers(&[("Password", "alice:right password")]),
                other,
                Some(&path),
            )
            .await
            .unwrap();
        assert!(ok.is_some());
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );

        // The file changes: a removed user is refused within a second or so.
        UsersFile::edit(&path, |f| f.remove("bot").map(|_| ())).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        let e = a
            .authenticate(&headers(&[("Password", &token)]), other, Some(&path))
            .await
            .unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
        // A broken file keeps the previous users.
        std::fs::write(&path, "[users.x]\nrole = 1\n").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        let ok = a
            .authenticate(
                &headers(&[("Password", "alice:right password")]),
                other,
                Some(&path),
            )
            .await
            .unwrap();
        assert!(ok.is_some());
    }

    #[tokio::test]
    async fn without_users_credentials_are_refused_and_anonymous_is_none() {
        let a = Authenticator::new(None).unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(a.authenticate(&headers(&[]), peer, None).await, Ok(None));
        let e = a
            .authenticate(&headers(&[("Password", "x")]), peer, None)
            .await
            .unwrap_err();
        assert!(e.message.contains("no users are configured"), "{e}");
        let caller = Caller { user: None, peer };
        assert_eq!(
            caller.require(Role::Read).unwrap_err().status,
            axum::http::StatusCode::UNAUTHORIZED
        );
        let reader = Caller {
            user: Some(Principal {
                name: "r".into(),
                role: Role::Read,
            }),
            peer,
        };
        assert!(reader.require(Role::Read).is_ok());
        assert_eq!(
            reader.require(Role::Scan).unwrap_err().status,
            axum::http::StatusCode::FORBIDDEN
        );
    }

    proptest::proptest! {
        #[test]
        fn any_credential_headers_parse_or_are_refused_with_401(
            auth in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            password in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&auth) {
                h.insert(axum::http::header::AUTHORIZATION, v);
            }
            if let Ok(v) = HeaderValue::from_bytes(&password) {
                h.insert("password", v);
            }
            if let Err(e) = credentials(&h) {
                proptest::prop_assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
            }
        }
    }

    #[test]
    fn an_unreadable_users_file_stops_the_start() {
        let e = Authenticator::new(Some("/nonexistent/users.toml".into())).unwrap_err();
        assert!(e.contains("/nonexistent/users.toml"), "{e}");
    }
}
