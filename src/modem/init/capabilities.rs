//! The 27.005/27.007 set-up the profile asks for, with capabilities probed
//! rather than assumed: PDU mode, storages (`AT+CPMS=?`), new-message
//! routing (`AT+CNMI=?`), caller ID, registration URCs, the call services
//! (`AT+CHLD=?`), voice (`AT+CLCC`); then how full the storages are.

use super::{BringUp, Capabilities, Step, StorageUse};
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::parse::{
    cnmi_allowed, parse_chld_test, parse_cnmi_test, parse_cpms, parse_cpms_set, parse_cpms_test,
    parse_csms,
};
use crate::profile::Profile;

/// What the set-up found.
pub(super) struct Setup {
    pub capabilities: Capabilities,
    /// `AT+CPMS=?`'s first list as the modem gave it.
    pub readable_storages: Vec<String>,
    /// What selecting the receiving storage reported of it, when the
    /// modem answered the selection with its counts (27.005 §3.2.2).
    selected: Vec<StorageUse>,
}

/// The storage firmware that tells nothing of its storages is tried with:
/// the SIM's own, which every GSM modem has (3GPP TS 27.005 §3.1 `"SM"`).
const SIM_STORAGE: &str = "SM";

/// `AT+CPMS=<mem>,<mem>,<mem>`: `storage` for reading, writing and
/// receiving, and the counts the modem reported with it, if any.
async fn select_all(
    steps: &mut BringUp<'_>,
    storage: &str,
) -> Result<Option<Vec<StorageUse>>, AtError> {
    let select = match Command::select_storage(storage) {
        Ok(select) => select,
        Err(error) => {
            steps.fail(Step::ReceiveStorage, "AT+CPMS", error);
            return Ok(None);
        }
    };
    let all = Command::new(
        format!("{line},\"{storage}\",\"{storage}\"", line = select.line),
        "+CPMS:",
    );
    let Some(lines) = steps.ask(Step::ReceiveStorage, all).await? else {
        return Ok(None);
    };
    Ok(Some(
        lines
            .iter()
            .find_map(|line| parse_cpms_set(line).ok())
            .map(|counts| named(storage, &counts))
            .unwrap_or_default(),
    ))
}

/// Counts of a selection, each under the name selected.
fn named(storage: &str, counts: &[(u32, u32)]) -> Vec<StorageUse> {
    counts
        .iter()
        .map(|&(used, total)| StorageUse {
            name: storage.to_string(),
            used,
            total,
        })
        .collect()
}

/// PDU mode, storages, new-message routing, caller ID, registration URCs
/// and the call services.
pub(super) async fn init_sms_and_voice(
    steps: &mut BringUp<'_>,
    profile: &Profile,
) -> Result<Setup, AtError> {
    // 3GPP TS 27.005 §3.2.3: everything the driver sends and reads is PDU.
    steps
        .ask(Step::PduMode, Command::plain("AT+CMGF=0"))
        .await?;
    let listed = steps
        .ask_parsed(
            Step::Storages,
            Command::new("AT+CPMS=?", "+CPMS:"),
            parse_cpms_test,
        )
        .await?;
    let (storages, receive_storage, readable_storages, selected) = match listed {
        Some(lists) => {
            let readable_storages = lists[0].clone();
            let (storages, receive_storage) = from_lists(lists, profile);
            let selected = select_all(steps, &receive_storage)
                .await?
                .unwrap_or_default();
            (storages, receive_storage, readable_storages, selected)
        }
        None => {
            // The modem keeps its storages to itself: its SIM's storage,
            // selected explicitly, is the one it surely has; then the
            // profile's own.
            let mut candidates = vec![SIM_STORAGE, profile.sms.default_storage.as_str()];
            candidates.dedup();
            let mut found = None;
            for candidate in candidates {
                if let Some(selected) = select_all(steps, candidate).await? {
                    found = Some((candidate.to_string(), selected));
                    break;
                }
            }
            match found {
                Some((storage, selected)) => (vec![storage.clone()], storage, Vec::new(), selected),
                None => {
                    let names = profile
                        .sms
                        .storages
                        .iter()
                        .map(|s| s.name.clone())
                        .collect();
                    (
                        names,
                        profile.sms.default_storage.clone(),
                        Vec::new(),
                        Vec::new(),
                    )
                }
            }
        }
    };
    // Messages routed straight to us (+CMT) only under phase 2+ service:
    // the network then keeps each one until AT+CNMA, so none is lost if we
    // stop before it is stored (3GPP TS 27.005 §3.2.1, §3.4.4). A modem
    // that does not confirm it keeps new messages on the SIM (+CMTI).
    let direct = routes_directly(&profile.sms.cnmi) && phase_2_plus(steps).await?;
    let cnmi = choose_cnmi(steps, profile, direct).await?;
    let sms_service = steps
        .ask_parsed(
            Step::SmsService,
            Command::new("AT+CSMS?", "+CSMS:"),
            parse_csms,
        )
        .await?
        .unwrap_or(0);
    // Caller ID with each RING (3GPP TS 27.007 §7.6), registration URCs (§7.2).
    steps
        .ask(Step::CallerId, Command::plain("AT+CLIP=1"))
        .await?;
    steps
        .ask(Step::RegistrationReports, Command::plain("AT+CREG=1"))
        .await?;
    // The network may set the modem's clock (NITZ, 27.007 §8.41): the
    // appliance's evidence of the time when offline. Modems without it
    // refuse, which is no failure.
    steps
        .ask(Step::NetworkTime, Command::plain("AT+CTZU=1"))
        .await?;
    if profile.voice.supported {
        // A second call while one is up is announced by +CCWA (§7.12);
        // models that can report every call change as +CLCC do so (§7.18).
        steps
            .ask(Step::CallWaiting, Command::plain("AT+CCWA=1"))
            .await?;
        if profile.voice.clcc_urc {
            steps
                .ask(Step::CallReports, Command::plain("AT+CLCC=1"))
                .await?;
        }
        // Keys a caller presses are reported (a hub keying a session's
        // code), on the models whose vendor offers it; the voice desk turns
        // it on again when a hub calls, for firmware that forgets it.
        if let Some(detection) = profile.voice.dtmf {
            steps
                .ask(
                    Step::KeyDetection,
                    Command::plain(detection.enable_command()),
                )
                .await?;
        }
    }
    // A modem that does not list its services is not taken to have none:
    // the services are tried when a call needs them.
    let chld = steps
        .ask_parsed(
            Step::CallServices,
            Command::new("AT+CHLD=?", "+CHLD:"),
            parse_chld_test,
        )
        .await?;
    let voice = profile.voice.supported
        && steps
            .ask(Step::Voice, Command::new("AT+CLCC", "+CLCC:"))
            .await?
            .is_some();
    Ok(Setup {
        capabilities: Capabilities {
            storages,
            receive_storage,
            cnmi,
            sms_service,
            chld,
            voice,
        },
        readable_storages,
        selected,
    })
}

/// The storages to read and the one to receive in, from `AT+CPMS=?`'s
/// lists: the profile's default when the modem lets messages be received
/// there, else the first it allows.
fn from_lists(lists: [Vec<String>; 3], profile: &Profile) -> (Vec<String>, String) {
    let [readable, _, receivable] = lists;
    // Broadcast storage holds no messages for us, and "MT" is SM and ME
    // seen together: listing it besides them would list everything twice.
    let has_sm_or_me = readable.iter().any(|s| s == "SM" || s == "ME");
    let storages: Vec<String> = readable
        .into_iter()
        .filter(|s| s != "BM" && !(s == "MT" && has_sm_or_me))
        .collect();
    let receive_storage = if receivable.contains(&profile.sms.default_storage) {
        profile.sms.default_storage.clone()
    } else {
        receivable
            .first()
            .cloned()
            .unwrap_or_else(|| profile.sms.default_storage.clone())
    };
    (storages, receive_storage)
}

/// The profile's `+CNMI` if the modem allows it, else the first of the
/// plain settings it allows: new messages stored and announced by `+CMTI`.
/// A setting the modem refuses is followed by the next one. Empty when it
/// refused them all: nothing is announced, and the driver lists stored
/// messages at every poll instead.
async fn choose_cnmi(
    steps: &mut BringUp<'_>,
    profile: &Profile,
    direct: bool,
) -> Result<String, AtError> {
    let allowed = steps
        .ask_parsed(
            Step::MessageRouting,
            Command::new("AT+CNMI=?", "+CNMI:"),
            parse_cnmi_test,
        )
        .await?;
    let mut candidates = vec![
        profile.sms.cnmi.as_str(),
        "2,1,0,1,0",
        "2,1,0,0,0",
        "1,1,0,0,0",
    ];
    candidates.dedup();
    if !direct {
        candidates.retain(|c| !routes_directly(c));
    }
    if let Some(allowed) = &allowed {
        let fits: Vec<&str> = candidates
            .iter()
            .copied()
            .filter(|c| cnmi_allowed(c, allowed))
            .collect();
        if !fits.is_empty() {
            candidates = fits;
        }
    }
    for setting in candidates {
        let applied = steps
            .ask(
                Step::MessageRouting,
                Command::plain(format!("AT+CNMI={setting}")),
            )
            .await?;
        if applied.is_some() {
            return Ok(setting.to_string());
        }
    }
    Ok(String::new())
}

/// Whether the `+CNMI` setting routes new messages straight to the host
/// (`<mt>`=2, `+CMT`).
fn routes_directly(cnmi: &str) -> bool {
    cnmi.split(',').nth(1).map(str::trim) == Some("2")
}

/// `AT+CSMS=1`: true only when the modem confirms phase 2+ service for
/// messages it receives (`+CSMS: 1,…`, 27.005 §3.2.1). An error, a bare
/// `OK` (firmware that ignores the command) or `+CSMS: 0,…` is a refusal.
async fn phase_2_plus(steps: &mut BringUp<'_>) -> Result<bool, AtError> {
    let answer = steps
        .ask(Step::SmsService, Command::new("AT+CSMS=1", "+CSMS:"))
        .await?;
    let confirmed = answer
        .iter()
        .flatten()
        .any(|line| parse_csms(line).is_ok_and(|mt| mt == 1));
    if !confirmed {
        tracing::info!(
            answer = ?answer,
            "the modem does not confirm phase 2+ message service (AT+CSMS=1): \
             new messages stay stored on the SIM and are announced by +CMTI"
        );
    }
    Ok(confirmed)
}

/// `AT+CPMS?` (3GPP TS 27.005 §3.2.2): the storages selected and how full
/// each is. A modem that does not answer it is asked to select its
/// receiving storage for reading and writing, and reports the counts with
/// that (the answer to the selection at set-up is used when it had them).
pub(super) async fn storage_use(
    steps: &mut BringUp<'_>,
    setup: &Setup,
) -> Result<Vec<StorageUse>, AtError> {
    let read = steps
        .ask_parsed(
            Step::StorageUse,
            Command::new("AT+CPMS?", "+CPMS:"),
            parse_cpms,
        )
        .await?;
    if let Some(read) = read {
        return Ok(read
            .into_iter()
            .map(|(name, used, total)| StorageUse { name, used, total })
            .collect());
    }
    if !setup.selected.is_empty() {
        return Ok(setup.selected.clone());
    }
    let storage = setup.capabilities.receive_storage.as_str();
    let Ok(select) = Command::select_storage(storage) else {
        return Ok(Vec::new());
    };
    let two = Command::new(format!("{},\"{storage}\"", select.line), "+CPMS:");
    let Some(lines) = steps.ask(Step::StorageUse, two.clone()).await? else {
        return Ok(Vec::new());
    };
    match lines.iter().find_map(|line| parse_cpms_set(line).ok()) {
        Some(counts) => Ok(named(storage, &counts)),
        None => {
            let error = super::no_value(&two, &lines, "no counts in the answer");
            steps.fail(Step::StorageUse, &two.line, error);
            Ok(Vec::new())
        }
    }
}
