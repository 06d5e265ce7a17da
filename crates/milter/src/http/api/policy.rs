//! `/api/policy`: the stored per-domain, per-recipient and per-account policies
//! (module `site_policy`), for admins only: they decide what is delivered.
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /api/policy` | `admin` | `{"revision", "policies": [{"scope", "rule"}], "sender_mismatch", "refresh_ms"}` |
//! | `GET /api/policy/{scope}` | `admin` | `{"scope", "rule"}`; 404 when it has none |
//! | `PUT /api/policy/{scope}/{key}` | `admin` | body `{"value": "…"}`: sets a threshold or flag, or adds a list entry; `{"scope", "rule", "revision"}` |
//! | `DELETE /api/policy/{scope}/{key}` | `admin` | body `{"value": "…"}` removes one list entry, `{}` the threshold, flag or whole list; likewise |
//!
//! A scope is `domain:D`, `recipient:ADDRESS` or `account:LOGIN`; a key
//! `quarantine`, `reject`, `allow`, `block`, `aliases` or `mismatch_exempt`.
//! A change goes through `site_policy::edit` (as `chaff policy` does), is
//! written to the action log as `http:NAME`, and applies from the next message
//! (the service's copy is refreshed before the answer). A refused value is 400
//! with the reason; an entry that is not there, 404.

use super::store::{blocking, by};
use crate::http::auth::Admin;
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::quarantine::now_ms;
use crate::site_policy::{self, Change, Edited, Key, PolicyError, PolicyStore, Rule, Scope};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::info;

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> ApiError {
        match e {
            PolicyError::Invalid(m) => ApiError::bad_request(m),
            PolicyError::NotFound(m) => ApiError::not_found(m),
            PolicyError::Full => ApiError::conflict(e.to_string()),
            PolicyError::Store(m) => ApiError::unavailable(m),
        }
    }
}

/// One scope's policy.
#[derive(Debug, Serialize)]
pub struct Scoped {
    /// The scope.
    pub scope: String,
    /// Its rule.
    pub rule: Rule,
}

/// `GET /api/policy`.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// The stored policies' revision.
    pub revision: u64,
    /// Every stored policy.
    pub policies: Vec<Scoped>,
    /// `[policy] sender_mismatch`.
    pub sender_mismatch: &'static str,
    /// `[policy] refresh_ms`.
    pub refresh_ms: u64,
}

/// The body of a change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueBody {
    /// The value (a threshold, an entry, `true`/`false`).
    #[serde(default)]
    pub value: Option<String>,
}

fn realm(state: &HttpState) -> Option<String> {
    state.service.current().settings.accounts.realm.clone()
}

/// `GET /api/policy`.
pub(crate) async fn list(
    Admin(_): Admin,
    State(state): State<Arc<HttpState>>,
) -> Result<Json<Listed>, ApiError> {
    let store = Arc::clone(state.store());
    let (revision, rules) =
        blocking(move || Ok((store.policy_revision()?, store.policies()?))).await?;
    let g = state.service.current();
    Ok(Json(Listed {
        revision,
        policies: rules
            .into_iter()
            .map(|(s, rule)| Scoped {
                scope: s.to_string(),
                rule,
            })
            .collect(),
        sender_mismatch: g.settings.policy.mismatch.as_str(),
        refresh_ms: g.settings.policy.refresh.as_millis() as u64,
    }))
}

/// `GET /api/policy/{scope}`.
pub(crate) async fn show(
    Admin(_): Admin,
    State(state): State<Arc<HttpState>>,
    Path(scope): Path<String>,
) -> Result<Json<Scoped>, ApiError> {
    let scope = Scope::parse(&scope, realm(&state).as_deref()).map_err(ApiError::bad_request)?;
    let store = Arc::clone(state.store());
    let s = scope.clone();
    let rule = blocking(move || Ok(store.policy(&s)?)).await?;
    match rule {
        Some(rule) => Ok(Json(Scoped {
            scope: scope.to_string(),
            rule,
        })),
        None => Err(ApiError::not_found(format!("{scope} has no stored policy"))),
    }
}

async fn change(
    who: &crate::http::auth::Principal,
    state: &Arc<HttpState>,
    scope: String,
    change: Change,
) -> Result<Json<Edited>, ApiError> {
    let (store, b, realm) = (Arc::clone(state.store()), by(who), realm(state));
    let svc = Arc::clone(&state.service);
    let c = change.clone();
    let edited = blocking(move || {
        let e = site_policy::edit(&*store, &scope, &c, realm.as_deref(), &b, now_ms() / 1000)?;
        svc.policies().invalidate();
        Ok(e)
    })
    .await?;
    info!(
        by = who.name,
        scope = edited.scope,
        change = change.describe(),
        action = change.verb(),
        revision = edited.revision,
        "policy changed through the API"
    );
    Ok(Json(edited))
}

/// `PUT /api/policy/{scope}/{key}`.
pub(crate) async fn set(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path((scope, key)): Path<(String, String)>,
    Json(body): Json<ValueBody>,
) -> Result<Json<Edited>, ApiError> {
    let key = Key::parse(&key)?;
    let value = body
        .value
        .ok_or_else(|| ApiError::bad_request("`value` is required"))?;
    change(&who, &state, scope, Change::Set(key, value)).await
}

/// `DELETE /api/policy/{scope}/{key}`.
pub(crate) async fn unset(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path((scope, key)): Path<(String, String)>,
    Json(body): Json<ValueBody>,
) -> Result<Json<Edited>, ApiError> {
    let key = Key::parse(&key)?;
    change(&who, &state, scope, Change::Unset(key, body.value)).await
}
