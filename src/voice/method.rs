//! How a SIM joins two calls: chosen from the operator's choice (per SIM,
//! else per profile), its profile's supplementary services and what the
//! network reported to `AT+CHLD=?`.
//!
//! Multiparty is the default because it never unmasks: in a conference
//! each remote party sees only the proxy, and the network's notification of
//! it (27.007 `+CSSU: 4`) carries no number. After an explicit call
//! transfer the network may tell each remote party the other's directory
//! number (3GPP TS 23.091 §3, `+CSSU: 8` with a number), so transfer is
//! used only where an operator opted in, having checked what their
//! carrier's handsets are shown.

use serde::Serialize;

use crate::profile::BridgeMethod;

/// The way a SIM bridges a caller to the other participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Explicit call transfer (3GPP TS 22.091, `AT+CHLD=4`): the network
    /// connects the legs and the modem is free at once.
    Transfer,
    /// Multiparty (3GPP TS 22.084, `AT+CHLD=3`) with the modem muted; the
    /// modem stays in the call and clears it when one side leaves.
    Conference,
}

impl Method {
    /// The method the operator chose for a SIM: its own `voice_method`,
    /// else its profile's `[voice] method`, else multiparty.
    pub fn preferred(sim: Option<BridgeMethod>, profile: Option<BridgeMethod>) -> Method {
        match sim.or(profile) {
            Some(BridgeMethod::Transfer) => Method::Transfer,
            Some(BridgeMethod::Multiparty) | None => Method::Conference,
        }
    }

    /// The name the pool, the API and the events use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Transfer => "transfer",
            Method::Conference => "conference",
        }
    }
}

/// Why a SIM cannot bridge calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoMethod {
    #[error("voice bridge: the SIM's network does not offer call hold (+CHLD=2, 3GPP TS 22.083)")]
    NoHold,
    #[error(
        "voice bridge: the SIM's network offers neither explicit call transfer (+CHLD=4, 3GPP TS 22.091) nor multiparty (+CHLD=3, 3GPP TS 22.084)"
    )]
    NeitherTransferNorConference,
    #[error(
        "voice bridge: the SIM's network offers explicit call transfer (+CHLD=4) but not multiparty (+CHLD=3); a transfer may show each side the other's number (3GPP TS 23.091), so it is used only where the operator opts in (voice_method = \"transfer\")"
    )]
    TransferNotChosen,
}

/// How a SIM bridges calls, as the pool and the API name it: `transfer`,
/// `conference`, or `None` when it cannot bridge. `voice` says the modem
/// takes calls at all; the services are its profile's and the network's
/// (`reported` is `None` when the modem did not answer `AT+CHLD=?`: the
/// profile's are tried); `preferred` is the operator's choice
/// ([`Method::preferred`]).
pub fn method_name(
    voice: bool,
    profile_chld: &[String],
    reported: Option<&[String]>,
    preferred: Method,
) -> Option<String> {
    if !voice {
        return None;
    }
    let best = choose_method(profile_chld, reported, preferred)
        .ok()?
        .first()
        .copied()?;
    Some(best.name().to_string())
}

/// The bridging methods a SIM can use, in the order to try them. A service
/// counts when the profile lists it and, if the modem answered
/// `AT+CHLD=?`, the answer lists it too.
///
/// Multiparty, the default, is never followed by a transfer: a conference
/// the network refuses releases the caller rather than unmask anyone.
/// Transfer, where the operator chose it, falls back to multiparty (a
/// refused transfer, or a network without it).
pub fn choose_method(
    profile_chld: &[String],
    reported: Option<&[String]>,
    preferred: Method,
) -> Result<Vec<Method>, NoMethod> {
    let offered = |service: &str| {
        profile_chld.iter().any(|s| s == service)
            && reported.is_none_or(|list| list.iter().any(|s| s == service))
    };
    if !offered("2") {
        return Err(NoMethod::NoHold);
    }
    let (transfer, conference) = (offered("4"), offered("3"));
    let mut methods = Vec::new();
    if preferred == Method::Transfer && transfer {
        methods.push(Method::Transfer);
    }
    if conference {
        methods.push(Method::Conference);
    }
    match methods.is_empty() {
        false => Ok(methods),
        true if transfer => Err(NoMethod::TransferNotChosen),
        true => Err(NoMethod::NeitherTransferNorConference),
    }
}
