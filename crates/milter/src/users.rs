//! The users file: who may use the HTTP listener (the Rspamd protocol, the admin
//! API, later the console), and with which role.
//!
//! A TOML file (`[users] file` in `chaff.toml`), written by `chaff users` and read
//! by the service at start, on SIGHUP and when it changes:
//!
//! ```toml
//! [users.alice]
//! role = "admin"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! token = "sha256:9f86d0…"
//! ```
//!
//! - `role`: `read` (may read), `scan` (may also scan with the `User:` header
//!   applied, so its mail counts toward account locks, and learn), `admin`
//!   (everything). Each role includes the ones before it.
//! - `password`: an Argon2id hash as a PHC string (19 MiB, 2 passes, 1 lane: the
//!   OWASP recommendation), or absent for a user who only has a token.
//! - `token`: the SHA-256 of the user's API token, or absent. A token is 32 random
//!   bytes (`chf_` and 43 base64url characters), shown once by `chaff users` and
//!   stored only as its hash: a fast hash is enough for a random 256-bit secret,
//!   which cannot be guessed, and it keeps Argon2 off the path of every scan.
//!
//! The file holds password hashes, so it is written with mode 0600, atomically
//! (a temporary file in the same directory, synced, renamed, the directory synced),
//! and concurrent `chaff users` runs wait for each other on a lock file beside it.
//! Everything read from it is bounded: the file's size, the number of users, the
//! length of names, and the Argon2 cost a hash may ask of a verification.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What a user may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read: scan without outbound policy, and (in the admin API) look.
    Read,
    /// Scan: also scan with the `User:` header applied (outbound policy and
    /// account locks), and learn.
    Scan,
    /// Admin: everything.
    Admin,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Scan => "scan",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "read" => Ok(Role::Read),
            "scan" => Ok(Role::Scan),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("`{s}` is not a role: use read, scan or admin")),
        }
    }
}

/// Largest users file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Most users in a file.
pub const MAX_USERS: usize = 10_000;
/// Longest user name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Shortest password accepted by `chaff users`, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes (longer ones are refused unhashed).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Most memory (KiB) a stored Argon2 hash may ask a verification to use: 256 MiB.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// Most passes a stored Argon2 hash may ask for.
pub const MAX_ARGON2_PASSES: u32 = 16;
/// Most lanes a stored Argon2 hash may ask for.
pub const MAX_ARGON2_LANES: u32 = 16;
/// What every API token starts with, so secret scanners can recognise one.
pub const TOKEN_PREFIX: &str = "chf_";
/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;

/// The users file could not be read, checked or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// An I/O error on the file (or its lock or temporary file).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a valid users file.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the user and field.
        message: String,
    },
    /// A request to change the file cannot be carried out (unknown user, bad
    /// name, password too short…).
    #[error("{0}")]
    Refused(String),
}

/// One user as stored in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// What the user may do.
    pub role: Role,
    /// The Argon2id hash of the password (PHC string), if the user has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `sha256:HEX` of the API token, if the user has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The users file's contents, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// The users, by name.
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
}

/// Checks a user name: 1 to [`MAX_NAME_BYTES`] of ASCII letters, digits and
/// `. _ - @ +` (no `:`, which separates name and password in credentials).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a usable user name: 1 to {MAX_NAME_BYTES} letters, digits or . _ - @ +"
        ))
    }
}

/// Checks a new password's length.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is too short: at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

fn argon2() -> argon2::Argon2<'static> {
    // Argon2id, version 0x13, 19 MiB, 2 passes, 1 lane: the crate's defaults, which
    // are OWASP's recommendation (about 30 ms a hash on this machine's cores).
    argon2::Argon2::default()
}

/// Hashes a password with Argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    check_new_password(password).map_err(UsersError::Refused)?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| UsersError::Refused(format!("no randomness for the salt: {e}")))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| UsersError::Refused(format!("salt: {e}")))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Refused(format!("hashing the password: {e}")))
}

/// Checks that `phc` is an Argon2 PHC string within the cost bounds.
fn check_hash(phc: &str) -> Result<(), String> {
    use argon2::password_hash::PasswordHash;
    let h = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if !h.algorithm.as_str().starts_with("argon2") {
        return Err(format!("`{}` is not an Argon2 hash", h.algorithm));
    }
    let p = argon2::Params::try_from(&h).map_err(|e| format!("bad Argon2 parameters: {e}"))?;
    if p.m_cost() > MAX_ARGON2_MEMORY_KIB
        || p.t_cost() > MAX_ARGON2_PASSES
        || p.p_cost() > MAX_ARGON2_LANES
    {
        return Err(format!(
            "Argon2 cost m={},t={},p={} is over the bounds (m={MAX_ARGON2_MEMORY_KIB},\
             t={MAX_ARGON2_PASSES},p={MAX_ARGON2_LANES})",
            p.m_cost(),
            p.t_cost(),
            p.p_cost()
        ));
    }
    if h.hash.is_none() || h.salt.is_none() {
        return Err("the PHC string has no salt or no hash".into());
    }
    Ok(())
}

/// True when `password` matches the PHC string `phc`. Slow by design (tens of
/// milliseconds of CPU): call it off the network threads, and not for every request.
pub fn verify_password(phc: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    if password.len() > MAX_PASSWORD_BYTES || check_hash(phc).is_err() {
        return false;
    }
    PasswordHash::new(phc)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// The stored form of a token: `sha256:` and the hex SHA-256 of the token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A new random API token and its stored form ([`token_hash`]).
pub fn new_token() -> Result<(String, String), UsersError> {
    use base64::Engine as _;
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| UsersError::Refused(format!("no randomness for the token: {e}")))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&token);
    Ok((token, hash))
}

fn is_token_hash(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl UsersFile {
    /// Reads and checks a users file (at most [`MAX_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<UsersFile, UsersError> {
        let io = |source| UsersError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(UsersError::Invalid {
                path: path.to_path_buf(),
                message: format!("larger than {MAX_FILE_BYTES} bytes"),
            });
        }
        let parsed: UsersFile = toml::from_str(&text).map_err(|e| UsersError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        parsed.check().map_err(|message| UsersError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(parsed)
    }

    /// Reads `path`, or an empty file if it does not exist (for `chaff users add`).
    pub fn load_or_empty(path: &Path) -> Result<UsersFile, UsersError> {
        match UsersFile::load(path) {
            Err(UsersError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(UsersFile::default())
            }
            r => r,
        }
    }

    /// Checks names, hashes, tokens and counts; the error names the user and field.
    pub fn check(&self) -> Result<(), String> {
        if self.users.len() > MAX_USERS {
            return Err(format!("more than {MAX_USERS} users"));
        }
        let mut tokens = HashMap::new();
        for (name, u) in &self.users {
            check_name(name)?;
            if let Some(p) = &u.password {
                check_hash(p).map_err(|e| format!("users.{name}.password: {e}"))?;
            }
            if let Some(t) = &u.token {
                if !is_token_hash(t) {
                    return Err(format!(
                        "users.{name}.token: not `sha256:` and 64 hex digits (store the \
                         token's hash, never the token: `chaff users token {name}`)"
                    ));
                }
                if let Some(other) = tokens.insert(t.to_ascii_lowercase(), name) {
                    return Err(format!(
                        "users.{name}.token: the same as users.{other}.token"
                    ));
                }
            }
            if u.password.is_none() && u.token.is_none() {
                return Err(format!("users.{name}: neither a password nor a token"));
            }
        }
        Ok(())
    }

    /// The file's text as written: a comment, then the TOML.
    pub fn to_text(&self) -> Result<String, UsersError> {
        let body = toml::to_string(self)
            .map_err(|e| UsersError::Refused(format!("cannot write the users file: {e}")))?;
        Ok(format!(
            "# chaff users: written by `chaff users`; holds password hashes, keep it mode 0600.\n\
             # Roles: read, scan (scan with the User header, learn), admin.\n\n{body}"
        ))
    }

    /// Writes the file atomically with mode 0600: a temporary file (created 0600,
    /// never readable by others even for a moment) in the same directory, synced,
    /// renamed over `path`, then the directory synced.
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        self.check().map_err(UsersError::Refused)?;
        let text = self.to_text()?;
        let io = |source| UsersError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "users.toml".into());
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let result = (|| {
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    /// Reads `path` (empty if missing), applies `change`, and writes the result,
    /// all under an exclusive lock on `PATH.lock`, so concurrent edits are not lost.
    pub fn edit<T>(
        path: &Path,
        change: impl FnOnce(&mut UsersFile) -> Result<T, UsersError>,
    ) -> Result<T, UsersError> {
        let lock_path = {
            let mut p = path.to_path_buf().into_os_string();
            p.push(".lock");
            PathBuf::from(p)
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| UsersError::Io {
                path: lock_path.clone(),
                source,
            })?;
        lock.lock().map_err(|source| UsersError::Io {
            path: lock_path.clone(),
            source,
        })?;
        let mut file = UsersFile::load_or_empty(path)?;
        let out = change(&mut file)?;
        file.save(path)?;
        drop(lock);
        Ok(out)
    }

    /// Adds a user; refused if the name is taken or unusable.
    pub fn add(&mut self, name: &str, entry: UserEntry) -> Result<(), UsersError> {
        check_name(name).map_err(UsersError::Refused)?;
        if self.users.contains_key(name) {
            return Err(UsersError::Refused(format!(
                "user `{name}` already exists (`chaff users passwd` changes a password)"
            )));
        }
        if self.users.len() >= MAX_USERS {
            return Err(UsersError::Refused(format!("already {MAX_USERS} users")));
        }
        self.users.insert(name.to_string(), entry);
        Ok(())
    }

    /// The entry of an existing user, to change.
    pub fn user_mut(&mut self, name: &str) -> Result<&mut UserEntry, UsersError> {
        self.users
            .get_mut(name)
            .ok_or_else(|| UsersError::Refused(format!("no user `{name}`")))
    }

    /// Removes a user; refused if there is none of that name.
    pub fn remove(&mut self, name: &str) -> Result<UserEntry, UsersError> {
        self.users
            .remove(name)
            .ok_or_else(|| UsersError::Refused(format!("no user `{name}`")))
    }
}

/// A user as the service knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user's name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// The password's PHC string, if any.
    pub password: Option<String>,
}

/// The users file indexed for authentication: by name and by token hash.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: HashMap<String, Account>,
    by_token: HashMap<String, String>,
}

impl Users {
    /// Indexes a checked users file.
    pub fn new(file: &UsersFile) -> Users {
        let mut users = Users::default();
        for (name, u) in &file.users {
            if let Some(t) = &u.token {
                users.by_token.insert(t.to_ascii_lowercase(), name.clone());
            }
            users.by_name.insert(
                name.clone(),
                Account {
                    name: name.clone(),
                    role: u.role,
                    password: u.password.clone(),
                },
            );
        }
        users
    }

    /// Reads, checks and indexes a users file.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        Ok(Users::new(&UsersFile::load(path)?))
    }

    /// The user whose token this is.
    pub fn by_token(&self, token: &str) -> Option<&Account> {
        self.by_name.get(self.by_token.get(&token_hash(token))?)
    }

    /// The user of this name.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name)
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Read < Role::Scan && Role::Scan < Role::Admin);
        assert_eq!("scan".parse::<Role>(), Ok(Role::Scan));
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("read, scan or admin")
        );
    }

    #[test]
    fn names_are_checked() {
        for ok in ["alice", "a.b-c_d@example.com", "x+1"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a:b", "a b", "名字", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "correct horsE"));
        assert!(!verify_password("not a hash", "correct horse"));
        // Two hashes of one password differ (random salts).
        assert_ne!(phc, hash_password("correct horse").unwrap());
        assert!(hash_password("short").is_err());
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn a_hash_asking_for_too_much_memory_is_refused_unverified() {
        let costly = "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                      aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(check_hash(costly).unwrap_err().contains("over the bounds"));
        assert!(!verify_password(costly, "whatever"));
    }

    #[test]
    fn tokens_are_random_and_stored_as_hashes() {
        let (t1, h1) = new_token().unwrap();
        let (t2, _) = new_token().unwrap();
        assert_ne!(t1, t2);
        assert!(
            t1.starts_with(TOKEN_PREFIX) && t1.len() == TOKEN_PREFIX.len() + 43,
            "{t1}"
        );
        assert!(is_token_hash(&h1), "{h1}");
        assert_eq!(token_hash(&t1), h1);
        let mut f = UsersFile::default();
        f.add(
            "bot",
            UserEntry {
                role: Role::Scan,
                password: None,
                token: Some(h1),
            },
        )
        .unwrap();
        let users = Users::new(&f);
        assert_eq!(users.by_token(&t1).map(|a| a.name.as_str()), Some("bot"));
        assert!(users.by_token(&t2).is_none());
    }

    #[test]
    fn the_file_round_trips_with_mode_0600_and_bad_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let phc = hash_password("password1").unwrap();
        UsersFile::edit(&path, |f| {
            f.add(
                "alice",
                UserEntry {
                    role: Role::Admin,
                    password: Some(phc.clone()),
                    token: None,
                },
            )
        })
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("[users.alice]") && text.contains("role = \"admin\""),
            "{text}"
        );
        let users = Users::load(&path).unwrap();
        assert_eq!(users.get("alice").unwrap().role, Role::Admin);
        // Editing again keeps the others; removing an unknown user is refused.
        UsersFile::edit(&path, |f| {
            f.add(
                "bob",
                UserEntry {
                    role: Role::Read,
                    password: Some(phc.clone()),
                    token: None,
                },
            )
        })
        .unwrap();
        assert_eq!(Users::load(&path).unwrap().len(), 2);
        let e = UsersFile::edit(&path, |f| f.remove("carol")).unwrap_err();
        assert_eq!(e.to_string(), "no user `carol`");
        let e = UsersFile::edit(&path, |f| {
            f.add(
                "bob",
                UserEntry {
                    role: Role::Read,
                    password: Some(phc.clone()),
                    token: None,
                },
            )
        })
        .unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");

        for (text, want) in [
            (
                "[users.x]\nrole = \"root\"\npassword = \"p\"\n",
                "unknown variant",
            ),
            (
                "[users.x]\nrole = \"read\"\n",
                "users.x: neither a password nor a token",
            ),
            (
                "[users.x]\nrole = \"read\"\ntoken = \"chf_plain\"\n",
                "users.x.token",
            ),
            (
                "[users.x]\nrole = \"read\"\npassword = \"plain\"\n",
                "users.x.password",
            ),
            (
                "[users.\"a:b\"]\nrole = \"read\"\ntoken = \"x\"\n",
                "not a usable user name",
            ),
            ("[users.x]\nrole = \"read\"\ncolour = 1\n", "unknown field"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Users::load(&path).unwrap_err().to_string();
            assert!(e.contains("users.toml") && e.contains(want), "{text}: {e}");
        }
    }
}
