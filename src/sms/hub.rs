//! A hub's messages, in the inbound transaction: the hub's open sessions on
//! the proxy are read, [`crate::masking::hub::route_reply`] decides from
//! the code the message starts with, and the reply goes through the same
//! rails as any relay ([`super::guard::relay_or_block`]). A reply without a
//! code goes to the counterpart the hub last heard from, and the hub is
//! told which; a message that can go nowhere is recorded, not sent, and the
//! hub is told why. Notices come from the proxy, as `[hubs]` words them.

use time::OffsetDateTime;

use super::accept::{InboundOutcome, Message};
use super::guard::{self, Target};
use super::rails::Rules;
use crate::config::fill_hub_notice;
use crate::masking::hub::{Conversation, HubRoute, route_reply};
use crate::masking::lifecycle::Session;
use crate::store::{InboundTx, NewOutbound, StoreError};

/// Routes a message from a hub among its open sessions on the proxy;
/// `None` when it has none there (then it is a stranger on this proxy).
pub(super) fn from_hub(
    tx: &mut InboundTx<'_>,
    message: &Message<'_>,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Option<InboundOutcome>, StoreError> {
    let (proxy, hub) = (message.proxy_iccid, message.sender);
    let open = tx.hub_conversations(proxy, hub)?;
    if open.is_empty() {
        return Ok(None);
    }
    let views: Vec<(Session, &str, u8)> = open
        .iter()
        .filter_map(|c| {
            let position = c.session.hub.as_ref()?.position;
            Some((c.session.rules_view()?, c.code.as_str(), position))
        })
        .collect();
    let conversations: Vec<Conversation<'_>> = views
        .iter()
        .map(|(session, code, _)| Conversation { session, code })
        .collect();
    let last = tx.last_heard(proxy, hub)?;
    let decision = route_reply(&conversations, hub, &message.body, last.as_deref(), now);
    for (session, reason) in &decision.expired {
        tx.end_session(&session.id, *reason, now)?;
    }
    let codes: Vec<&str> = views
        .iter()
        .filter(|(session, _, _)| !session.is_expired_at(now))
        .map(|(_, code, _)| *code)
        .collect();
    let words = &rules.hubs;
    let (notice, reason) = match decision.route {
        HubRoute::Relay {
            session,
            code,
            to,
            text,
            named,
        } => {
            let from_position = views
                .iter()
                .find(|(s, _, _)| s.id == session.id)
                .map_or(0, |(_, _, position)| *position);
            let target = Target {
                session_id: &session.id,
                from_position,
                to,
                text: &text,
                sent: None,
                from_hub: true,
            };
            let outcome = guard::relay_or_block(tx, message, &target, rules, now)?;
            if !named
                && matches!(outcome, InboundOutcome::Relayed { .. })
                && !words.sent_to_last.trim().is_empty()
            {
                let text = fill_hub_notice(&words.sent_to_last, code, &codes);
                notify(tx, message, Some(&session.id), text, now)?;
            }
            return Ok(Some(outcome));
        }
        HubRoute::Empty { code } => (
            fill_hub_notice(&words.empty, code, &codes),
            "a hub's code with no text after it",
        ),
        HubRoute::WrongMode { code } => (
            fill_hub_notice(&words.calls_only, code, &codes),
            "a hub's message to a conversation that carries calls only",
        ),
        HubRoute::UnknownCode { code } => (
            fill_hub_notice(&words.unknown_code, &code, &codes),
            "a hub's message with a code it has no open conversation with here",
        ),
        HubRoute::NoCode => (
            fill_hub_notice(&words.no_code, "", &codes),
            "a hub's message without a code, and no conversation to fall back on",
        ),
    };
    let interaction_id = tx.record_dropped(proxy, hub, reason, &message.body, now)?;
    notify(tx, message, None, notice, now)?;
    Ok(Some(InboundOutcome::HubRefused {
        interaction_id,
        reason,
    }))
}

/// Queues a notice to the hub from the proxy.
fn notify(
    tx: &mut InboundTx<'_>,
    message: &Message<'_>,
    session_id: Option<&str>,
    text: String,
    now: OffsetDateTime,
) -> Result<i64, StoreError> {
    tx.queue_sms(
        &NewOutbound {
            session_id: session_id.map(str::to_string),
            proxy_iccid: message.proxy_iccid.to_string(),
            from_position: None,
            to: message.sender.clone(),
            body: text,
        },
        now,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::masking::Mode;
    use crate::masking::lifecycle::{CloseReason, SessionStatus};
    use crate::sms::accept::{InboundPart, accept_inbound};
    use crate::store::fixtures::{NOW, PROXY, number, store_with_session};
    use crate::store::{LiveSim, NewSession, Store};

    const HUB: &str = "+447911000100";
    const C: &str = "+447911000003";
    const D: &str = "+447911000004";

    async fn hub_with(store: &Store, counterparts: &[&str]) -> Vec<(String, String)> {
        store
            .create_hub(number(HUB), None, "test".into(), NOW)
            .await
            .unwrap();
        let mut sessions = Vec::new();
        for other in counterparts {
            let new = NewSession {
                participants: [number(other), number(HUB)],
                mode: Mode::Both,
                ttl: None,
                idle_ttl: None,
                label: None,
                sticky: false,
                actor: "test".into(),
                fallback_number: None,
                proxy: None,
                limits: Default::default(),
            };
            let live = vec![LiveSim {
                iccid: PROXY.into(),
                healthy: true,
                signal_dbm: None,
                voice_capable: true,
            }];
            let session = store.open_session(new, live, NOW).await.unwrap();
            sessions.push((session.id, session.hub.unwrap().code));
        }
        sessions
    }

    fn sms(from: &str, pdu: &str, text: &str) -> InboundPart {
        InboundPart {
            proxy_iccid: PROXY.into(),
            sender: number(from),
            location: None,
            pdu_hex: pdu.into(),
            concat: None,
            text: text.into(),
        }
    }

    async fn send(store: &Store, from: &str, pdu: &str, text: &str) -> InboundOutcome {
        accept_inbound(store, sms(from, pdu, text), Arc::new(Rules::default()), NOW)
            .await
            .unwrap()
    }

    async fn queued(store: &Store) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some(item) = store.claim_next_due(PROXY.into(), NOW).await.unwrap() {
            out.push((item.to_number, item.body));
        }
        out
    }

    #[tokio::test]
    async fn counterparts_reach_the_hub_with_their_code_and_the_hub_answers_by_code() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        let sessions = hub_with(&store, &[C, D]).await;
        let (c_code, d_code) = (sessions[0].1.clone(), sessions[1].1.clone());
        send(&store, C, "01", "hello from C").await;
        send(&store, D, "02", "hello from D").await;
        assert_eq!(
            queued(&store).await,
            [
                (HUB.to_string(), format!("[{c_code}] hello from C")),
                (HUB.to_string(), format!("[{d_code}] hello from D")),
            ]
        );
        // The interaction keeps what C wrote, without the code.
        let history = store.interactions(sessions[0].0.clone()).await.unwrap();
        assert_eq!(history[0].body.as_deref(), Some("hello from C"));

        let reply = format!("{} thanks C", c_code.to_lowercase());
        assert!(matches!(
            send(&store, HUB, "03", &reply).await,
            InboundOutcome::Relayed { .. }
        ));
        assert_eq!(
            queued(&store).await,
            [(C.to_string(), "thanks C".to_string())]
        );
        // No code: to D, heard from last, and the hub is told.
        send(&store, HUB, "04", "see you at 5").await;
        let sent = queued(&store).await;
        assert_eq!(sent[0], (D.to_string(), "see you at 5".to_string()));
        assert_eq!(sent[1].0, HUB);
        assert!(
            sent[1].1.starts_with(&format!("Sent to {d_code}.")),
            "{sent:?}"
        );
        assert_eq!(sent.len(), 2);
    }

    #[tokio::test]
    async fn a_reply_that_can_go_nowhere_is_not_sent_and_the_hub_is_told_why() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        let sessions = hub_with(&store, &[C, D]).await;
        let unused = ["E5", "X9", "Y3"]
            .into_iter()
            .find(|c| {
                sessions.iter().all(|(_, code)| {
                    crate::masking::hub::keys(code) != crate::masking::hub::keys(c)
                })
            })
            .unwrap();
        let outcome = send(&store, HUB, "05", &format!("{unused} hi")).await;
        assert!(
            matches!(outcome, InboundOutcome::HubRefused { .. }),
            "{outcome:?}"
        );
        let sent = queued(&store).await;
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0, HUB);
        assert!(
            sent[0].1.starts_with(&format!("No conversation {unused}")),
            "{sent:?}"
        );
        // Heard from nobody yet, two conversations: a code is needed.
        let outcome = send(&store, HUB, "06", "hello?").await;
        assert!(matches!(outcome, InboundOutcome::HubRefused { .. }));
        let sent = queued(&store).await;
        assert!(
            sent[0].1.starts_with("Start your reply with a code"),
            "{sent:?}"
        );
        assert!(sent[0].1.contains(&sessions[0].1), "{sent:?}");
    }

    #[tokio::test]
    async fn a_counterparts_stop_ends_only_its_own_session_and_the_hubs_is_text() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        let sessions = hub_with(&store, &[C, D]).await;
        let outcome = send(&store, C, "07", "STOP").await;
        assert!(
            matches!(outcome, InboundOutcome::OptedOut { .. }),
            "{outcome:?}"
        );
        let c = store.session(sessions[0].0.clone()).await.unwrap();
        assert_eq!(c.close_reason, Some(CloseReason::OptOut));
        let d = store.session(sessions[1].0.clone()).await.unwrap();
        assert_eq!(d.status, SessionStatus::Open);
        queued(&store).await;
        // The hub's own STOP is a reply like any other: to D, its only
        // conversation left.
        let outcome = send(&store, HUB, "08", "STOP").await;
        assert!(
            matches!(outcome, InboundOutcome::Relayed { .. }),
            "{outcome:?}"
        );
        assert!(!store.is_opted_out(number(HUB)).await.unwrap());
        assert_eq!(queued(&store).await[0], (D.to_string(), "STOP".to_string()));
    }

    #[tokio::test]
    async fn a_front_desk_staffed_by_a_hub_gives_each_stranger_a_session_and_a_code() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        hub_with(&store, &[]).await;
        store
            .update_sim(
                PROXY.into(),
                crate::store::SimChange {
                    front_desk: Some(Some(number(HUB))),
                    ..Default::default()
                },
                "test".into(),
                NOW,
            )
            .await
            .unwrap();
        let mut codes = Vec::new();
        for (stranger, pdu) in [(C, "11"), (D, "12")] {
            let outcome = send(&store, stranger, pdu, "is anyone there?").await;
            let InboundOutcome::FrontDesk { session_id, .. } = outcome else {
                panic!("{stranger}: {outcome:?}");
            };
            let session = store.session(session_id).await.unwrap();
            assert_eq!(
                session.participants,
                [Some(number(stranger)), Some(number(HUB))]
            );
            codes.push(session.hub.expect("the hub's side has a code").code);
        }
        assert_ne!(codes[0], codes[1]);
        assert_eq!(
            queued(&store).await,
            [
                (HUB.to_string(), format!("[{}] is anyone there?", codes[0])),
                (HUB.to_string(), format!("[{}] is anyone there?", codes[1])),
            ]
        );
        // The hub answers the first by its code: only that stranger hears.
        send(
            &store,
            HUB,
            "13",
            &format!("{} yes, how can I help?", codes[0]),
        )
        .await;
        assert_eq!(
            queued(&store).await,
            [(C.to_string(), "yes, how can I help?".to_string())]
        );
    }
}
