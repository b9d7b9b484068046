//! A stranger's message held for a Twilio service's out-of-session
//! callback, routed once the callback has answered: in the session it
//! opened (its relay then passes the rails as any other), or else by the
//! appliance's out-of-session policy.

use std::sync::Arc;

use time::OffsetDateTime;

use super::accept::{InboundOutcome, Message, earliest_sent, route_message};
use super::rails::Rules;
use crate::store::{Store, StoreError};

/// Routes the held message `interaction_id` now, without asking the
/// out-of-session callback again; `None` when it is not held any more (it
/// was decided already). One transaction: the placeholder goes as the
/// routed interaction comes, so the message is never in neither.
pub async fn route_held(
    store: &Store,
    interaction_id: i64,
    rules: Arc<Rules>,
    now: OffsetDateTime,
) -> Result<Option<InboundOutcome>, StoreError> {
    store
        .inbound(move |tx| {
            let Some(held) = tx.twilio_take_held(interaction_id)? else {
                return Ok(None);
            };
            let mut rules = (*rules).clone();
            rules.twilio_out_of_session = false;
            let pdus = tx.part_pdus(&held.part_ids)?;
            let message = Message {
                proxy_iccid: &held.proxy_iccid,
                sender: &held.sender,
                body: held.body.clone(),
                part_ids: held.part_ids.clone(),
                incomplete: held.incomplete,
                sent: earliest_sent(pdus.iter().map(String::as_str)),
            };
            route_message(tx, message, &rules, now).map(Some)
        })
        .await
}
