//! What every HTTP request handler shares: the milter's [`Service`] (engine
//! generation, lock store, the state store and its writer, counters, scan
//! threads, buffer budget), the [`Authenticator`], the lock that serialises
//! learning, and the dashboard's shared figures.
//!
//! Handlers get it as `State<Arc<HttpState>>`. A new subsystem (the quarantine
//! store, say) adds a field here, set where the state is built
//! ([`HttpState::new`]).

use super::api::stats::StatsCache;
use super::auth::Authenticator;
use crate::quarantine::{Keeper, StateStore};
use crate::service::Service;
use std::sync::Arc;

/// The state shared by the HTTP handlers.
pub struct HttpState {
    /// The milter service: scans go through it exactly as the milter's do.
    pub service: Arc<Service>,
    /// Credentials against the users file.
    pub auth: Authenticator,
    /// The users file, as configured at start. Its contents are read again when
    /// they change, but not another path: a reload that dropped the users of a
    /// listener reachable from other hosts would leave it open to anonymous use.
    pub(crate) users_file: Option<std::path::PathBuf>,
    /// Held while a learn request updates the model, so that requests of this
    /// process queue here instead of on the model file's lock.
    pub(crate) learning: tokio::sync::Mutex<()>,
    /// The summary's top lists, computed now and then (`GET /api/stats`).
    pub(crate) stats: Arc<StatsCache>,
    /// The admin console's sessions.
    pub(crate) console: crate::console::Console,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState").finish_non_exhaustive()
    }
}

impl HttpState {
    /// The state for `service`, reading the users file its settings name; an
    /// unreadable or invalid users file is an error.
    pub fn new(service: Arc<Service>) -> Result<Arc<HttpState>, String> {
        let file = service.current().settings.users.file.clone();
        let auth = Authenticator::new(file.clone())?;
        Ok(Arc::new(HttpState {
            service,
            auth,
            users_file: file,
            learning: tokio::sync::Mutex::new(()),
            stats: Arc::default(),
            console: crate::console::Console::default(),
        }))
    }

    /// The state store: quarantine, scan history, hourly counts, stored sender
    /// lists, action log. Its calls block on the file: call them from
    /// `spawn_blocking`.
    pub fn store(&self) -> &Arc<StateStore> {
        self.service.state()
    }

    /// The state store's writer (the hourly counts not written yet).
    pub fn keeper(&self) -> &Keeper {
        self.service.keeper()
    }
}
