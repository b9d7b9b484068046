//! Bulk import of sessions onto known proxies on PostgreSQL: one
//! transaction, all or nothing, as on SQLite. The partial unique index
//! enforces the masking rule row by row, whichever appliance imports.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::super::import::ImportedSession;
use super::super::{StoreError, to_ms};
use super::allocate::rail;
use super::sessions::audit;
use super::{PgStore, in_transaction, pg_error};

impl PgStore {
    pub(in crate::store) async fn import_sessions(
        &self,
        sessions: Vec<ImportedSession>,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let now_ms = to_ms(now);
        in_transaction!(self, |tx| {
            async {
                // Every proxy named must be in the pool: a precise error
                // rather than the foreign key's.
                let proxies: Vec<String> = sessions
                    .iter()
                    .map(|s| s.proxy_iccid.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let known: BTreeSet<String> = tx
                    .query("SELECT iccid FROM sims WHERE iccid = ANY($1)", &[&proxies])
                    .await
                    .map_err(pg_error)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                if let Some(missing) = proxies.iter().find(|p| !known.contains(*p)) {
                    return Err(StoreError::NoSuchSim(missing.clone()));
                }
                let session = tx
                    .prepare(
                        "INSERT INTO sessions (id, proxy_iccid, mode, status, label, opened_ms, \
                         expires_ms, last_activity_ms) VALUES ($1, $2, $3, 'open', $4, $5, $6, $5)",
                    )
                    .await
                    .map_err(pg_error)?;
                let participant = tx
                    .prepare(
                        "INSERT INTO participants (session_id, position, number, proxy_iccid, open) \
                         VALUES ($1, $2, $3, $4, TRUE)",
                    )
                    .await
                    .map_err(pg_error)?;
                let mut ids = Vec::with_capacity(sessions.len());
                for imported in &sessions {
                    let id = format!("ses_{:016x}", rand::random::<u64>());
                    tx.execute(
                        &session,
                        &[
                            &id,
                            &imported.proxy_iccid,
                            &imported.mode.as_str(),
                            &imported.label,
                            &now_ms,
                            &imported.expires_at.map(to_ms),
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
                    for (position, number) in imported.participants.iter().enumerate() {
                        let position = i16::try_from(position).unwrap_or(0);
                        tx.execute(
                            &participant,
                            &[&id, &position, &number.e164(), &imported.proxy_iccid],
                        )
                        .await
                        .map_err(rail)?;
                    }
                    ids.push(id);
                }
                audit(
                    &tx,
                    self,
                    now,
                    "import",
                    "session.import",
                    "*",
                    &ids.len().to_string(),
                )
                .await?;
                Ok(ids)
            }
            .await
        })
    }
}
