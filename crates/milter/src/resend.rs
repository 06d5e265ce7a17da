//! Releasing ("resending", 重新发送) one quarantine entry: the one place that
//! does it, for the `chaff quarantine release` command and the HTTP admin API.
//!
//! [`release_entry`] joins the quarantine store's state machine
//! ([`StateStore::begin_release`] and what follows) to the delivery
//! ([`release::deliver`]):
//!
//! 1. the options are checked before anything changes (a model to learn into;
//!    an allow entry that can be formed with proof);
//! 2. `begin_release` claims the entry (compare-and-set, durable): of two
//!    callers at the same moment, in this process or another, one wins and the
//!    other gets [`StateError::Conflict`] with who and when;
//! 3. the message is delivered: from Postfix's hold queue (`postsuper -H`) when
//!    the MTA was told to hold it and its queue id is known, otherwise from the
//!    store's copy by SMTP to the relay with a release token (discarded and
//!    rejected mail);
//! 4. the entry is settled by what the delivery says ([`Settlement`]):
//!    released ([`StateStore::finish_release`]); certainly not delivered, held
//!    again with the reason ([`StateStore::abandon_release`]); perhaps
//!    delivered, in doubt at once ([`StateStore::mark_in_doubt`]), for an admin
//!    to check and settle, never re-sent silently;
//! 5. once released, the options: the message is learned as ham into the
//!    configured model, and its sender is allowed from the address it came
//!    from (`SENDER from CLIENT_ADDR`, the proof the allow list asks for).
//!
//! Every step is in the store's admin action log under `by`: the store writes
//! the state changes' rows itself, this module the learning and the allow entry.
//!
//! Everything here blocks (the store's fsyncs, sockets, Postfix's commands,
//! the model file): from async code, call it in `spawn_blocking`.

use crate::quarantine::{
    AdminAction, EntryId, SenderList, StateError, StateStore, Summary, Told, canonical_entry,
};
use crate::release::{
    self, HoldError, KeyError, Postfix, Privilege, ReleaseConfig, ReleaseError, ReleaseKey,
    ReleaseMode, ReleaseRequest, Settlement,
};
use crate::settings::Settings;
use chaff::Engine;
use chaff_train::learn::ModelFile;
use std::time::Instant;
use tracing::{info, warn};

/// Longest wait for another learner (`chaff learn`, `/learnham`) holding the
/// model file's lock, as for the HTTP learning commands.
pub const LEARN_LOCK_WAIT: std::time::Duration = crate::http::LEARN_LOCK_WAIT;

/// What a release should do besides delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResendOptions {
    /// Release an entry whose earlier release is in doubt (the admin has checked
    /// that it was not delivered).
    pub force: bool,
    /// Learn the message as ham into the configured model once released.
    pub learn_ham: bool,
    /// Allow its envelope sender from its client address once released.
    pub allow_sender: bool,
}

/// A release that delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Resent {
    /// The entry as it is now (released).
    pub summary: Summary,
    /// What the delivery did, in words (the relay's reply and any recipients
    /// it refused, or where the held queue file went).
    pub delivery: String,
    /// The message's score before and after learning it as ham
    /// ([`ResendOptions::learn_ham`]).
    pub learned: Option<(f64, f64)>,
    /// The allow entry ([`ResendOptions::allow_sender`]), canonical, whether
    /// added now or there already.
    pub allowed: Option<String>,
    /// Options that failed after the message was released (the model file was
    /// busy, the store refused the entry): the release stands; each says what
    /// to do instead.
    pub problems: Vec<String>,
}

/// Why a release did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// The entry cannot be released now: no such entry (HTTP 404), already
    /// released, being released, in doubt or deleted, with who and when (409),
    /// or the store failed (503).
    #[error(transparent)]
    State(#[from] StateError),
    /// Nothing was sent (no release key, no queue id, not root, a bad
    /// envelope, `postsuper` failed): the entry is held again.
    #[error("not released: {0}; the entry is held again")]
    Release(#[from] ReleaseError),
    /// The relay refused it or could not be reached, or Postfix did not release
    /// it: certainly not delivered; the entry is held again, to try later.
    #[error("not delivered: {0}; the entry is held again")]
    NotDelivered(String),
    /// It may or may not have been delivered (the relay's answer to the message
    /// was lost, the held file was gone afterwards, or the delivery could not
    /// be recorded): the entry is in doubt until an admin checks the
    /// recipient's mailbox and the MTA's log, then forces a new release or
    /// marks it delivered.
    #[error(
        "perhaps delivered, perhaps not, so the entry is in doubt: {0}; check the \
         recipient's mailbox and the MTA's log, then release it again with force or \
         resolve it as delivered or not"
    )]
    InDoubt(String),
    /// `learn_ham` was asked but there is nothing to learn into; nothing was done.
    #[error("cannot learn as ham: {0}; nothing was released")]
    Learn(String),
    /// `allow_sender` was asked but no allow entry with proof can be formed;
    /// nothing was done.
    #[error("cannot allow the sender: {0}; nothing was released")]
    Allow(String),
}

impl ResendError {
    /// The HTTP status that says it: 404 no such entry, 409 a state that does
    /// not allow the release (or an option that cannot be met), 422 an entry
    /// whose envelope or queue id cannot be used, 502 the MTA did not take it or
    /// cannot say, 503 the store failed, 500 chaff's own setup (no key, not root).
    pub fn http_status(&self) -> u16 {
        match self {
            ResendError::State(StateError::NotFound(_)) => 404,
            ResendError::State(StateError::Conflict { .. }) => 409,
            ResendError::State(StateError::Store(_)) => 503,
            ResendError::Release(
                ReleaseError::Relay(_)
                | ReleaseError::NoQueueId
                | ReleaseError::Hold(HoldError::BadQueueId(_)),
            ) => 422,
            ResendError::Release(
                ReleaseError::Hold(HoldError::NotRoot { .. })
                | ReleaseError::NoKey
                | ReleaseError::Token(_),
            ) => 500,
            ResendError::Release(ReleaseError::Hold(_)) => 502,
            ResendError::NotDelivered(_) | ResendError::InDoubt(_) => 502,
            ResendError::Learn(_) | ResendError::Allow(_) => 409,
        }
    }
}

/// How releases are delivered under `settings`: the relay `[quarantine]
/// release_relay` (default `127.0.0.1:25`), the release key the service made
/// (read with [`ReleaseKey::load`], never created: as root that would make a file
/// the service cannot read; a missing key leaves `key` empty and a store-mode
/// release fails with [`ReleaseError::NoKey`]), and Postfix's commands as root
/// when this process is root, otherwise through `sudo -n` (`contrib/sudoers.chaff`).
/// The Postfix instance is the one its commands find (`MAIL_CONFIG` in the
/// environment names another).
pub fn release_config(settings: &Settings) -> Result<ReleaseConfig, KeyError> {
    let mut config = ReleaseConfig::default();
    if let Some(relay) = &settings.quarantine.release_relay {
        config.relay.address.clone_from(relay);
    }
    config.key = match ReleaseKey::load(&settings.release_key()) {
        Ok(key) => Some(key),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    config.postfix = Postfix {
        privilege: if is_root() {
            Privilege::Root
        } else {
            Privilege::Sudo
        },
        ..Postfix::default()
    };
    Ok(config)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The allow entry with proof for a message from `sender` through the client
/// at `client_addr`: `SENDER from CLIENT_ADDR`, canonical. Never a bare address
/// (anyone can write any sender): the null sender and a message without a client
/// address are refused.
pub fn allow_entry(sender: &str, client_addr: Option<&str>) -> Result<String, String> {
    if sender.trim().is_empty() {
        return Err("the message has the null sender (<>): there is no sender to allow".into());
    }
    let Some(addr) = client_addr.map(str::trim).filter(|a| !a.is_empty()) else {
        return Err(format!(
            "the entry has no client address, so `{sender}` could only be allowed from \
             anywhere; add an entry with a network by hand (`chaff senders allow \
             \"{sender} from NETWORK\"`)"
        ));
    };
    // Postfix writes IPv6 clients as `IPv6:ADDR` in some macros.
    let addr = addr
        .strip_prefix("IPv6:")
        .or_else(|| addr.strip_prefix("ipv6:"))
        .unwrap_or(addr);
    canonical_entry(SenderList::Allow, &format!("{sender} from {addr}")).map_err(|e| e.to_string())
}

/// Releases entry `id` for `by` (a user name; the CLI's is `cli:NAME`), at
/// `now` (seconds since the epoch): see the module's documentation. Blocking.
///
/// `engine` reads the message when it is learned as ham, and its configuration
/// names the model to learn into (`model = "PATH"`); `config` is how to deliver
/// ([`release_config`]).
pub fn release_entry(
    store: &StateStore,
    engine: &Engine,
    config: &ReleaseConfig,
    id: EntryId,
    by: &str,
    opts: &ResendOptions,
    now: u64,
) -> Result<Resent, ResendError> {
    // What the options need is checked before the entry changes.
    let model = if opts.learn_ham {
        let Some(path) = engine.config().model.clone() else {
            return Err(ResendError::Learn(
                "no model is configured (`model = \"PATH\"`)".into(),
            ));
        };
        Some(path)
    } else {
        None
    };
    let allow = if opts.allow_sender {
        let entry = store
            .get(id)
            .map_err(StateError::Store)?
            .ok_or(StateError::NotFound(id))?;
        let env = &entry.detail.envelope;
        Some(allow_entry(&env.sender, env.client_addr.as_deref()).map_err(ResendError::Allow)?)
    } else {
        None
    };

    let ticket = store.begin_release(id, by, opts.force, now)?;
    let started = Instant::now();
    let later = || now.saturating_add(started.elapsed().as_secs());
    let env = &ticket.envelope;
    let mode = if ticket.summary.told == Told::Hold && env.queue_id.is_some() {
        ReleaseMode::Hold
    } else {
        ReleaseMode::Store
    };
    let id_text = id.to_string();
    let request = ReleaseRequest {
        id: &id_text,
        sender: Some(env.sender.as_str()),
        recipients: &env.recipients,
        raw: &ticket.message,
        queue_id: env.queue_id.as_deref(),
        mode,
    };
    let delivery = match release::deliver(&request, config) {
        Ok(d) => d,
        Err(e) => {
            let why = e.to_string();
            if let Err(se) = store.abandon_release(&ticket, &why, later()) {
                // The entry stays "releasing" and shows in doubt after
                // RELEASE_IN_DOUBT_AFTER: safe, if slow.
                warn!(id = %id, by, error = %se, "a failed release could not be recorded");
            }
            info!(id = %id, by, error = %why, "release failed: nothing sent");
            return Err(ResendError::Release(e));
        }
    };
    let what = delivery.to_string();
    let summary = match delivery.settlement() {
        Settlement::Released => match store.finish_release(&ticket, &what, later()) {
            Ok(s) => s,
            Err(e) => {
                let why = format!("delivered ({what}), but the store could not record it: {e}");
                let _ = store.mark_in_doubt(&ticket, &why, later());
                warn!(id = %id, by, error = %e, "a delivered release could not be recorded");
                return Err(ResendError::InDoubt(why));
            }
        },
        Settlement::NotDelivered => {
            if let Err(se) = store.abandon_release(&ticket, &what, later()) {
                warn!(id = %id, by, error = %se, "a failed release could not be recorded");
            }
            info!(id = %id, by, delivery = %what, "release not delivered");
            return Err(ResendError::NotDelivered(what));
        }
        Settlement::InDoubt => {
            if let Err(se) = store.mark_in_doubt(&ticket, &what, later()) {
                warn!(id = %id, by, error = %se, "an in-doubt release could not be marked");
            }
            warn!(id = %id, by, delivery = %what, "release in doubt");
            return Err(ResendError::InDoubt(what));
        }
    };
    info!(id = %id, by, delivery = %what, "quarantine entry released");

    let mut problems = Vec::new();
    let learned = model.and_then(|path| match learn_ham(engine, &path, &ticket.message) {
        Ok((before, after)) => {
            let logged = store.log_action(&AdminAction {
                at: later(),
                by: by.to_string(),
                what: "learn-ham".into(),
                id: Some(id),
                detail: format!("{}: score {before:.2} -> {after:.2}", path.display()),
            });
            if let Err(e) = logged {
                problems.push(format!("learned as ham, but not logged: {e}"));
            }
            Some((before, after))
        }
        Err(e) => {
            problems.push(format!(
                "released, but not learned as ham: {e}; learn it with \
                     `chaff quarantine show {id} --raw | chaff learn --ham -`"
            ));
            None
        }
    });
    let allowed = allow.and_then(|entry| {
        let comment = format!("sender of quarantine entry {id}, released by {by}");
        match store.add_sender(SenderList::Allow, &entry, by, &comment, later()) {
            Ok(added) => {
                let logged = store.log_action(&AdminAction {
                    at: later(),
                    by: by.to_string(),
                    what: "allow-sender".into(),
                    id: Some(id),
                    detail: format!(
                        "{entry} ({})",
                        if added { "added" } else { "already listed" }
                    ),
                });
                if let Err(e) = logged {
                    problems.push(format!("sender allowed, but not logged: {e}"));
                }
                Some(entry)
            }
            Err(e) => {
                problems.push(format!(
                    "released, but the sender was not allowed: {e}; add it with \
                     `chaff senders allow \"{entry}\"`"
                ));
                None
            }
        }
    });
    Ok(Resent {
        summary,
        delivery: what,
        learned,
        allowed,
        problems,
    })
}

/// Learns `raw` as ham into the model file at `path`; its score before and after.
fn learn_ham(
    engine: &Engine,
    path: &std::path::Path,
    raw: &[u8],
) -> Result<(f64, f64), chaff_train::learn::ModelFileError> {
    let mut model = ModelFile::open_within(path, LEARN_LOCK_WAIT)?;
    let l = model.learn(engine, raw, false);
    model.save()?;
    Ok((l.before, l.after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::{EntryState, NewEntry, StoredEnvelope};
    use chaff::{Action, Reason, Verdict};

    fn verdict() -> Verdict {
        Verdict {
            action: Action::Quarantine,
            score: 10.0,
            reply: None,
            reason: Reason::Score {
                quarantine: 9.0,
                reject: 15.0,
            },
            hits: Vec::new(),
            tokens: Vec::new(),
            truncated: false,
        }
    }

    fn keep(store: &StateStore, sender: &str, client: Option<&str>, told: Told) -> EntryId {
        let e = NewEntry::new(
            1_700_000_000_000,
            "mx.test",
            StoredEnvelope {
                sender: sender.into(),
                recipients: vec!["r@example.org".into()],
                client_addr: client.map(str::to_string),
                queue_id: Some("4ABCDEF12".into()),
                ..StoredEnvelope::default()
            },
            &verdict(),
            told,
            b"Subject: hi\r\n\r\nbody\r\n",
        )
        .unwrap();
        store.put(&e).unwrap()
    }

    fn engine() -> Engine {
        Engine::new(&chaff::Config::default()).unwrap()
    }

    /// A relay address where nothing listens.
    fn dead_relay() -> ReleaseConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = ReleaseConfig {
            key: Some(ReleaseKey::from_bytes([3; 32])),
            ..ReleaseConfig::default()
        };
        c.relay.address = format!("127.0.0.1:{port}");
        c
    }

    #[test]
    fn allow_entries_carry_proof_or_are_refused() {
        assert_eq!(
            allow_entry("Boss@Example.com", Some("192.0.2.7")).unwrap(),
            "boss@example.com from 192.0.2.7/32"
        );
        assert_eq!(
            allow_entry("a@example.com", Some("IPv6:2001:db8::1")).unwrap(),
            "a@example.com from 2001:db8::1/128"
        );
        let e = allow_entry("", Some("192.0.2.7")).unwrap_err();
        assert!(e.contains("null sender"), "{e}");
        let e = allow_entry("a@example.com", None).unwrap_err();
        assert!(e.contains("no client address"), "{e}");
        assert!(allow_entry("a@example.com", Some(" ")).is_err());
        assert!(allow_entry("a@example.com", Some("unknown")).is_err());
    }

    #[test]
    fn options_that_cannot_be_met_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.redb")).unwrap();
        let id = keep(&store, "", Some("192.0.2.7"), Told::Discard);
        let opts = ResendOptions {
            allow_sender: true,
            ..ResendOptions::default()
        };
        let e = release_entry(&store, &engine(), &dead_relay(), id, "t", &opts, 100).unwrap_err();
        assert!(matches!(e, ResendError::Allow(_)), "{e}");
        assert_eq!(e.http_status(), 409);
        let opts = ResendOptions {
            learn_ham: true,
            ..ResendOptions::default()
        };
        let e = release_entry(&store, &engine(), &dead_relay(), id, "t", &opts, 100).unwrap_err();
        assert!(matches!(e, ResendError::Learn(_)), "{e}");
        assert_eq!(
            store.get(id).unwrap().unwrap().summary.state,
            EntryState::Held
        );
        assert!(store.actions(10).unwrap().is_empty());
        let missing = EntryId::new(1, 1);
        let e = release_entry(
            &store,
            &engine(),
            &dead_relay(),
            missing,
            "t",
            &ResendOptions::default(),
            100,
        )
        .unwrap_err();
        assert_eq!(e.http_status(), 404, "{e}");
    }

    #[test]
    fn a_relay_that_is_down_leaves_the_entry_held_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.redb")).unwrap();
        let id = keep(&store, "a@example.com", Some("192.0.2.7"), Told::Discard);
        let opts = ResendOptions::default();
        let e =
            release_entry(&store, &engine(), &dead_relay(), id, "alice", &opts, 100).unwrap_err();
        assert!(matches!(e, ResendError::NotDelivered(_)), "{e}");
        assert_eq!(e.http_status(), 502);
        assert!(e.to_string().contains("held again"), "{e}");
        assert_eq!(
            store.get(id).unwrap().unwrap().summary.state,
            EntryState::Held
        );
        let log = store.actions(2).unwrap();
        assert_eq!(log[0].what, "release-failed");
        assert_eq!(log[0].by, "alice");
        assert!(log[0].detail.contains("connect"), "{}", log[0].detail);
        // No key: nothing sent, held again, and said so.
        let mut c = dead_relay();
        c.key = None;
        let e = release_entry(&store, &engine(), &c, id, "alice", &opts, 101).unwrap_err();
        assert!(
            matches!(e, ResendError::Release(ReleaseError::NoKey)),
            "{e}"
        );
        assert_eq!(
            store.get(id).unwrap().unwrap().summary.state,
            EntryState::Held
        );
    }

    #[test]
    fn a_concurrent_or_repeated_release_is_a_conflict_with_who_and_when() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.redb")).unwrap();
        let id = keep(&store, "a@example.com", Some("192.0.2.7"), Told::Discard);
        // Someone else's release under way.
        let _t = store.begin_release(id, "api:bob", false, 100).unwrap();
        let e = release_entry(
            &store,
            &engine(),
            &dead_relay(),
            id,
            "cli:alice",
            &ResendOptions::default(),
            101,
        )
        .unwrap_err();
        assert_eq!(e.http_status(), 409);
        assert!(e.to_string().contains("being released by api:bob"), "{e}");
    }

    #[test]
    fn release_config_reads_the_relay_and_never_creates_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.state.path = dir.path().join("state.redb");
        settings.quarantine.release_relay = Some("127.0.0.1:2525".into());
        let c = release_config(&settings).unwrap();
        assert_eq!(c.relay.address, "127.0.0.1:2525");
        assert!(c.key.is_none());
        assert!(!dir.path().join("release.key").exists());
        let expected = if is_root() {
            Privilege::Root
        } else {
            Privilege::Sudo
        };
        assert_eq!(c.postfix.privilege, expected);
        ReleaseKey::load_or_create(&dir.path().join("release.key")).unwrap();
        assert!(release_config(&settings).unwrap().key.is_some());
        settings.quarantine.release_relay = None;
        assert_eq!(
            release_config(&settings).unwrap().relay.address,
            release::smtp::DEFAULT_RELAY
        );
    }

    #[test]
    fn options_read_from_json() {
        let o: ResendOptions = serde_json::from_str(r#"{"learn_ham": true}"#).unwrap();
        assert_eq!(
            o,
            ResendOptions {
                force: false,
                learn_ham: true,
                allow_sender: false
            }
        );
        assert!(serde_json::from_str::<ResendOptions>(r#"{"learn": true}"#).is_err());
    }
}
