//! The facade in the OpenAPI document (`/api/v1/openapi.json`): its paths
//! under `/twilio/v1`, the form bodies they take (CamelCase keys, as
//! Twilio's libraries send them) and the JSON they answer (snake_case, as
//! Twilio's). These types describe the wire format only; the handlers read
//! forms through [`super::Form`] and write `serde_json` values.

#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

/// `POST /Services`, `POST /Services/{service}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceForm {
    /// 1 to 191 characters; a service is found by it as by its SID.
    pub unique_name: Option<String>,
    /// Seconds a session lives after its last interaction (0: for ever).
    pub default_ttl: Option<i64>,
    /// Status callbacks (needs `[twilio] auth_token`, which signs them).
    pub callback_url: Option<String>,
    /// Asked before each interaction is relayed; 403 blocks it.
    pub intercept_callback_url: Option<String>,
    /// Asked about messages from numbers without an open session; the
    /// auto-create session JSON opens one.
    pub out_of_session_callback_url: Option<String>,
    /// `prefer-sticky` (default) or `avoid-sticky`.
    pub number_selection_behavior: Option<String>,
    /// `country` only: the pool is the appliance's SIMs.
    pub geo_match_level: Option<String>,
    /// Refused: chat channels are not supported.
    pub chat_instance_sid: Option<String>,
}

/// `POST /Services/{service}/PhoneNumbers[/{sid}]`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PhoneNumberForm {
    /// A `PN` SID of one of the bank's SIMs (or give `PhoneNumber`).
    pub sid: Option<String>,
    /// The SIM's number, E.164.
    pub phone_number: Option<String>,
    /// Handed only to a participant that asks for it by
    /// `ProxyIdentifier`, whichever API opens the session.
    pub is_reserved: Option<bool>,
}

/// `POST /Services/{service}/Sessions[/{session}]`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SessionForm {
    pub unique_name: Option<String>,
    /// ISO 8601; overrides `Ttl`.
    pub date_expiry: Option<String>,
    /// Seconds after the last interaction (or creation).
    pub ttl: Option<i64>,
    /// `message-only`, `voice-only` or `voice-and-message` (default).
    pub mode: Option<String>,
    /// `open`/`in-progress` at creation; `closed` closes, `in-progress`
    /// reopens.
    pub status: Option<String>,
    /// Up to two JSON objects (`Identifier`, `FriendlyName`,
    /// `ProxyIdentifier`, `ProxyIdentifierSid`), the key repeated.
    pub participants: Vec<String>,
    pub fail_on_participant_conflict: Option<bool>,
}

/// `POST …/Participants`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ParticipantForm {
    /// The participant's real number.
    pub identifier: String,
    pub friendly_name: Option<String>,
    /// A number of the service to use (reserved ones only this way).
    pub proxy_identifier: Option<String>,
    pub proxy_identifier_sid: Option<String>,
    pub fail_on_participant_conflict: Option<bool>,
}

/// `POST …/Participants/{participant}/MessageInteractions`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MessageInteractionForm {
    /// Sent from the session's proxy number to the participant.
    pub body: String,
    /// Refused: SMS only, no MMS.
    pub media_url: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct Service {
    pub sid: String,
    pub unique_name: Option<String>,
    pub account_sid: String,
    pub chat_instance_sid: Option<String>,
    pub callback_url: Option<String>,
    pub default_ttl: Option<i64>,
    pub number_selection_behavior: String,
    pub geo_match_level: String,
    pub intercept_callback_url: Option<String>,
    pub out_of_session_callback_url: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub url: String,
    #[schema(value_type = Object)]
    pub links: Value,
}

#[derive(Serialize, ToSchema)]
pub struct PhoneNumber {
    pub sid: String,
    pub account_sid: String,
    pub service_sid: String,
    pub date_created: String,
    pub date_updated: String,
    pub phone_number: String,
    pub friendly_name: Option<String>,
    pub iso_country: Option<String>,
    /// `sms_inbound`, `voice_outbound`… as the SIM can.
    #[schema(value_type = Object)]
    pub capabilities: Value,
    pub url: String,
    pub is_reserved: bool,
    /// Open sessions on it.
    pub in_use: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub date_started: Option<String>,
    pub date_ended: Option<String>,
    pub date_last_interaction: Option<String>,
    pub date_expiry: Option<String>,
    pub unique_name: Option<String>,
    /// `open`, `in-progress`, `closed` or `failed`.
    pub status: String,
    pub closed_reason: Option<String>,
    pub ttl: Option<i64>,
    pub mode: String,
    pub date_created: String,
    pub date_updated: String,
    pub url: String,
    #[schema(value_type = Object)]
    pub links: Value,
}

#[derive(Serialize, ToSchema)]
pub struct Participant {
    pub sid: String,
    pub session_sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub friendly_name: Option<String>,
    /// Masked for viewer tokens.
    pub identifier: String,
    /// Null until the session has both participants.
    pub proxy_identifier: Option<String>,
    pub proxy_identifier_sid: Option<String>,
    pub date_deleted: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub url: String,
    #[schema(value_type = Object)]
    pub links: Value,
}

/// An interaction (a message or a call); a MessageInteraction has the
/// same fields and `participant_sid`.
#[derive(Serialize, ToSchema)]
pub struct Interaction {
    pub sid: String,
    pub session_sid: String,
    pub service_sid: String,
    pub account_sid: String,
    /// JSON text: `{"body": …}` for a message (empty for viewers),
    /// `{"duration": …}` for a call.
    pub data: String,
    /// `message` or `voice`.
    #[serde(rename = "type")]
    pub kind: String,
    pub inbound_participant_sid: Option<String>,
    pub inbound_resource_sid: Option<String>,
    pub inbound_resource_status: Option<String>,
    pub inbound_resource_type: Option<String>,
    pub inbound_resource_url: Option<String>,
    pub outbound_participant_sid: Option<String>,
    pub outbound_resource_sid: Option<String>,
    /// A message: `queued`, `sent`, `delivered`, `failed`, `undelivered`
    /// (blocked); a call: `ringing`, `in-progress`, `completed`…
    pub outbound_resource_status: Option<String>,
    pub outbound_resource_type: Option<String>,
    pub outbound_resource_url: Option<String>,
    pub participant_sid: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub url: String,
}

/// The list envelope's `meta`.
#[derive(Serialize, ToSchema)]
pub struct Meta {
    pub page: u64,
    pub page_size: u64,
    /// The key of the list's items (`services`, `sessions`…).
    pub key: String,
    pub first_page_url: String,
    pub previous_page_url: Option<String>,
    pub url: String,
    /// Absolute, pointing at the appliance; null on the last page.
    pub next_page_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<Service>,
    pub meta: Meta,
}

#[derive(Serialize, ToSchema)]
pub struct PhoneNumberList {
    pub phone_numbers: Vec<PhoneNumber>,
    pub meta: Meta,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
    pub meta: Meta,
}

#[derive(Serialize, ToSchema)]
pub struct ParticipantList {
    pub participants: Vec<Participant>,
    pub meta: Meta,
}

#[derive(Serialize, ToSchema)]
pub struct InteractionList {
    pub interactions: Vec<Interaction>,
    pub meta: Meta,
}

#[derive(Serialize, ToSchema)]
pub struct MessageInteractionList {
    pub interactions: Vec<Interaction>,
    pub meta: Meta,
}

/// Twilio's error body.
#[derive(Serialize, ToSchema)]
pub struct Error {
    /// Twilio's code: 20001 invalid parameter, 20003 authentication,
    /// 20403 forbidden, 20404 not found, 80402, 80603, 80604, 80609…
    pub code: u32,
    pub message: String,
    pub more_info: String,
    pub status: u16,
}

/// The facade's part of the document: merged into the API's.
#[derive(OpenApi)]
#[openapi(
    paths(
        super::services::list,
        super::services::create,
        super::services::fetch,
        super::services::update,
        super::services::delete,
        super::services::list_numbers,
        super::services::add_number,
        super::services::fetch_number,
        super::services::update_number,
        super::services::remove_number,
        super::sessions::list,
        super::sessions::create,
        super::sessions::fetch,
        super::sessions::update,
        super::sessions::delete,
        super::participants::list,
        super::participants::add,
        super::participants::fetch,
        super::participants::remove,
        super::interactions::list,
        super::interactions::fetch,
        super::interactions::delete,
        super::interactions::list_messages,
        super::interactions::send_message,
        super::interactions::fetch_message,
    ),
    components(schemas(
        ServiceForm, PhoneNumberForm, SessionForm, ParticipantForm, MessageInteractionForm,
        Service, PhoneNumber, Session, Participant, Interaction, Meta, ServiceList,
        PhoneNumberList, SessionList, ParticipantList, InteractionList,
        MessageInteractionList, Error
    )),
    modifiers(&BasicAuth)
)]
pub struct TwilioDoc;

struct BasicAuth;

impl utoipa::Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "twilio_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "the configured account SID as user, an appliance API token as password",
                    ))
                    .build(),
            ),
        );
    }
}
