//! Bringing a modem up: identity, profile, SIM PIN, and the 27.005/27.007
//! initialisation the profile asks for, with capabilities probed rather than
//! assumed (storages from `AT+CPMS=?`, `+CNMI` modes from `AT+CNMI=?`,
//! supplementary services from `AT+CHLD=?`, voice from `AT+CLCC`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::command::Command;
use super::error::AtError;
use super::parse::{
    cnmi_allowed, parse_chld_test, parse_cnmi_test, parse_cnum, parse_cpms_test, parse_crsm,
    parse_csms,
};
use super::port::AtPort;
use crate::profile::{Profile, Profiles};

/// What the actor learnt about its modem and SIM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModemIdentity {
    /// The port path the actor opens (a link under `/dev/serial/by-id` or a tty).
    pub path: String,
    pub imei: Option<String>,
    pub iccid: Option<String>,
    pub imsi: Option<String>,
    /// From `AT+CNUM` when the SIM knows its number.
    pub msisdn: Option<String>,
    pub manufacturer: String,
    pub model: String,
    pub revision: String,
    /// The profile chosen from manufacturer and model.
    pub profile: String,
    /// The `+CPIN` answer once initialised (`READY`), if the modem gave one.
    pub pin_state: Option<String>,
    pub capabilities: Capabilities,
}

/// What the modem and its network were found able to do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Capabilities {
    /// Storages messages can be read and deleted from (`AT+CPMS=?` mem1),
    /// without broadcast storage.
    pub storages: Vec<String>,
    /// Where new messages are stored (mem3).
    pub receive_storage: String,
    /// The `+CNMI` setting in force.
    pub cnmi: String,
    /// `AT+CSMS` service: 1 means each `+CMT`/`+CDS` needs `AT+CNMA`.
    pub sms_service: u8,
    /// `AT+CHLD=?` services (`1x`, `2`, `3` multiparty, `4` transfer, …).
    pub chld: Vec<String>,
    /// The modem places and answers voice calls.
    pub voice: bool,
}

impl Capabilities {
    pub fn multiparty(&self) -> bool {
        self.chld.iter().any(|s| s == "3")
    }

    pub fn transfer(&self) -> bool {
        self.chld.iter().any(|s| s == "4")
    }
}

/// How to open and initialise modems.
#[derive(Debug, Clone)]
pub struct ModemOptions {
    pub profiles: Profiles,
    /// SIM PINs by ICCID.
    pub pin_for_iccid: HashMap<String, String>,
    pub baud: u32,
    /// ICCIDs whose configured PIN was refused. Shared by every actor of
    /// the process (and kept across re-plugs) so a wrong PIN is sent once.
    pub refused_pins: Arc<Mutex<HashSet<String>>>,
    /// Capacity of the event channel.
    pub event_capacity: usize,
}

impl ModemOptions {
    pub fn new(profiles: Profiles) -> Self {
        ModemOptions {
            profiles,
            pin_for_iccid: HashMap::new(),
            baud: super::port::DEFAULT_BAUD,
            refused_pins: Arc::default(),
            event_capacity: 256,
        }
    }

    fn pin_refused(&self, iccid: &str) -> bool {
        self.refused_pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(iccid)
    }

    fn refuse_pin(&self, iccid: &str) {
        self.refused_pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(iccid.to_string());
    }
}

/// The first non-empty line of a response with `prefix` removed.
pub(crate) fn value(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find(|l| !l.is_empty())
        .map(|l| l.strip_prefix(prefix).unwrap_or(l).trim().to_string())
        .unwrap_or_default()
}

/// Runs a command whose failure only costs a capability.
async fn optional(port: &mut AtPort, command: Command) -> Result<Option<Vec<String>>, AtError> {
    match port.run(&command).await {
        Ok(lines) => Ok(Some(lines)),
        // The modem being gone is not a missing capability.
        Err(AtError::Unplugged) => Err(AtError::Unplugged),
        Err(error) => {
            tracing::debug!(command = %command.line, %error, "optional command failed");
            Ok(None)
        }
    }
}

/// Talks a freshly opened port into a known state: answers `AT`, echo off.
pub(crate) async fn wake(port: &mut AtPort) -> Result<(), AtError> {
    // A modem left mid-command or still booting may miss the first `AT`s.
    let mut last = AtError::Timeout(Duration::ZERO);
    for _ in 0..3 {
        match port.run(&Command::plain("AT")).await {
            Ok(_) => {
                port.run(&Command::plain("ATE0")).await?;
                return Ok(());
            }
            Err(AtError::Unplugged) => return Err(AtError::Unplugged),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// The ICCID under whichever spelling the firmware uses: 3GPP has none, so
/// vendors answer `+CCID`, `+ICCID` (SIMCom), `+QCCID` (Quectel) or `^ICCID`
/// (Huawei). The profile's own command is tried first.
pub(crate) async fn read_iccid(
    port: &mut AtPort,
    profile: Option<&Profile>,
) -> Result<Option<String>, AtError> {
    let mut tries: Vec<(String, &'static str, bool)> = Vec::new();
    if let Some(profile) = profile {
        // A bare-digits answer (some SIMCom firmware) has no prefix to strip.
        let prefix = match profile.commands.iccid_prefix.trim() {
            "+QCCID:" => "+QCCID:",
            "^ICCID:" => "^ICCID:",
            "+ICCID:" => "+ICCID:",
            _ => "+CCID:",
        };
        tries.push((
            profile.commands.iccid.clone(),
            prefix,
            profile.commands.iccid_swapped,
        ));
    }
    for (command, prefix, swapped) in [
        ("AT+CCID", "+CCID:", false),
        ("AT+QCCID", "+QCCID:", false),
        ("AT^ICCID?", "^ICCID:", true),
        ("AT+ICCID", "+ICCID:", false),
    ] {
        if !tries
            .iter()
            .any(|(c, _, _)| c.eq_ignore_ascii_case(command))
        {
            tries.push((command.to_string(), prefix, swapped));
        }
    }
    for (command, prefix, swapped) in tries {
        let Some(lines) = optional(port, Command::new(command, prefix)).await? else {
            continue;
        };
        let raw = value(&lines, prefix).trim_matches('"').to_string();
        let iccid = if swapped { unswap_nibbles(&raw) } else { raw };
        if !iccid.is_empty() && iccid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(Some(iccid));
        }
    }
    // Last resort, standard on any 27.007 modem: read EF_ICCID (file 2FE2,
    // 10 bytes) through restricted SIM access (3GPP TS 27.007 §8.18).
    let Some(lines) = optional(port, Command::new("AT+CRSM=176,12258,0,0,10", "+CRSM:")).await?
    else {
        return Ok(None);
    };
    Ok(lines
        .iter()
        .find_map(|line| parse_crsm(line).ok().flatten())
        .map(|raw| unswap_nibbles(&raw))
        .filter(|iccid| !iccid.is_empty() && iccid.chars().all(|c| c.is_ascii_digit())))
}

/// Huawei's `^ICCID` gives the ICCID as stored on the SIM: BCD with the digits
/// of each byte swapped and `F` padding (3GPP TS 31.102 §4.2.2 EF_ICCID).
pub(crate) fn unswap_nibbles(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    chars
        .chunks(2)
        .flat_map(|pair| pair.iter().rev())
        .filter(|c| !c.eq_ignore_ascii_case(&'f'))
        .collect()
}

/// `AT+CPIN?`: unlocks the SIM with the configured PIN when it asks for one.
/// A refused PIN is remembered and never sent again.
async fn unlock(
    port: &mut AtPort,
    iccid: Option<&str>,
    options: &ModemOptions,
) -> Result<Option<String>, AtError> {
    let Some(lines) = optional(port, Command::new("AT+CPIN?", "+CPIN:")).await? else {
        // No SIM or no answer: the identity shows it (no ICCID, no IMSI).
        return Ok(None);
    };
    let state = value(&lines, "+CPIN:");
    if state.eq_ignore_ascii_case("READY") {
        return Ok(Some(state));
    }
    if !state.eq_ignore_ascii_case("SIM PIN") {
        // PUK, PH-SIM PIN …: nothing the driver may type on its own.
        return Err(AtError::PinRequired {
            iccid: iccid.map(str::to_string),
            state,
        });
    }
    let Some(iccid) = iccid else {
        return Err(AtError::PinRequired { iccid: None, state });
    };
    if options.pin_refused(iccid) {
        return Err(AtError::PinRefused {
            iccid: iccid.to_string(),
        });
    }
    let Some(pin) = options.pin_for_iccid.get(iccid) else {
        return Err(AtError::PinRequired {
            iccid: Some(iccid.to_string()),
            state,
        });
    };
    if pin.is_empty() || pin.len() > 8 || !pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(AtError::Invalid(
            "configured pin must be 1 to 8 digits".into(),
        ));
    }
    match port
        .run(&Command::plain(format!("AT+CPIN=\"{pin}\"")))
        .await
    {
        Ok(_) => {}
        Err(AtError::Unplugged) => return Err(AtError::Unplugged),
        Err(AtError::Timeout(t)) => return Err(AtError::Timeout(t)),
        Err(error) => {
            tracing::warn!(%error, "sim pin refused; it will not be sent again");
            options.refuse_pin(iccid);
            return Err(AtError::PinRefused {
                iccid: iccid.to_string(),
            });
        }
    }
    // The SIM takes a moment to become ready after the PIN.
    for _ in 0..10 {
        if let Some(lines) = optional(port, Command::new("AT+CPIN?", "+CPIN:")).await? {
            let state = value(&lines, "+CPIN:");
            if state.eq_ignore_ascii_case("READY") {
                return Ok(Some(state));
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(AtError::PinRequired {
        iccid: Some(iccid.to_string()),
        state: "SIM PIN (not ready after unlocking)".into(),
    })
}

/// Identifies the modem on `port`, picks its profile and initialises it.
pub(crate) async fn initialise(
    port: &mut AtPort,
    path: &str,
    options: &ModemOptions,
) -> Result<(ModemIdentity, Profile), AtError> {
    wake(port).await?;
    // Verbose +CME errors (3GPP TS 27.007 §9.1); some firmware lacks mode 2.
    if optional(port, Command::plain("AT+CMEE=2")).await?.is_none() {
        optional(port, Command::plain("AT+CMEE=1")).await?;
    }
    let manufacturer = value(
        &port.run(&Command::new("AT+CGMI", "+CGMI:")).await?,
        "+CGMI:",
    );
    let model = value(
        &port.run(&Command::new("AT+CGMM", "+CGMM:")).await?,
        "+CGMM:",
    );
    let revision = optional(port, Command::new("AT+CGMR", "+CGMR:"))
        .await?
        .map(|l| value(&l, "+CGMR:"))
        .unwrap_or_default();
    let imei = optional(port, Command::new("AT+CGSN", "+CGSN:"))
        .await?
        .map(|l| value(&l, "+CGSN:").trim_matches('"').to_string())
        .filter(|i| !i.is_empty());
    let profile = options.profiles.detect(&manufacturer, &model).clone();
    for line in &profile.driver.init {
        optional(port, Command::plain(line.clone())).await?;
    }
    let iccid = read_iccid(port, Some(&profile)).await?;
    let pin_state = unlock(port, iccid.as_deref(), options).await?;
    let imsi = optional(port, Command::new("AT+CIMI", "+CIMI:"))
        .await?
        .map(|l| value(&l, "+CIMI:"))
        .filter(|i| !i.is_empty());
    let msisdn = optional(port, Command::new("AT+CNUM", "+CNUM:"))
        .await?
        .and_then(|l| l.iter().find_map(|l| parse_cnum(l).ok().flatten()));
    let capabilities = init_sms_and_voice(port, &profile).await?;
    let identity = ModemIdentity {
        path: path.to_string(),
        imei,
        iccid,
        imsi,
        msisdn,
        manufacturer,
        model,
        revision,
        profile: profile.name.clone(),
        pin_state,
        capabilities,
    };
    Ok((identity, profile))
}

/// PDU mode, storages, new-message routing, caller ID, registration URCs
/// and the call services.
async fn init_sms_and_voice(port: &mut AtPort, profile: &Profile) -> Result<Capabilities, AtError> {
    // 3GPP TS 27.005 §3.2.3: everything the driver sends and reads is PDU.
    port.run(&Command::plain("AT+CMGF=0")).await?;
    let [readable, _, receivable] = optional(port, Command::new("AT+CPMS=?", "+CPMS:"))
        .await?
        .and_then(|l| l.first().and_then(|l| parse_cpms_test(l).ok()))
        .unwrap_or_else(|| {
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
    if let Ok(select) = Command::select_storage(&receive_storage) {
        let all = Command::new(
            format!(
                "{line},\"{receive_storage}\",\"{receive_storage}\"",
                line = select.line
            ),
            "+CPMS:",
        );
        optional(port, all).await?;
    }
    let cnmi = choose_cnmi(port, profile).await?;
    if cnmi.split(',').nth(1).map(str::trim) == Some("2") {
        // Messages routed straight to us (+CMT): with phase 2+ service the
        // network keeps each one until AT+CNMA, so none is lost if we stop
        // before it is stored (3GPP TS 27.005 §3.2.1, §3.4.4).
        optional(port, Command::new("AT+CSMS=1", "+CSMS:")).await?;
    }
    let sms_service = optional(port, Command::new("AT+CSMS?", "+CSMS:"))
        .await?
        .and_then(|l| l.first().and_then(|l| parse_csms(l).ok()))
        .unwrap_or(0);
    // Caller ID with each RING (3GPP TS 27.007 §7.6), registration URCs (§7.2).
    optional(port, Command::plain("AT+CLIP=1")).await?;
    optional(port, Command::plain("AT+CREG=1")).await?;
    if profile.voice.supported {
        // A second call while one is up is announced by +CCWA (§7.12);
        // models that can report every call change as +CLCC do so (§7.18).
        optional(port, Command::plain("AT+CCWA=1")).await?;
        if profile.voice.clcc_urc {
            optional(port, Command::plain("AT+CLCC=1")).await?;
        }
    }
    let chld = optional(port, Command::new("AT+CHLD=?", "+CHLD:"))
        .await?
        .and_then(|l| l.first().and_then(|l| parse_chld_test(l).ok()))
        .unwrap_or_default();
    let voice = profile.voice.supported
        && optional(port, Command::new("AT+CLCC", "+CLCC:"))
            .await?
            .is_some();
    Ok(Capabilities {
        storages,
        receive_storage,
        cnmi,
        sms_service,
        chld,
        voice,
    })
}

/// The profile's `+CNMI` if the modem allows it, else the first of the
/// plain settings it allows: new messages stored and announced by `+CMTI`.
async fn choose_cnmi(port: &mut AtPort, profile: &Profile) -> Result<String, AtError> {
    let allowed = optional(port, Command::new("AT+CNMI=?", "+CNMI:"))
        .await?
        .and_then(|l| l.first().and_then(|l| parse_cnmi_test(l).ok()));
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
    let applied = optional(port, Command::plain(format!("AT+CNMI={setting}"))).await?;
    Ok(if applied.is_some() {
        setting.to_string()
    } else {
        String::new()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn huawei_iccid_is_nibble_swapped() {
        assert_eq!(
            super::unswap_nibbles("984411663647862149F7"),
            "8944116663746812947"
        );
        assert_eq!(super::unswap_nibbles("98"), "89");
    }
}
