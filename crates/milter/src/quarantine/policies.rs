//! The embedded store's side of `site_policy::PolicyStore`: one row per scope
//! (`policies` table: scope → JSON rule), a revision in `meta`, every change in
//! the admin action log, all in one write transaction.

use super::audit::{self, AdminAction};
use super::db::{META, META_POLICY_REV, POLICIES, meta_add, meta_get};
use super::{StateStore, json, parse};
use crate::site_policy::{MAX_POLICIES, PolicyError, PolicyStore, Rule, Scope};
use redb::{ReadableTable, ReadableTableMetadata};

fn store_err(e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Store(e.to_string())
}

impl PolicyStore for StateStore {
    fn policy_revision(&self) -> Result<u64, PolicyError> {
        self.db
            .read(|txn| meta_get(&txn.open_table(META)?, META_POLICY_REV))
            .map_err(store_err)
    }

    fn policies(&self) -> Result<Vec<(Scope, Rule)>, PolicyError> {
        let rows = self
            .db
            .read(|txn| {
                let mut out = Vec::new();
                for row in txn.open_table(POLICIES)?.iter()? {
                    let (k, v) = row?;
                    out.push((k.value().to_string(), parse::<Rule>(v.value(), "policy")?));
                }
                Ok(out)
            })
            .map_err(store_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, r)| match Scope::try_from(k) {
                Ok(s) => Some((s, r)),
                Err(e) => {
                    tracing::warn!("stored policy skipped: {e}");
                    None
                }
            })
            .collect())
    }

    fn policy(&self, scope: &Scope) -> Result<Option<Rule>, PolicyError> {
        let key = scope.to_string();
        self.db
            .read(|txn| {
                txn.open_table(POLICIES)?
                    .get(key.as_str())?
                    .map(|v| parse::<Rule>(v.value(), "policy"))
                    .transpose()
            })
            .map_err(store_err)
    }

    fn update_policy(
        &self,
        scope: &Scope,
        change: &mut dyn FnMut(Option<Rule>) -> Result<Option<Rule>, PolicyError>,
        by: &str,
        what: &str,
        now: u64,
    ) -> Result<Option<Rule>, PolicyError> {
        let key = scope.to_string();
        let (verb, rest) = what.split_once(' ').unwrap_or((what, ""));
        self.db
            .write(|txn| {
                let mut t = txn.open_table(POLICIES)?;
                let old = t
                    .get(key.as_str())?
                    .map(|v| parse::<Rule>(v.value(), "policy"))
                    .transpose()?;
                let existed = old.is_some();
                let new = match change(old) {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                };
                match &new {
                    Some(r) => {
                        if !existed && t.len()? as usize >= MAX_POLICIES {
                            return Ok(Err(PolicyError::Full));
                        }
                        t.insert(key.as_str(), json(r)?.as_slice())?;
                    }
                    None => {
                        t.remove(key.as_str())?;
                    }
                }
                drop(t);
                meta_add(&mut txn.open_table(META)?, META_POLICY_REV, 1)?;
                audit::append(
                    txn,
                    &AdminAction {
                        at: now,
                        by: by.to_string(),
                        what: verb.to_string(),
                        id: None,
                        detail: format!("{key} {rest}"),
                    },
                )?;
                Ok(Ok(new))
            })
            .map_err(store_err)?
    }
}

#[cfg(test)]
mod tests {
    use crate::quarantine::StateStore;
    use crate::site_policy::{Change, Key, PolicyError, PolicyStore, Scope, edit};

    #[test]
    fn edits_are_stored_counted_and_logged_and_refusals_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("state.redb")).unwrap();
        assert_eq!(s.policy_revision().unwrap(), 0);
        let e = edit(
            &s,
            "domain:X.test",
            &Change::Set(Key::Reject, "9".into()),
            None,
            "root",
            5,
        )
        .unwrap();
        assert_eq!(e.scope, "domain:x.test");
        assert_eq!(e.revision, 1);
        assert_eq!(e.rule.as_ref().unwrap().by, "root");
        let err = edit(
            &s,
            "domain:x.test",
            &Change::Set(Key::Quarantine, "10".into()),
            None,
            "root",
            6,
        );
        assert!(matches!(err, Err(PolicyError::Invalid(_))));
        assert_eq!(s.policy_revision().unwrap(), 1);
        let scope = Scope::parse("domain:x.test", None).unwrap();
        assert_eq!(s.policy(&scope).unwrap().unwrap().reject, Some(9.0));
        edit(
            &s,
            "domain:x.test",
            &Change::Unset(Key::Reject, None),
            None,
            "root",
            7,
        )
        .unwrap();
        assert!(s.policies().unwrap().is_empty());
        assert_eq!(s.policy_revision().unwrap(), 2);
        let log = s.actions(10).unwrap();
        assert_eq!(log.len(), 2);
        assert!(
            log.iter()
                .any(|a| a.what == "policy-set" && a.detail == "domain:x.test reject 9")
        );
        assert!(log.iter().any(|a| a.what == "policy-unset"));
    }
}
