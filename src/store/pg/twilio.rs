//! The Twilio Proxy facade's tables on PostgreSQL, one facade for the
//! fleet: a service, number or session made through any appliance's API is
//! every appliance's. The same calls as `store::twilio` on SQLite; a facade
//! session that has both participants opens the fleet's session in the same
//! transaction (the same allocation, locks and masking index as
//! `open_session`).

use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::super::relay::NewOutbound;
use super::super::sessions::{LiveSim, NewSession, SessionRecord};
use super::super::twilio::{
    ServiceSessionRef, TwilioNumber, TwilioParticipantRow, TwilioService, TwilioSessionRow,
};
use super::super::{StoreError, to_ms};
use super::relay::queue_in;
use super::{PgStore, in_transaction, pg_error};

type Tx<'a> = deadpool_postgres::Transaction<'a>;

const SERVICE_COLUMNS: &str = "sid, unique_name, default_ttl, callback_url, \
    intercept_callback_url, out_of_session_callback_url, number_selection_behavior, \
    geo_match_level, created_ms, updated_ms";

fn service_of(row: &Row) -> TwilioService {
    TwilioService {
        sid: row.get(0),
        unique_name: row.get(1),
        default_ttl: row.get(2),
        callback_url: row.get(3),
        intercept_callback_url: row.get(4),
        out_of_session_callback_url: row.get(5),
        number_selection_behavior: row.get(6),
        geo_match_level: row.get(7),
        created_ms: row.get(8),
        updated_ms: row.get(9),
    }
}

/// A number and its open sessions (counted on the open-sessions index).
const NUMBER_SELECT: &str = "SELECT n.iccid, s.msisdn, n.service_sid, n.is_reserved, \
    (SELECT COUNT(*) FROM sessions o WHERE o.proxy_iccid = n.iccid AND o.status = 'open'), \
    n.created_ms, n.updated_ms FROM twilio_numbers n JOIN sims s ON s.iccid = n.iccid";

fn number_of(row: &Row) -> TwilioNumber {
    TwilioNumber {
        iccid: row.get(0),
        msisdn: row.get(1),
        service_sid: row.get(2),
        is_reserved: row.get(3),
        in_use: row.get(4),
        created_ms: row.get(5),
        updated_ms: row.get(6),
    }
}

const SESSION_COLUMNS: &str = "sid, service_sid, session_id, unique_name, ttl, expiry_ms, mode, \
    closed_ms, deleted_ms, created_ms, updated_ms";

fn session_row_of(row: &Row) -> TwilioSessionRow {
    session_row_at(row, 0)
}

/// A session row whose columns start at `at`.
fn session_row_at(row: &Row, at: usize) -> TwilioSessionRow {
    TwilioSessionRow {
        sid: row.get(at),
        service_sid: row.get(at + 1),
        session_id: row.get(at + 2),
        unique_name: row.get(at + 3),
        ttl: row.get(at + 4),
        expiry_ms: row.get(at + 5),
        mode: row.get(at + 6),
        closed_ms: row.get(at + 7),
        deleted_ms: row.get(at + 8),
        created_ms: row.get(at + 9),
        updated_ms: row.get(at + 10),
    }
}

const PARTICIPANT_COLUMNS: &str = "sid, session_sid, position, identifier, friendly_name, \
    proxy_iccid, created_ms, deleted_ms";

fn participant_of(row: &Row) -> TwilioParticipantRow {
    TwilioParticipantRow {
        sid: row.get(0),
        session_sid: row.get(1),
        position: u8::try_from(row.get::<_, i16>(2)).unwrap_or(0),
        identifier: row.get(3),
        friendly_name: row.get(4),
        proxy_iccid: row.get(5),
        created_ms: row.get(6),
        deleted_ms: row.get(7),
    }
}

/// A unique constraint that the caller can name.
fn unique(error: tokio_postgres::Error, code: &'static str, message: &str) -> StoreError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return StoreError::Conflict {
            code,
            message: message.into(),
        };
    }
    pg_error(error)
}

/// Writes a facade session row; `on_conflict` is `""` or `ON CONFLICT DO
/// NOTHING`.
async fn insert_session(
    tx: &impl deadpool_postgres::GenericClient,
    on_conflict: &str,
    row: &TwilioSessionRow,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        &format!(
            "INSERT INTO twilio_sessions ({SESSION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) {on_conflict}"
        ),
        &[
            &row.sid,
            &row.service_sid,
            &row.session_id,
            &row.unique_name,
            &row.ttl,
            &row.expiry_ms,
            &row.mode,
            &row.closed_ms,
            &row.deleted_ms,
            &row.created_ms,
            &row.updated_ms,
        ],
    )
    .await
}

/// Writes a participant row; `on_conflict` as for [`insert_session`].
async fn write_participant(
    tx: &impl deadpool_postgres::GenericClient,
    on_conflict: &str,
    p: &TwilioParticipantRow,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        &format!(
            "INSERT INTO twilio_participants ({PARTICIPANT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) {on_conflict}"
        ),
        &[
            &p.sid,
            &p.session_sid,
            &i16::from(p.position),
            &p.identifier,
            &p.friendly_name,
            &p.proxy_iccid,
            &p.created_ms,
            &p.deleted_ms,
        ],
    )
    .await
}

async fn insert_participant(tx: &Tx<'_>, p: &TwilioParticipantRow) -> Result<(), StoreError> {
    write_participant(tx, "", p).await.map_err(|e| {
        unique(
            e,
            "participant_exists",
            "the session already has that participant",
        )
    })?;
    Ok(())
}

impl PgStore {
    /// Opens the fleet's session for a facade session that now has both
    /// participants, in the caller's transaction: the waiting numbers are
    /// forgotten (the session's participants hold them from now on).
    async fn complete(
        &self,
        tx: &Tx<'_>,
        session_sid: &str,
        new: NewSession,
        live: Vec<LiveSim>,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        // The caller's live SIMs are the service's usable numbers: only
        // those (as on SQLite, where the others count as not live). A
        // service's reserved numbers are left out of every other
        // allocation unless asked for by name (`new.proxy`).
        let among = live.iter().map(|sim| sim.iccid.clone()).collect();
        let record = self.allocate_in(tx, new, live, Some(among), now).await?;
        tx.execute(
            "UPDATE twilio_sessions SET session_id = $2, updated_ms = $3 WHERE sid = $1",
            &[&session_sid, &record.id, &to_ms(now)],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "UPDATE twilio_participants SET identifier = NULL, proxy_iccid = NULL \
             WHERE session_sid = $1",
            &[&session_sid],
        )
        .await
        .map_err(pg_error)?;
        Ok(record)
    }

    pub(in crate::store) async fn twilio_create_service(
        &self,
        service: TwilioService,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO twilio_services ({SERVICE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                &[
                    &service.sid,
                    &service.unique_name,
                    &service.default_ttl,
                    &service.callback_url,
                    &service.intercept_callback_url,
                    &service.out_of_session_callback_url,
                    &service.number_selection_behavior,
                    &service.geo_match_level,
                    &service.created_ms,
                    &service.updated_ms,
                ],
            )
            .await
            .map_err(|e| {
                unique(
                    e,
                    "unique_name_taken",
                    "another service has that unique_name",
                )
            })?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_update_service(
        &self,
        service: TwilioService,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE twilio_services SET unique_name = $2, default_ttl = $3, \
                 callback_url = $4, intercept_callback_url = $5, \
                 out_of_session_callback_url = $6, number_selection_behavior = $7, \
                 geo_match_level = $8, updated_ms = $9 WHERE sid = $1",
                &[
                    &service.sid,
                    &service.unique_name,
                    &service.default_ttl,
                    &service.callback_url,
                    &service.intercept_callback_url,
                    &service.out_of_session_callback_url,
                    &service.number_selection_behavior,
                    &service.geo_match_level,
                    &service.updated_ms,
                ],
            )
            .await
            .map_err(|e| {
                unique(
                    e,
                    "unique_name_taken",
                    "another service has that unique_name",
                )
            })?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_delete_service(
        &self,
        sid: String,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM twilio_services WHERE sid = $1", &[&sid])
            .await
            .map_err(pg_error)?
            > 0)
    }

    pub(in crate::store) async fn twilio_service(
        &self,
        key: String,
    ) -> Result<Option<TwilioService>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!(
                    "SELECT {SERVICE_COLUMNS} FROM twilio_services \
                     WHERE sid = $1 OR unique_name = $1 ORDER BY sid = $1 DESC LIMIT 1"
                ),
                &[&key],
            )
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(service_of))
    }

    pub(in crate::store) async fn twilio_services(
        &self,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<TwilioService>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                &format!(
                    "SELECT {SERVICE_COLUMNS} FROM twilio_services \
                     ORDER BY created_ms DESC, sid LIMIT $1 OFFSET $2"
                ),
                &[&page(limit), &page(offset)],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(service_of)
            .collect())
    }

    pub(in crate::store) async fn twilio_add_number(
        &self,
        service_sid: String,
        iccid: String,
        is_reserved: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO twilio_numbers (iccid, service_sid, is_reserved, created_ms, \
                 updated_ms) VALUES ($1, $2, $3, $4, $4)",
                &[&iccid, &service_sid, &is_reserved, &to_ms(now)],
            )
            .await
            .map_err(|e| {
                unique(
                    e,
                    "number_in_use",
                    "the number already belongs to a service",
                )
            })?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_update_number(
        &self,
        iccid: String,
        is_reserved: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE twilio_numbers SET is_reserved = $2, updated_ms = $3 WHERE iccid = $1",
                &[&iccid, &is_reserved, &to_ms(now)],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_remove_number(
        &self,
        iccid: String,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM twilio_numbers WHERE iccid = $1", &[&iccid])
            .await
            .map_err(pg_error)?
            > 0)
    }

    pub(in crate::store) async fn twilio_numbers(
        &self,
        service_sid: String,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<TwilioNumber>, StoreError> {
        // `LIMIT NULL` is no limit.
        let limit = (limit > 0).then(|| page(limit));
        let client = self.client().await?;
        Ok(client
            .query(
                &format!(
                    "{NUMBER_SELECT} WHERE n.service_sid = $1 \
                     ORDER BY n.created_ms, n.iccid LIMIT $2 OFFSET $3"
                ),
                &[&service_sid, &limit, &page(offset)],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(number_of)
            .collect())
    }

    pub(in crate::store) async fn twilio_number(
        &self,
        iccid: String,
    ) -> Result<Option<TwilioNumber>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(&format!("{NUMBER_SELECT} WHERE n.iccid = $1"), &[&iccid])
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(number_of))
    }

    pub(in crate::store) async fn twilio_service_sessions(
        &self,
        service_sid: String,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ServiceSessionRef>, StoreError> {
        let client = self.client().await?;
        // SQLite sorts NULL first: the same order here.
        let rows = client
            .query(
                &format!(
                    "SELECT x.session_id, {} FROM ( \
                         SELECT t.sid AS sid, t.session_id AS session_id, \
                                t.created_ms AS created \
                         FROM twilio_sessions t \
                         WHERE t.service_sid = $1 AND t.deleted_ms IS NULL \
                         UNION ALL \
                         SELECT NULL, s.id, s.opened_ms FROM sessions s \
                         WHERE s.proxy_iccid IN \
                               (SELECT iccid FROM twilio_numbers WHERE service_sid = $1) \
                           AND NOT EXISTS \
                               (SELECT 1 FROM twilio_sessions t WHERE t.session_id = s.id)) x \
                     LEFT JOIN twilio_sessions r ON r.sid = x.sid \
                     ORDER BY x.created DESC, x.sid NULLS FIRST, x.session_id NULLS FIRST \
                     LIMIT $2 OFFSET $3",
                    SESSION_COLUMNS
                        .split(", ")
                        .map(|c| format!("r.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&service_sid, &page(limit), &page(offset)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| ServiceSessionRef {
                session_id: row.get(0),
                row: row
                    .get::<_, Option<String>>(1)
                    .is_some()
                    .then(|| session_row_at(row, 1)),
            })
            .collect())
    }

    pub(in crate::store) async fn twilio_session_row(
        &self,
        service_sid: String,
        key: String,
    ) -> Result<Option<TwilioSessionRow>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM twilio_sessions WHERE service_sid = $1 \
                     AND (sid = $2 OR unique_name = $2 OR session_id = $2) \
                     ORDER BY sid = $2 DESC LIMIT 1"
                ),
                &[&service_sid, &key],
            )
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(session_row_of))
    }

    pub(in crate::store) async fn twilio_create_session(
        &self,
        row: TwilioSessionRow,
        participants: Vec<TwilioParticipantRow>,
        open: Option<(NewSession, Vec<LiveSim>)>,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        in_transaction!(self, |tx| {
            async {
                insert_session(&tx, "", &row).await.map_err(|e| {
                    unique(
                        e,
                        "unique_name_taken",
                        "another session of this service has that unique_name",
                    )
                })?;
                for participant in &participants {
                    insert_participant(&tx, participant).await?;
                }
                match open {
                    Some((new, live)) => {
                        Ok(Some(self.complete(&tx, &row.sid, new, live, now).await?))
                    }
                    None => Ok(None),
                }
            }
            .await
        })
    }

    pub(in crate::store) async fn twilio_add_participant(
        &self,
        participant: TwilioParticipantRow,
        open: Option<(NewSession, Vec<LiveSim>)>,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        in_transaction!(self, |tx| {
            async {
                insert_participant(&tx, &participant).await?;
                match open {
                    Some((new, live)) => Ok(Some(
                        self.complete(&tx, &participant.session_sid, new, live, now)
                            .await?,
                    )),
                    None => Ok(None),
                }
            }
            .await
        })
    }

    pub(in crate::store) async fn twilio_adopt_session(
        &self,
        row: TwilioSessionRow,
    ) -> Result<TwilioSessionRow, StoreError> {
        let client = self.client().await?;
        insert_session(&client, "ON CONFLICT DO NOTHING", &row)
            .await
            .map_err(pg_error)?;
        client
            .query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM twilio_sessions WHERE sid = $1"),
                &[&row.sid],
            )
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(session_row_of)
            .ok_or_else(|| StoreError::Conflict {
                code: "session_exists",
                message: format!(
                    "session {} is already the facade's under another sid",
                    row.session_id.as_deref().unwrap_or(&row.sid)
                ),
            })
    }

    pub(in crate::store) async fn twilio_mark_session(
        &self,
        sid: String,
        closed: bool,
        deleted: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE twilio_sessions SET \
                 closed_ms = CASE WHEN $2 THEN COALESCE(closed_ms, $4) ELSE closed_ms END, \
                 deleted_ms = CASE WHEN $3 THEN COALESCE(deleted_ms, $4) ELSE deleted_ms END, \
                 updated_ms = $4 WHERE sid = $1",
                &[&sid, &closed, &deleted, &to_ms(now)],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_participants(
        &self,
        session_sid: String,
    ) -> Result<Vec<TwilioParticipantRow>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                &format!(
                    "SELECT {PARTICIPANT_COLUMNS} FROM twilio_participants \
                     WHERE session_sid = $1 ORDER BY position"
                ),
                &[&session_sid],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(participant_of)
            .collect())
    }

    pub(in crate::store) async fn twilio_record_participant(
        &self,
        participant: TwilioParticipantRow,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        write_participant(&client, "ON CONFLICT DO NOTHING", &participant)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_delete_participant(
        &self,
        sid: String,
        waiting: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        if waiting {
            client
                .execute("DELETE FROM twilio_participants WHERE sid = $1", &[&sid])
                .await
                .map_err(pg_error)?;
        } else {
            client
                .execute(
                    "UPDATE twilio_participants SET deleted_ms = COALESCE(deleted_ms, $2) \
                     WHERE sid = $1",
                    &[&sid, &to_ms(now)],
                )
                .await
                .map_err(pg_error)?;
        }
        Ok(())
    }

    /// Queues the SMS and restarts the session's idle lifetime in one
    /// transaction; the appliance that holds the proxy's SIM sends it.
    pub(in crate::store) async fn twilio_queue_message(
        &self,
        new: NewOutbound,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            async {
                let (interaction, _) = queue_in(&tx, &new, now).await?;
                tx.execute(
                    "UPDATE sessions SET last_activity_ms = GREATEST(last_activity_ms, $2) \
                     WHERE id = $1 AND status = 'open'",
                    &[&new.session_id, &now],
                )
                .await
                .map_err(pg_error)?;
                Ok(interaction)
            }
            .await
        })
    }

    pub(in crate::store) async fn twilio_message_targets(
        &self,
        session_id: String,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT id, to_number FROM interactions \
                 WHERE session_id = $1 AND kind = 'sms' AND from_position IS NULL \
                   AND to_number IS NOT NULL",
                &[&session_id],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    pub(in crate::store) async fn twilio_set_lifetime(
        &self,
        session_id: String,
        expires: Option<Option<i64>>,
        idle_ttl: Option<Option<i64>>,
    ) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            async {
                if let Some(expires) = expires {
                    tx.execute(
                        "UPDATE sessions SET expires_ms = $2 WHERE id = $1 AND status = 'open'",
                        &[&session_id, &expires],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                if let Some(idle) = idle_ttl {
                    tx.execute(
                        "UPDATE sessions SET idle_ttl_s = $2 WHERE id = $1 AND status = 'open'",
                        &[&session_id, &idle],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                Ok(())
            }
            .await
        })
    }

    pub(in crate::store) async fn twilio_set_row_lifetime(
        &self,
        sid: String,
        ttl: Option<Option<i64>>,
        expiry_ms: Option<Option<i64>>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            async {
                if let Some(ttl) = ttl {
                    tx.execute(
                        "UPDATE twilio_sessions SET ttl = $2, updated_ms = $3 WHERE sid = $1",
                        &[&sid, &ttl, &now],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                if let Some(expiry) = expiry_ms {
                    tx.execute(
                        "UPDATE twilio_sessions SET expiry_ms = $2, updated_ms = $3 \
                         WHERE sid = $1",
                        &[&sid, &expiry, &now],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                Ok(())
            }
            .await
        })
    }
}

/// A page bound as PostgreSQL takes it.
pub(super) fn page(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
