//! `simmask migrate`: one appliance's SQLite store moved into a fleet's
//! PostgreSQL database, in one transaction.
//!
//! The SQLite file is first copied with SQLite's online backup (one
//! consistent snapshot, the source never written), the copy brought to
//! this simmask's schema, and then every table that exists in both schemas
//! is copied in batches (`INSERT … SELECT FROM unnest(…)`). Numeric ids
//! (interactions, their events, the outbox, tokens, the audit trail) are
//! shifted past the ids the database has already handed out, in a range
//! reserved on its sequences first, so a database some appliance already
//! writes to takes the rows without a collision. A row that would break a
//! rule (an open session whose participant already has one on that proxy,
//! a live token name taken) fails the whole transaction: nothing is moved.
//! A marker row in `sqlite_imports`, written in the same transaction,
//! refuses a second migration into the same database.

use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

use super::super::{StoreError, to_ms};
use super::migrate_tables::{BATCH, Kind, NOT_MOVED, TABLES};
use super::sessions::audit;
use super::{PgStore, pg_error};

/// An arbitrary constant naming the migration's advisory lock.
const MIGRATE_LOCK: i64 = 0x5349_4d4d_4153_4b02;

/// What a migration moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// The fleet database, without its password.
    pub database: String,
    /// The appliance the SIMs and modems now belong to.
    pub appliance: String,
    /// The SQLite file's schema version (after bringing the copy up to
    /// date: the source itself is never written).
    pub sqlite_schema: usize,
    /// Rows moved, per table, in the order moved.
    pub moved: Vec<TableCount>,
    /// Rows left behind, per table that is not on PostgreSQL yet, and why.
    pub not_moved: Vec<LeftBehind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftBehind {
    pub table: String,
    pub rows: u64,
    pub reason: String,
}

/// One batch of one table's rows, column by column.
enum Column {
    Text(Vec<Option<String>>),
    BigInt(Vec<Option<i64>>),
    Int(Vec<Option<i32>>),
    SmallInt(Vec<Option<i16>>),
    Bool(Vec<Option<bool>>),
}

impl Column {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Text => Column::Text(Vec::with_capacity(BATCH)),
            Kind::BigInt => Column::BigInt(Vec::with_capacity(BATCH)),
            Kind::Int => Column::Int(Vec::with_capacity(BATCH)),
            Kind::SmallInt => Column::SmallInt(Vec::with_capacity(BATCH)),
            Kind::Bool => Column::Bool(Vec::with_capacity(BATCH)),
        }
    }

    fn push(&mut self, value: ValueRef<'_>, what: &str) -> Result<(), StoreError> {
        let integer = |value: ValueRef<'_>| -> Result<Option<i64>, StoreError> {
            match value {
                ValueRef::Null => Ok(None),
                ValueRef::Integer(i) => Ok(Some(i)),
                other => Err(StoreError::Corrupt(format!(
                    "{what}: expected an integer, found {:?}",
                    other.data_type()
                ))),
            }
        };
        match self {
            Column::Text(values) => values.push(match value {
                ValueRef::Null => None,
                ValueRef::Text(text) => Some(String::from_utf8_lossy(text).into_owned()),
                ValueRef::Integer(i) => Some(i.to_string()),
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "{what}: expected text, found {:?}",
                        other.data_type()
                    )));
                }
            }),
            Column::BigInt(values) => values.push(integer(value)?),
            Column::Int(values) => values.push(
                integer(value)?
                    .map(|i| {
                        i32::try_from(i)
                            .map_err(|_| StoreError::Corrupt(format!("{what}: {i} out of range")))
                    })
                    .transpose()?,
            ),
            Column::SmallInt(values) => values.push(
                integer(value)?
                    .map(|i| {
                        i16::try_from(i)
                            .map_err(|_| StoreError::Corrupt(format!("{what}: {i} out of range")))
                    })
                    .transpose()?,
            ),
            Column::Bool(values) => values.push(integer(value)?.map(|i| i != 0)),
        }
        Ok(())
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Text(values) => values,
            Column::BigInt(values) => values,
            Column::Int(values) => values,
            Column::SmallInt(values) => values,
            Column::Bool(values) => values,
        }
    }
}

/// A batch read from SQLite for the table at `table` in [`TABLES`].
struct Batch {
    table: usize,
    columns: Vec<Column>,
    rows: usize,
}

/// Copies `source` into a temporary file with SQLite's online backup and
/// brings the copy to this simmask's schema; refuses a file that is not a
/// simmask store or is newer than this simmask.
fn snapshot(source: &Path, dir: &Path) -> Result<(std::path::PathBuf, usize), StoreError> {
    if !source.is_file() {
        return Err(StoreError::NotABackup {
            path: source.display().to_string(),
            reason: "no such file".into(),
        });
    }
    let copy = dir.join("snapshot.db");
    {
        // Read-only: the source, a live appliance's store, is not written.
        let from = Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source_error| StoreError::Open {
                path: source.display().to_string(),
                source: source_error,
            })?;
        from.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut to = Connection::open(&copy)?;
        rusqlite::backup::Backup::new(&from, &mut to)?.step(-1)?;
    }
    let found = super::super::Store::check_backup(&copy).map_err(|error| match error {
        StoreError::NotABackup { reason, .. } => StoreError::NotABackup {
            path: source.display().to_string(),
            reason,
        },
        other => other,
    })?;
    let mut conn = Connection::open(&copy)?;
    super::super::migrations::migrate(&mut conn)?;
    Ok((copy, found))
}

/// Reads every table of [`TABLES`] from `copy` in batches into `batches`,
/// with the placeholders of their SQL replaced by `values`.
fn read_tables(
    copy: &Path,
    values: &[(&'static str, i64)],
    batches: &tokio::sync::mpsc::Sender<Result<Batch, StoreError>>,
) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    for (index, table) in TABLES.iter().enumerate() {
        let mut expressions: Vec<String> = Vec::new();
        for (_, _, expression) in table.columns {
            let mut expression = (*expression).to_string();
            for (name, value) in values {
                expression = expression.replace(&format!("{{{name}}}"), &value.to_string());
            }
            expressions.push(expression);
        }
        let sql = format!("SELECT {} FROM {}", expressions.join(", "), table.name);
        let mut statement = conn.prepare(&sql)?;
        let mut rows = statement.query([])?;
        let fresh = || -> Vec<Column> {
            table
                .columns
                .iter()
                .map(|(_, kind, _)| Column::new(*kind))
                .collect()
        };
        let mut batch = Batch {
            table: index,
            columns: fresh(),
            rows: 0,
        };
        while let Some(row) = rows.next()? {
            for (i, column) in batch.columns.iter_mut().enumerate() {
                let what = format!("{}.{}", table.name, table.columns[i].0);
                column.push(row.get_ref(i)?, &what)?;
            }
            batch.rows += 1;
            if batch.rows == BATCH {
                let full = std::mem::replace(
                    &mut batch,
                    Batch {
                        table: index,
                        columns: fresh(),
                        rows: 0,
                    },
                );
                if batches.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
        }
        if batch.rows > 0 && batches.blocking_send(Ok(batch)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The number of rows of each table left behind, when the table has any.
fn left_behind(copy: &Path) -> Result<Vec<LeftBehind>, StoreError> {
    let conn = Connection::open_with_flags(copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut left = Vec::new();
    for (table, reason) in NOT_MOVED {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |row| row.get(0),
        )?;
        if !exists {
            continue;
        }
        let rows: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })?;
        if rows > 0 {
            left.push(LeftBehind {
                table: (*table).to_string(),
                rows: u64::try_from(rows).unwrap_or(0),
                reason: (*reason).to_string(),
            });
        }
    }
    Ok(left)
}

/// The largest id of each shifted table in the copy, and its event run.
/// Each shifted table, its placeholder, and its largest id.
type Maxima = Vec<(&'static str, &'static str, i64)>;

fn maxima(copy: &Path) -> Result<(Maxima, i64), StoreError> {
    let conn = Connection::open_with_flags(copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut maxima = Vec::new();
    for table in TABLES {
        if let Some(shift) = table.shift {
            let max: i64 = conn.query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {}", table.name),
                [],
                |row| row.get(0),
            )?;
            maxima.push((table.name, shift, max));
        }
    }
    let run: i64 = conn
        .query_row("SELECT COALESCE(MAX(run), 0) FROM event_runs", [], |row| {
            row.get(0)
        })
        .unwrap_or(0);
    Ok((maxima, run))
}

/// Refused: this database has had an appliance's store moved in already.
fn already(source: String, appliance: String, at_ms: i64) -> StoreError {
    let at = super::super::from_ms(at_ms)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at_ms.to_string());
    StoreError::Conflict {
        code: "already_migrated",
        message: format!(
            "this database already holds a migrated store ({source}, appliance {appliance:?}, \
             at {at}): `simmask migrate` runs once per fleet database; \
             a second run would duplicate its interactions and audit trail"
        ),
    }
}

impl PgStore {
    /// Moves the SQLite store at `source` into this database as this
    /// appliance's data, in one transaction.
    pub(in crate::store) async fn migrate_from_sqlite(
        &self,
        source: &Path,
    ) -> Result<MigrationReport, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("simmask-migrate")
            .tempdir()
            .map_err(|e| StoreError::Corrupt(format!("a temporary directory: {e}")))?;
        let source_path = source.to_path_buf();
        let dir_path = dir.path().to_path_buf();
        let (copy, sqlite_schema) =
            tokio::task::spawn_blocking(move || snapshot(&source_path, &dir_path))
                .await
                .map_err(|e| StoreError::Corrupt(format!("reading the SQLite file: {e}")))??;
        let (maxima, run) = maxima(&copy)?;
        let not_moved = left_behind(&copy)?;

        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .await
            .map_err(pg_error)?;
        if let Some(row) = tx
            .query_opt(
                "SELECT i.source, a.name, i.at_ms FROM sqlite_imports i \
                 JOIN appliances a ON a.id = i.appliance_id ORDER BY i.id LIMIT 1",
                &[],
            )
            .await
            .map_err(pg_error)?
        {
            return Err(already(row.get(0), row.get(1), row.get(2)));
        }
        // Reserve each shifted table's range on its sequence (outside the
        // transaction, as sequences are), past every id handed out.
        let mut values: Vec<(&'static str, i64)> = vec![("appliance", self.appliance_id())];
        for (table, shift, max) in &maxima {
            let offset: i64 = tx
                .query_one(
                    &format!(
                        "SELECT GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), \
                         (SELECT CASE WHEN is_called THEN last_value ELSE 0 END \
                          FROM {table}_id_seq))"
                    ),
                    &[],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            if *max > 0 {
                tx.execute(
                    &format!("SELECT setval('{table}_id_seq', $1)"),
                    &[&(offset + max)],
                )
                .await
                .map_err(pg_error)?;
            }
            values.push((shift, offset));
        }

        let (sender, mut batches) = tokio::sync::mpsc::channel(2);
        let reader_copy = copy.clone();
        let reader_values = values.clone();
        let reader = tokio::task::spawn_blocking(move || {
            if let Err(error) = read_tables(&reader_copy, &reader_values, &sender) {
                let _ = sender.blocking_send(Err(error));
            }
        });
        let mut moved: Vec<TableCount> = TABLES
            .iter()
            .map(|t| TableCount {
                table: t.name.to_string(),
                rows: 0,
            })
            .collect();
        let mut statements: Vec<Option<tokio_postgres::Statement>> = vec![None; TABLES.len()];
        while let Some(batch) = batches.recv().await {
            let batch = batch?;
            let table = &TABLES[batch.table];
            if statements[batch.table].is_none() {
                let names: Vec<&str> = table.columns.iter().map(|(name, _, _)| *name).collect();
                let arrays: Vec<String> = table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, kind, _))| format!("${}::{}", i + 1, kind.array()))
                    .collect();
                let sql = format!(
                    "INSERT INTO {} ({}) SELECT * FROM unnest({}) {}",
                    table.name,
                    names.join(", "),
                    arrays.join(", "),
                    table.on_conflict
                );
                let statement = tx.prepare(&sql).await.map_err(pg_error)?;
                statements[batch.table] = Some(statement);
            }
            let parameters: Vec<&(dyn ToSql + Sync)> =
                batch.columns.iter().map(Column::as_sql).collect();
            let Some(statement) = &statements[batch.table] else {
                continue;
            };
            tx.execute(statement, &parameters)
                .await
                .map_err(|error| refused(table.name, error))?;
            moved[batch.table].rows += batch.rows as u64;
        }
        reader
            .await
            .map_err(|e| StoreError::Corrupt(format!("reading the SQLite file: {e}")))?;

        // Event ids keep growing past the appliance's own runs.
        tx.execute(
            "SELECT setval('event_runs', GREATEST((SELECT last_value FROM event_runs), $1))",
            &[&run.max(1)],
        )
        .await
        .map_err(pg_error)?;
        let now = OffsetDateTime::now_utc();
        let shown = source.display().to_string();
        let summary = serde_json::to_string(&moved).unwrap_or_default();
        tx.execute(
            "INSERT INTO sqlite_imports (appliance_id, source, sqlite_schema, at_ms, moved) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &self.appliance_id(),
                &shown,
                &i32::try_from(sqlite_schema).unwrap_or(i32::MAX),
                &to_ms(now),
                &summary,
            ],
        )
        .await
        .map_err(pg_error)?;
        audit(&tx, self, now, "cli", "store.migrate", &shown, &summary).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(MigrationReport {
            database: self.shown().to_string(),
            appliance: self.appliance().to_string(),
            sqlite_schema,
            moved,
            not_moved,
        })
    }
}

/// A batch the database refused: a rule of the fleet's (the masking rule,
/// a live token's name, a proxy number another SIM has) says which.
fn refused(table: &str, error: tokio_postgres::Error) -> StoreError {
    let Some(db) = error.as_db_error() else {
        return pg_error(error);
    };
    let message = match db.constraint() {
        Some("participants_open_route") => format!(
            "{table}: a participant of an open session here already has an open session on the \
             same proxy in the fleet database (the masking rule); nothing was moved"
        ),
        Some("participants_open_hub_code") => format!(
            "{table}: a hub's open session here has the code (or its keys) of another open \
             session of the hub on the same proxy in the fleet database; nothing was moved"
        ),
        Some("api_tokens_live_name") => format!(
            "{table}: a live token of the same name exists in the fleet database; revoke one of \
             them first; nothing was moved"
        ),
        Some(constraint) => format!(
            "{table}: the fleet database refused a row ({constraint}: {}); nothing was moved",
            db.message()
        ),
        None => format!(
            "{table}: the fleet database refused a row ({}); nothing was moved",
            db.message()
        ),
    };
    StoreError::Conflict {
        code: "migration_refused",
        message,
    }
}
