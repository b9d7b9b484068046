//! Test fixtures shared by the store's test modules: one proxy SIM and a
//! session between two participants on it.

use time::OffsetDateTime;
use time::macros::datetime;

use super::{LiveSim, NewOutbound, NewSession, ReceivedPart, Store};
use crate::masking::Mode;
use crate::number::PhoneNumber;

pub const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);
pub const A: &str = "+447911000001";
pub const B: &str = "+447911000002";
pub const PROXY: &str = "8944000000000000000";

pub fn number(s: &str) -> PhoneNumber {
    PhoneNumber::from_e164(s).unwrap()
}

/// A store in `dir` with the SIM `PROXY` and one open session A–B on it
/// (absolute lifetime `ttl`); returns the store and the session id.
pub async fn store_with_session(
    dir: &tempfile::TempDir,
    ttl: Option<time::Duration>,
) -> (Store, String) {
    let store = Store::open(&dir.path().join("simmask.db")).unwrap();
    store
        .upsert_sim(
            PROXY.into(),
            number("+447000000000"),
            "234100000000000".into(),
            None,
            NOW,
        )
        .await
        .unwrap();
    let live = LiveSim {
        iccid: PROXY.into(),
        healthy: true,
        signal_dbm: Some(-70),
        voice_capable: true,
    };
    let new = NewSession {
        participants: [number(A), number(B)],
        mode: Mode::Both,
        ttl,
        idle_ttl: None,
        label: None,
        sticky: false,
        actor: "test".into(),
        fallback_number: None,
        proxy: None,
        limits: Default::default(),
    };
    let session = store.open_session(new, vec![live], NOW).await.unwrap();
    (store, session.id)
}

/// How a received message is handled, as the relay (`crate::sms::accept`)
/// would write it; the store's own tests need the rows, not the rules.
pub enum Received {
    /// Relayed within `session` to the other participant `to`.
    Relayed {
        session: String,
        from_position: u8,
        to: &'static str,
    },
    /// Out of session, forwarded to the operator `to` with the sender named.
    Forwarded { to: &'static str },
    /// Out of session, answered with `reply`.
    AutoReplied { reply: &'static str },
}

/// Writes one received single-part message from `from` on `PROXY` and what
/// was done with it; returns its interaction.
pub async fn receive(store: &Store, from: &str, pdu_hex: String, text: &str, how: Received) -> i64 {
    let sender = number(from);
    let text = text.to_string();
    store
        .inbound_durable(move |tx| {
            let part = ReceivedPart {
                proxy_iccid: PROXY.into(),
                sender: sender.clone(),
                location: None,
                pdu_hex,
                concat: None,
                text: text.clone(),
            };
            let part_id = tx.keep_part(&part, NOW)?.expect("a new part");
            let outbound = |session_id, from_position, to, body| NewOutbound {
                session_id,
                proxy_iccid: PROXY.into(),
                from_position,
                to,
                body,
            };
            let interaction = match how {
                Received::Relayed {
                    session,
                    from_position,
                    to,
                } => {
                    tx.touch_session(&session, NOW)?;
                    tx.queue_sms(
                        &outbound(Some(session), Some(from_position), number(to), text),
                        NOW,
                    )?
                }
                Received::Forwarded { to } => {
                    let body = format!("{}: {text}", sender.e164());
                    let id = tx.queue_sms(&outbound(None, None, number(to), body), NOW)?;
                    tx.set_interaction_sender(id, &sender)?;
                    id
                }
                Received::AutoReplied { reply } => {
                    tx.note_auto_reply(PROXY, &sender, NOW)?;
                    let id =
                        tx.queue_sms(&outbound(None, None, sender.clone(), reply.into()), NOW)?;
                    tx.set_interaction_sender(id, &sender)?;
                    id
                }
            };
            tx.link_parts(interaction, &[part_id], 1, false, None)?;
            Ok(interaction)
        })
        .await
        .unwrap()
}
