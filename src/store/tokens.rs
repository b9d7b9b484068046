//! API tokens: only their hashes are stored; the token itself is shown once.
//! A token can expire and be revoked; a name is unique among live tokens.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use time::OffsetDateTime;

use super::{Store, StoreError, from_ms, to_ms};

/// What a token may do. Ordered: each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Scrapes `/metrics` and nothing else (a Prometheus server's token).
    Metrics,
    /// Reads everything; real numbers are shown masked.
    Viewer,
    /// Reads and changes everything; sees real numbers.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Metrics => "metrics",
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    pub(in crate::store) fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "metrics" => Ok(Role::Metrics),
            "viewer" => Ok(Role::Viewer),
            "admin" => Ok(Role::Admin),
            other => Err(StoreError::Corrupt(format!("token role {other:?}"))),
        }
    }
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRecord {
    /// The token's number, for `token revoke ID` and `DELETE /api/v1/tokens/{id}`.
    pub id: i64,
    pub name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// When the token stops working by itself, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenRecord {
    /// `live`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "live"
        }
    }
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// The token's hash; the token itself is never stored.
    pub hash: String,
    pub expires_at: Option<OffsetDateTime>,
    /// Who creates it (`cli`, a token name), for the audit trail.
    pub actor: String,
}

/// Which token to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    /// By number only (`DELETE /api/v1/tokens/{id}`).
    Id(i64),
    /// The live token of that name, else the one of that number (the shell's
    /// `token revoke NAME|ID`).
    NameOrId(String),
}

impl std::fmt::Display for TokenRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenRef::Id(id) => write!(f, "{id}"),
            TokenRef::NameOrId(which) => write!(f, "{which}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named {0:?} exists already (revoke it first to replace it)")]
    NameTaken(String),
    #[error("token names are 1 to 64 letters, digits, '-', '_' or '.'; got {0:?}")]
    BadName(String),
    #[error("no live token named or numbered {0:?}")]
    NotFound(String),
    #[error("the expiry must be in the future")]
    ExpiryPast,
    #[error(transparent)]
    Store(#[from] StoreError),
}

const COLUMNS: &str =
    "id, name, role, created_ms, last_used_ms, expires_ms, revoked_ms FROM api_tokens";

fn record(row: &Row<'_>) -> Result<TokenRecord, StoreError> {
    let role: String = row.get(2)?;
    let time = |index| -> Result<Option<OffsetDateTime>, StoreError> {
        row.get::<_, Option<i64>>(index)?.map(from_ms).transpose()
    };
    Ok(TokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: Role::parse(&role)?,
        created_at: from_ms(row.get(3)?)?,
        last_used_at: time(4)?,
        expires_at: time(5)?,
        revoked_at: time(6)?,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Store {
    /// Stores a new token's hash under `name`, never expiring.
    pub async fn create_token(
        &self,
        name: String,
        role: Role,
        hash: String,
        now: OffsetDateTime,
    ) -> Result<TokenRecord, TokenError> {
        let new = NewToken {
            name,
            role,
            hash,
            expires_at: None,
            actor: "cli".into(),
        };
        self.add_token(new, now).await
    }

    /// Stores a new token's hash.
    pub async fn add_token(
        &self,
        new: NewToken,
        now: OffsetDateTime,
    ) -> Result<TokenRecord, TokenError> {
        if !valid_name(&new.name) {
            return Err(TokenError::BadName(new.name));
        }
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(TokenError::ExpiryPast);
        }
        if let Some(pg) = &self.pg {
            return pg.add_token(new, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let taken: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM api_tokens \
                     WHERE name = ?1 AND revoked_ms IS NULL)",
                )?
                .query_row(params![new.name], |row| row.get(0))?;
            if taken {
                return Ok(Err(TokenError::NameTaken(new.name)));
            }
            tx.prepare_cached(
                "INSERT INTO api_tokens (name, role, hash, created_ms, expires_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                new.name,
                new.role.as_str(),
                new.hash,
                to_ms(now),
                new.expires_at.map(to_ms)
            ])?;
            let id = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO audit (at_ms, actor, action, object, detail) \
                     VALUES (?1, ?2, 'token.create', ?3, ?4)",
            )?
            .execute(params![to_ms(now), new.actor, new.name, new.role.as_str()])?;
            tx.commit()?;
            Ok(Ok(TokenRecord {
                id,
                name: new.name,
                role: new.role,
                created_at: now,
                last_used_at: None,
                expires_at: new.expires_at,
                revoked_at: None,
            }))
        })
        .await?
    }

    /// The name and role of the live token with this hash, marking it used.
    /// A revoked or expired token is `None`.
    pub async fn token_by_hash(
        &self,
        hash: String,
        now: OffsetDateTime,
    ) -> Result<Option<(String, Role)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.token_by_hash(hash, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let found: Option<(i64, String, String, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT id, name, role, last_used_ms FROM api_tokens WHERE hash = ?1 \
                     AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?2)",
                )?
                .query_row(params![hash, now], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .optional()?;
            let Some((id, name, role, last_used)) = found else {
                return Ok(None);
            };
            // Last use to the second is enough, and spares a write per request.
            if last_used.is_none_or(|at| now - at >= 1000) {
                conn.prepare_cached("UPDATE api_tokens SET last_used_ms = ?2 WHERE id = ?1")?
                    .execute(params![id, now])?;
            }
            Ok(Some((name, Role::parse(&role)?)))
        })
        .await
    }

    /// Whether the token with this hash still works at `now` (read beside
    /// the writer: an open event stream asks every second).
    pub async fn token_is_live(&self, hash: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.token_is_live(hash.to_string(), now).await;
        }
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE hash = ?1 \
                     AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?2))",
                )?
                .query_row(params![hash, to_ms(now)], |row| row.get(0))?)
        })
    }

    /// Every live token (names and roles, never the tokens), by name.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.tokens(false, OffsetDateTime::now_utc()).await;
        }
        let now = to_ms(OffsetDateTime::now_utc());
        self.call(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} WHERE revoked_ms IS NULL \
                 AND (expires_ms IS NULL OR expires_ms > ?1) ORDER BY name, id"
            ))?;
            let mut rows = statement.query(params![now])?;
            let mut tokens = Vec::new();
            while let Some(row) = rows.next()? {
                tokens.push(record(row)?);
            }
            Ok(tokens)
        })
        .await
    }

    /// Every token ever created, revoked and expired ones too, by name.
    pub async fn all_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.tokens(true, OffsetDateTime::now_utc()).await;
        }
        self.call(|conn| {
            let mut statement =
                conn.prepare_cached(&format!("SELECT {COLUMNS} ORDER BY name, id"))?;
            let mut rows = statement.query([])?;
            let mut tokens = Vec::new();
            while let Some(row) = rows.next()? {
                tokens.push(record(row)?);
            }
            Ok(tokens)
        })
        .await
    }

    /// Revokes a live token: from now on it is refused everywhere.
    pub async fn revoke_token(
        &self,
        which: TokenRef,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<TokenRecord, TokenError> {
        if let Some(pg) = &self.pg {
            return pg.revoke_token(which, actor, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let (name, id) = match &which {
                TokenRef::Id(id) => (None, Some(*id)),
                TokenRef::NameOrId(text) => (Some(text.clone()), text.parse::<i64>().ok()),
            };
            let id: Option<i64> = tx
                .prepare_cached(
                    "SELECT id FROM api_tokens WHERE revoked_ms IS NULL \
                     AND (name = ?1 OR id = ?2) ORDER BY name IS ?1 DESC LIMIT 1",
                )?
                .query_row(params![name, id], |row| row.get(0))
                .optional()?;
            let Some(id) = id else {
                return Ok(Err(TokenError::NotFound(which.to_string())));
            };
            tx.prepare_cached("UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1")?
                .execute(params![id, now])?;
            let revoked = tx
                .prepare_cached(&format!("SELECT {COLUMNS} WHERE id = ?1"))?
                .query_row(params![id], |row| Ok(record(row)))??;
            tx.prepare_cached(
                "INSERT INTO audit (at_ms, actor, action, object, detail) \
                     VALUES (?1, ?2, 'token.revoke', ?3, ?4)",
            )?
            .execute(params![now, actor, revoked.name, id.to_string()])?;
            tx.commit()?;
            Ok(Ok(revoked))
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    fn token(name: &str, hash: &str, expires_at: Option<OffsetDateTime>) -> NewToken {
        NewToken {
            name: name.into(),
            role: Role::Viewer,
            hash: hash.into(),
            expires_at,
            actor: "test".into(),
        }
    }

    #[tokio::test]
    async fn a_revoked_token_is_refused_and_its_name_can_be_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("simmask.db")).unwrap();
        let first = store
            .add_token(token("ops", "h1", None), NOW)
            .await
            .unwrap();
        assert!(
            store
                .token_by_hash("h1".into(), NOW)
                .await
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            store.add_token(token("ops", "h2", None), NOW).await,
            Err(TokenError::NameTaken(_))
        ));
        let revoked = store
            .revoke_token(TokenRef::NameOrId("ops".into()), "test".into(), NOW)
            .await
            .unwrap();
        assert_eq!(revoked.id, first.id);
        assert_eq!(revoked.state(NOW), "revoked");
        assert_eq!(store.token_by_hash("h1".into(), NOW).await.unwrap(), None);
        assert!(!store.token_is_live("h1", NOW).await.unwrap());
        let second = store
            .add_token(token("ops", "h2", None), NOW)
            .await
            .unwrap();
        // By number, the old one is already gone; the new one goes.
        assert!(matches!(
            store
                .revoke_token(TokenRef::Id(first.id), "test".into(), NOW)
                .await,
            Err(TokenError::NotFound(_))
        ));
        store
            .revoke_token(
                TokenRef::NameOrId(second.id.to_string()),
                "test".into(),
                NOW,
            )
            .await
            .unwrap();
        assert!(store.tokens().await.unwrap().is_empty());
        assert_eq!(store.all_tokens().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_from_its_expiry_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("simmask.db")).unwrap();
        let expiry = NOW + time::Duration::hours(1);
        store
            .add_token(token("ci", "h", Some(expiry)), NOW)
            .await
            .unwrap();
        assert!(
            store
                .token_by_hash("h".into(), NOW)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .token_is_live("h", expiry - time::Duration::milliseconds(1))
                .await
                .unwrap()
        );
        assert_eq!(store.token_by_hash("h".into(), expiry).await.unwrap(), None);
        assert!(!store.token_is_live("h", expiry).await.unwrap());
        assert!(matches!(
            store.add_token(token("old", "h0", Some(NOW)), NOW).await,
            Err(TokenError::ExpiryPast)
        ));
    }
}
