//! The 27.005/27.007 set-up the profile asks for, with capabilities probed
//! rather than assumed: PDU mode, storages (`AT+CPMS=?`), new-message
//! routing (`AT+CNMI=?`), caller ID, registration URCs, the call services
//! (`AT+CHLD=?`), voice (`AT+CLCC`); then how full the storages are.

use super::{BringUp, Capabilities, Step, StorageUse};
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::parse::{
    cnmi_allowed, parse_chld_test, parse_cnmi_test, parse_cpms, parse_cpms_test, parse_csms,
};
use crate::profile::Profile;

/// What the set-up found.
pub(super) struct Setup {
    pub capabilities: Capabilities,
    /// `AT+CPMS=?`'s first list as the modem gave it.
    pub readable_storages: Vec<String>,
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
    let readable_storages = listed
        .as_ref()
        .map(|[readable, _, _]| readable.clone())
        .unwrap_or_default();
    let [readable, _, receivable] = listed.unwrap_or_else(|| {
        let names: Vec<String> = profile
            .sms
            .storages
            .iter()
            .map(|s| s.name.clone())
            .collect();
        [names.clone(), names.clone(), names]
    });
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
    match Command::select_storage(&receive_storage) {
        Ok(select) => {
            let all = Command::new(
                format!(
                    "{line},\"{receive_storage}\",\"{receive_storage}\"",
                    line = select.line
                ),
                "+CPMS:",
            );
            steps.ask(Step::ReceiveStorage, all).await?;
        }
        Err(error) => steps.fail(Step::ReceiveStorage, "AT+CPMS", error),
    }
    let cnmi = choose_cnmi(steps, profile).await?;
    if cnmi.split(',').nth(1).map(str::trim) == Some("2") {
        // Messages routed straight to us (+CMT): with phase 2+ service the
        // network keeps each one until AT+CNMA, so none is lost if we stop
        // before it is stored (3GPP TS 27.005 §3.2.1, §3.4.4).
        steps
            .ask(Step::SmsService, Command::new("AT+CSMS=1", "+CSMS:"))
            .await?;
    }
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
    }
    let chld = steps
        .ask_parsed(
            Step::CallServices,
            Command::new("AT+CHLD=?", "+CHLD:"),
            parse_chld_test,
        )
        .await?
        .unwrap_or_default();
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
    })
}

/// The profile's `+CNMI` if the modem allows it, else the first of the
/// plain settings it allows: new messages stored and announced by `+CMTI`.
/// Empty when the modem refused the setting.
async fn choose_cnmi(steps: &mut BringUp<'_>, profile: &Profile) -> Result<String, AtError> {
    let allowed = steps
        .ask_parsed(
            Step::MessageRouting,
            Command::new("AT+CNMI=?", "+CNMI:"),
            parse_cnmi_test,
        )
        .await?;
    let candidates = [
        profile.sms.cnmi.as_str(),
        "2,1,0,1,0",
        "2,1,0,0,0",
        "1,1,0,0,0",
    ];
    let setting = match &allowed {
        Some(allowed) => candidates
            .iter()
            .find(|c| cnmi_allowed(c, allowed))
            .copied()
            .unwrap_or(candidates[0]),
        None => candidates[0],
    };
    let applied = steps
        .ask(
            Step::MessageRouting,
            Command::plain(format!("AT+CNMI={setting}")),
        )
        .await?;
    Ok(if applied.is_some() {
        setting.to_string()
    } else {
        String::new()
    })
}

/// `AT+CPMS?` (3GPP TS 27.005 §3.2.2): the storages selected and how full
/// each is.
pub(super) async fn storage_use(steps: &mut BringUp<'_>) -> Result<Vec<StorageUse>, AtError> {
    Ok(steps
        .ask_parsed(
            Step::StorageUse,
            Command::new("AT+CPMS?", "+CPMS:"),
            parse_cpms,
        )
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|(name, used, total)| StorageUse { name, used, total })
        .collect())
}
