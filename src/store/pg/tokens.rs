//! API tokens on PostgreSQL: one set for the whole fleet, so a token made
//! through any appliance's API or shell works on every one, and a revoked
//! or expired token is refused everywhere. Only hashes are stored, as on
//! SQLite; a name is unique among live tokens by a partial unique index.

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::super::tokens::{NewToken, Role, TokenError, TokenRecord, TokenRef};
use super::super::{StoreError, from_ms, to_ms};
use super::sessions::audit;
use super::{PgStore, in_transaction, pg_error};

const COLUMNS: &str =
    "id, name, role, created_ms, last_used_ms, expires_ms, revoked_ms FROM api_tokens";

/// The live-token name index's constraint (schema v1).
const LIVE_NAME_INDEX: &str = "api_tokens_live_name";

fn record(row: &Row) -> Result<TokenRecord, StoreError> {
    let time = |index: usize| -> Result<Option<OffsetDateTime>, StoreError> {
        row.try_get::<_, Option<i64>>(index)
            .map_err(pg_error)?
            .map(from_ms)
            .transpose()
    };
    let role: String = row.try_get(2).map_err(pg_error)?;
    Ok(TokenRecord {
        id: row.try_get(0).map_err(pg_error)?,
        name: row.try_get(1).map_err(pg_error)?,
        role: Role::parse(&role)?,
        created_at: from_ms(row.try_get(3).map_err(pg_error)?)?,
        last_used_at: time(4)?,
        expires_at: time(5)?,
        revoked_at: time(6)?,
    })
}

impl PgStore {
    /// Stores a checked new token (name and expiry already validated).
    pub(in crate::store) async fn add_token(
        &self,
        new: NewToken,
        now: OffsetDateTime,
    ) -> Result<TokenRecord, TokenError> {
        let result: Result<Result<TokenRecord, TokenError>, StoreError> =
            in_transaction!(self, |tx| {
                async {
                    let taken: bool = tx
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM api_tokens \
                             WHERE name = $1 AND revoked_ms IS NULL)",
                            &[&new.name],
                        )
                        .await
                        .map_err(pg_error)?
                        .get(0);
                    if taken {
                        return Ok(Err(TokenError::NameTaken(new.name.clone())));
                    }
                    let inserted = tx
                        .query_one(
                            "INSERT INTO api_tokens (name, role, hash, created_ms, expires_ms) \
                             VALUES ($1, $2, $3, $4, $5) RETURNING id",
                            &[
                                &new.name,
                                &new.role.as_str(),
                                &new.hash,
                                &to_ms(now),
                                &new.expires_at.map(to_ms),
                            ],
                        )
                        .await;
                    let id: i64 = match inserted {
                        Ok(row) => row.get(0),
                        // Made at the same instant through another appliance:
                        // the index decides, as the check above would have.
                        Err(error)
                            if error
                                .as_db_error()
                                .and_then(|db| db.constraint())
                                .is_some_and(|c| c == LIVE_NAME_INDEX) =>
                        {
                            return Ok(Err(TokenError::NameTaken(new.name.clone())));
                        }
                        Err(error) => return Err(pg_error(error)),
                    };
                    audit(
                        &tx,
                        self,
                        now,
                        &new.actor,
                        "token.create",
                        &new.name,
                        new.role.as_str(),
                    )
                    .await?;
                    Ok(Ok(TokenRecord {
                        id,
                        name: new.name.clone(),
                        role: new.role,
                        created_at: now,
                        last_used_at: None,
                        expires_at: new.expires_at,
                        revoked_at: None,
                    }))
                }
                .await
            });
        result?
    }

    /// The name and role of the live token with this hash, marking it used
    /// (to the second: a write per request would be wasted).
    pub(in crate::store) async fn token_by_hash(
        &self,
        hash: String,
        now: OffsetDateTime,
    ) -> Result<Option<(String, Role)>, StoreError> {
        let now = to_ms(now);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id, name, role, last_used_ms FROM api_tokens WHERE hash = $1 \
                 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $2)",
            )
            .await
            .map_err(pg_error)?;
        let Some(row) = client
            .query_opt(&statement, &[&hash, &now])
            .await
            .map_err(pg_error)?
        else {
            return Ok(None);
        };
        let id: i64 = row.get(0);
        let last_used: Option<i64> = row.get(3);
        if last_used.is_none_or(|at| now - at >= 1000) {
            client
                .execute(
                    "UPDATE api_tokens SET last_used_ms = GREATEST(COALESCE(last_used_ms, 0), $2) \
                     WHERE id = $1",
                    &[&id, &now],
                )
                .await
                .map_err(pg_error)?;
        }
        let role: String = row.get(2);
        Ok(Some((row.get(1), Role::parse(&role)?)))
    }

    /// Whether the token with this hash still works at `now`.
    pub(in crate::store) async fn token_is_live(
        &self,
        hash: String,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE hash = $1 \
                 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $2))",
            )
            .await
            .map_err(pg_error)?;
        Ok(client
            .query_one(&statement, &[&hash, &to_ms(now)])
            .await
            .map_err(pg_error)?
            .get(0))
    }

    /// The tokens, live ones only unless `all`, by name.
    pub(in crate::store) async fn tokens(
        &self,
        all: bool,
        now: OffsetDateTime,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} WHERE $1 OR (revoked_ms IS NULL \
                     AND (expires_ms IS NULL OR expires_ms > $2)) ORDER BY name, id"
                ),
                &[&all, &to_ms(now)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(record).collect()
    }

    /// Revokes a live token, fleet-wide.
    pub(in crate::store) async fn revoke_token(
        &self,
        which: TokenRef,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<TokenRecord, TokenError> {
        let now_ms = to_ms(now);
        let (name, number) = match &which {
            TokenRef::Id(id) => (None, Some(*id)),
            TokenRef::NameOrId(text) => (Some(text.clone()), text.parse::<i64>().ok()),
        };
        let result: Result<Result<TokenRecord, TokenError>, StoreError> =
            in_transaction!(self, |tx| {
                async {
                    let found = tx
                        .query_opt(
                            "SELECT id FROM api_tokens WHERE revoked_ms IS NULL \
                             AND (name = $1 OR id = $2) \
                             ORDER BY (name IS NOT DISTINCT FROM $1) DESC LIMIT 1 FOR UPDATE",
                            &[&name, &number],
                        )
                        .await
                        .map_err(pg_error)?;
                    let Some(found) = found else {
                        return Ok(Err(TokenError::NotFound(which.to_string())));
                    };
                    let id: i64 = found.get(0);
                    let row = tx
                        .query_one(
                            &format!(
                                "UPDATE api_tokens SET revoked_ms = $2 WHERE id = $1 \
                                 RETURNING {}",
                                COLUMNS.trim_end_matches(" FROM api_tokens")
                            ),
                            &[&id, &now_ms],
                        )
                        .await
                        .map_err(pg_error)?;
                    let revoked = record(&row)?;
                    audit(
                        &tx,
                        self,
                        now,
                        &actor,
                        "token.revoke",
                        &revoked.name,
                        &id.to_string(),
                    )
                    .await?;
                    Ok(Ok(revoked))
                }
                .await
            });
        result?
    }
}
