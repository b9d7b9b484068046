//! API tokens: only their hashes are stored; the token itself is shown once.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

use super::{Store, StoreError, from_ms, to_ms};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything; real numbers are shown masked.
    Viewer,
    /// Reads and changes everything; sees real numbers.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "admin" => Ok(Role::Admin),
            other => Err(StoreError::Corrupt(format!("token role {other:?}"))),
        }
    }
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named {0:?} exists already")]
    NameTaken(String),
    #[error("token names are 1 to 64 letters, digits, '-', '_' or '.'; got {0:?}")]
    BadName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Stores a new token's hash under `name`.
    pub async fn create_token(
        &self,
        name: String,
        role: Role,
        hash: String,
        now: OffsetDateTime,
    ) -> Result<TokenRecord, TokenError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(TokenError::BadName(name));
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let taken: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = ?1)")?
                .query_row(params![name], |row| row.get(0))?;
            if taken {
                return Ok(Err(TokenError::NameTaken(name)));
            }
            tx.prepare_cached(
                "INSERT INTO api_tokens (name, role, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![name, role.as_str(), hash, to_ms(now)])?;
            tx.prepare_cached(
                "INSERT INTO audit (at_ms, actor, action, object, detail) \
                     VALUES (?1, 'cli', 'token.create', ?2, ?3)",
            )?
            .execute(params![to_ms(now), name, role.as_str()])?;
            tx.commit()?;
            Ok(Ok(TokenRecord {
                name,
                role,
                created_at: now,
                last_used_at: None,
            }))
        })
        .await?
    }

    /// The name and role of the live token with this hash, marking it used.
    pub async fn token_by_hash(
        &self,
        hash: String,
        now: OffsetDateTime,
    ) -> Result<Option<(String, Role)>, StoreError> {
        self.call(move |conn| {
            let found: Option<(String, String)> = conn
                .prepare_cached(
                    "SELECT name, role FROM api_tokens WHERE hash = ?1 AND revoked_ms IS NULL",
                )?
                .query_row(params![hash], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let Some((name, role)) = found else {
                return Ok(None);
            };
            conn.prepare_cached("UPDATE api_tokens SET last_used_ms = ?2 WHERE hash = ?1")?
                .execute(params![hash, to_ms(now)])?;
            Ok(Some((name, Role::parse(&role)?)))
        })
        .await
    }

    /// Every live token (names and roles, never the tokens).
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.call(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT name, role, created_ms, last_used_ms FROM api_tokens \
                 WHERE revoked_ms IS NULL ORDER BY name",
            )?;
            let mut rows = statement.query([])?;
            let mut tokens = Vec::new();
            while let Some(row) = rows.next()? {
                let role: String = row.get(1)?;
                tokens.push(TokenRecord {
                    name: row.get(0)?,
                    role: Role::parse(&role)?,
                    created_at: from_ms(row.get(2)?)?,
                    last_used_at: row.get::<_, Option<i64>>(3)?.map(from_ms).transpose()?,
                });
            }
            Ok(tokens)
        })
        .await
    }
}
