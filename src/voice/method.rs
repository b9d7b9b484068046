//! How a SIM joins two calls: chosen from its profile's supplementary
//! services and what the network reported to `AT+CHLD=?`.

use serde::Serialize;

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

/// Why a SIM cannot bridge calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoMethod {
    #[error("voice bridge: the SIM's network does not offer call hold (+CHLD=2, 3GPP TS 22.083)")]
    NoHold,
    #[error(
        "voice bridge: the SIM's network offers neither explicit call transfer (+CHLD=4, 3GPP TS 22.091) nor multiparty (+CHLD=3, 3GPP TS 22.084)"
    )]
    NeitherTransferNorConference,
}

/// How a SIM bridges calls, as the pool and the API name it: `transfer`,
/// `join`, or `None` when it cannot bridge. `voice` says the modem takes
/// calls at all; the services are its profile's and the network's (`None`
/// when the modem did not answer `AT+CHLD=?`: the profile's are tried).
pub fn method_name(
    voice: bool,
    profile_chld: &[String],
    reported: Option<&[String]>,
) -> Option<String> {
    if !voice {
        return None;
    }
    let best = choose_method(profile_chld, reported)
        .ok()?
        .first()
        .copied()?;
    Some(
        match best {
            Method::Transfer => "transfer",
            Method::Conference => "join",
        }
        .to_string(),
    )
}

/// The bridging methods a SIM can use, best first: transfer (it frees the
/// modem), then conference. A service counts when the profile lists it and,
/// if the modem answered `AT+CHLD=?`, the answer lists it too.
pub fn choose_method(
    profile_chld: &[String],
    reported: Option<&[String]>,
) -> Result<Vec<Method>, NoMethod> {
    let offered = |service: &str| {
        profile_chld.iter().any(|s| s == service)
            && reported.is_none_or(|list| list.iter().any(|s| s == service))
    };
    if !offered("2") {
        return Err(NoMethod::NoHold);
    }
    let methods: Vec<Method> = [("4", Method::Transfer), ("3", Method::Conference)]
        .into_iter()
        .filter(|(service, _)| offered(service))
        .map(|(_, method)| method)
        .collect();
    if methods.is_empty() {
        Err(NoMethod::NeitherTransferNorConference)
    } else {
        Ok(methods)
    }
}
