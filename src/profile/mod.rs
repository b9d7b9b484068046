//! Modem model profiles: quirks as data.
//!
//! One TOML file per model in `firmware-config/`. The simulator plays a model
//! from its profile (identity strings, boot noise, echo default, storages,
//! `+CNMI` modes, supplementary services); the driver reads the same file to
//! recognise the model and initialise it. Unknown keys are refused, so a typo
//! in a profile fails the test that loads every file instead of silently
//! falling back to a default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The profiles compiled into the binary, so it works without the directory.
const BUILTIN: &[(&str, &str)] = &[
    (
        "generic",
        include_str!("../../firmware-config/generic.toml"),
    ),
    (
        "simcom-sim800",
        include_str!("../../firmware-config/simcom-sim800.toml"),
    ),
    (
        "quectel-ec25",
        include_str!("../../firmware-config/quectel-ec25.toml"),
    ),
    (
        "huawei-e173",
        include_str!("../../firmware-config/huawei-e173.toml"),
    ),
    ("terse", include_str!("../../firmware-config/terse.toml")),
];

/// The name of the fallback profile (plain 3GPP TS 27.005/27.007).
pub const GENERIC: &str = "generic";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile {name}: {source}")]
    Parse {
        name: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("profile file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "profile {file}: its name key says {declared:?}; the file name and the name must agree"
    )]
    NameMismatch { file: String, declared: String },
    #[error("unknown modem profile {0:?} (known: {1})")]
    Unknown(String, String),
    #[error("profile {name}: {problem}")]
    Invalid { name: String, problem: String },
}

/// One modem model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The file's name without `.toml`; the value of `simmask sim --profile`.
    pub name: String,
    pub description: String,
    pub identity: Identity,
    pub detect: Detect,
    pub boot: Boot,
    pub commands: Commands,
    pub sms: Sms,
    pub voice: Voice,
    #[serde(default)]
    pub noise: Noise,
    #[serde(default)]
    pub driver: Driver,
}

/// What the model answers about itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// `AT+CGMI` / `AT+GMI`.
    pub manufacturer: String,
    /// `AT+CGMM` / `AT+GMM`.
    pub model: String,
    /// `AT+CGMR` / `AT+GMR`.
    pub revision: String,
    /// The lines of `ATI`; `{imei}` is replaced by the modem's IMEI.
    pub ati: Vec<String>,
}

/// How the driver recognises the model from what it reports: each list holds
/// case-insensitive substrings, and a profile matches when one of `manufacturer`
/// is in the `+CGMI` answer and (if `model` is not empty) one of `model` in `+CGMM`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    pub manufacturer: Vec<String>,
    #[serde(default)]
    pub model: Vec<String>,
}

/// Power-on behaviour.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// Echo state after power-on and after `ATZ` / `AT&F`.
    pub echo: bool,
    /// Unsolicited lines the model prints after power-on or `AT+CFUN=1,1`.
    pub urcs: Vec<String>,
    /// How long the model takes to answer again after a reset, in milliseconds.
    #[serde(default = "default_reset_ms")]
    pub reset_ms: u64,
    /// The functionality level after power-on (3GPP TS 27.007 §8.2): 1 full
    /// (most models); 0 minimum, for firmware that waits for `AT+CFUN=1`
    /// before it powers its SIM and radio.
    #[serde(default = "default_cfun")]
    pub cfun: u8,
}

fn default_cfun() -> u8 {
    1
}

fn default_reset_ms() -> u64 {
    1500
}

/// Vendor spellings of commands.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    /// The command that reads the ICCID (`AT+CCID`, `AT+QCCID`, `AT^ICCID?`).
    pub iccid: String,
    /// What precedes the ICCID in the answer (`+CCID: `, `^ICCID: `, or empty
    /// for the bare digits some SIMCom firmware prints).
    pub iccid_prefix: String,
    /// The ICCID comes with the digits of each octet swapped (raw EF_ICCID
    /// BCD), as Huawei's `^ICCID` gives it.
    #[serde(default)]
    pub iccid_swapped: bool,
    /// The final result for a command the model does not know (`ERROR`;
    /// some Huawei firmware says `COMMAND NOT SUPPORT`).
    #[serde(default = "default_unknown_command")]
    pub unknown_command: String,
    /// Vendor commands the model answers with fixed lines then `OK`.
    #[serde(default)]
    pub vendor: Vec<VendorCommand>,
    /// When present, the only commands the firmware knows; everything else
    /// gets `unknown_command`. Each entry is a command as typed after `AT`:
    /// a basic command by its letter (`E` takes `E0` and `E1`), an extended
    /// one by its form (`+CPIN?` read, `+CPMS=?` test, `+CMGF=0` that exact
    /// setting), or `+CPMS=` for every setting of it. The empty command (a
    /// bare `AT`) is known only when listed as `""`.
    #[serde(default)]
    pub implemented: Option<Vec<String>>,
    /// `ATE` is accepted but echo stays as it booted.
    #[serde(default)]
    pub echo_fixed: bool,
    /// Commands the firmware answers only after a pause.
    #[serde(default)]
    pub slow: Vec<SlowCommand>,
    /// USSD strings are GSM 7-bit packed and hex-coded (3GPP TS 23.038
    /// §6.1.2.3) until `AT^USSDMODE=0`, as on Huawei sticks; `AT^USSDMODE=1`
    /// brings that back.
    #[serde(default)]
    pub ussd_pdu: bool,
}

/// A command answered after a pause.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlowCommand {
    /// As typed after `AT` (`+CPIN?`).
    pub command: String,
    pub delay_ms: u64,
}

impl Commands {
    /// Whether the firmware knows `command` (as typed after `AT`, upper
    /// case) by [`Commands::implemented`].
    pub fn implements(&self, command: &str) -> bool {
        let Some(known) = &self.implemented else {
            return true;
        };
        known.iter().any(|entry| {
            let entry = entry.to_ascii_uppercase();
            if entry == command {
                return true;
            }
            if let Some(name) = entry.strip_suffix('=') {
                // Every setting of it, not its test form.
                return command
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('='))
                    .is_some_and(|rest| rest != "?");
            }
            // A basic command with its number (`E0`, `V1`, `H0`) or a dial.
            let basic = !entry.is_empty() && !entry.starts_with(['+', '^', '$', '%']);
            basic
                && command
                    .strip_prefix(entry.as_str())
                    .is_some_and(|rest| entry == "D" || rest.chars().all(|c| c.is_ascii_digit()))
        })
    }

    /// The pause before the answer to `command` (upper case), if it is slow.
    pub fn delay_of(&self, command: &str) -> Option<u64> {
        self.slow
            .iter()
            .find(|s| s.command.eq_ignore_ascii_case(command))
            .map(|s| s.delay_ms)
    }
}

fn default_unknown_command() -> String {
    "ERROR".into()
}

/// A vendor command and its fixed answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VendorCommand {
    /// The command as typed, without the trailing CR (e.g. `AT^CURC=0`).
    pub command: String,
    /// Information lines printed before `OK`.
    #[serde(default)]
    pub response: Vec<String>,
}

/// SMS storage and routing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    /// Message storages and their capacity in messages, in the order
    /// `AT+CPMS=?` lists them.
    pub storages: Vec<Storage>,
    /// The storage selected after power-on (mem1, mem2 and mem3).
    pub default_storage: String,
    /// The answer to `AT+CNMI=?` after `+CNMI: `.
    pub cnmi_supported: String,
    /// The `+CNMI` setting the driver asks for (mode,mt,bm,ds,bfr).
    pub cnmi: String,
    /// `+CMS ERROR` code when the storage is full (322, "memory full").
    #[serde(default = "default_storage_full")]
    pub storage_full_error: u16,
    /// Where status reports go when `+CNMI` `<ds>`=2 stores them (an `"SR"`
    /// storage of their own, selectable with `AT+CPMS` though `AT+CPMS=?`
    /// does not list it); absent, they go to the receiving storage.
    #[serde(default)]
    pub status_report_storage: Option<Storage>,
    /// The storage name `+CDSI` announces a stored status report under,
    /// when it is not the one that holds it: Quectel EC25/EG25 store in
    /// `"SR"` and announce `"SM"` (asterisk-chan-quectel PR #75).
    #[serde(default)]
    pub cdsi_announces: Option<String>,
    /// The firmware offers phase 2+ message service (3GPP TS 27.005
    /// §3.2.1): `AT+CSMS=1` is answered `+CSMS: 1,1,1`, and each `+CMT`
    /// waits for the host's `AT+CNMA` (unacknowledged, the network delivers
    /// it again). Only then may `cnmi` route new messages straight to the
    /// host (mt=2); the driver checks the answer and keeps to stored
    /// messages (`+CMTI`) on a modem that refuses. False: the simulated
    /// firmware refuses `AT+CSMS=1` with `+CMS ERROR: 303`.
    #[serde(default = "default_phase2plus")]
    pub phase2plus: bool,
}

fn default_storage_full() -> u16 {
    322
}

fn default_phase2plus() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub name: String,
    pub capacity: u16,
}

/// Voice calls and the supplementary services of the SIM's network.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Voice {
    /// The model can place and answer voice calls at all.
    pub supported: bool,
    /// The `+CHLD` values the network offers, as `AT+CHLD=?` lists them
    /// (`0`, `1`, `1x`, `2`, `2x`, `3` multiparty, `4` explicit call transfer).
    pub chld: Vec<String>,
    /// The model reports every call change as a `+CLCC` line after
    /// `AT+CLCC=1` (SIMCom); others answer `AT+CLCC=1` with an error.
    #[serde(default)]
    pub clcc_urc: bool,
    /// How the appliance joins a caller to the other participant on SIMs
    /// in this model, when the operator chose it here: `"multiparty"` (the
    /// default when absent: a muted conference, in which each side sees
    /// only the proxy) or `"transfer"` (explicit call transfer, which frees
    /// the modem but lets the network tell each side the other's number;
    /// an opt-in for carriers the operator has checked). `[[sims]]
    /// voice_method` in the daemon's configuration overrides it per SIM.
    #[serde(default)]
    pub method: Option<BridgeMethod>,
    /// How the model reports the keys the other side of a call presses
    /// (DTMF detection), when it can: `"ddet"` (SIMCom: `AT+DDET=1`, then
    /// `+DTMF: <key>`) or `"qtonedet"` (Quectel: `AT+QTONEDET=1`, then
    /// `+QTONEDET: <the key's ASCII code>`). 27.007 has no such report.
    #[serde(default)]
    pub dtmf: Option<DtmfDetection>,
}

/// A vendor's DTMF detection: how keys pressed by the remote party of a
/// call are turned on and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfDetection {
    /// SIMCom: `AT+DDET=1[,<interval>[,<reportMode>[,<ssdet>]]]`, keys as
    /// `+DTMF: <key>` (`+DTMF: <key>,<last time>` with report mode 1).
    Ddet,
    /// Quectel: `AT+QTONEDET=1`, keys as `+QTONEDET: <ASCII code>` (`53`
    /// for `5`, `35` for `#`).
    Qtonedet,
}

impl DtmfDetection {
    /// The command that turns detection on.
    pub fn enable_command(self) -> &'static str {
        match self {
            DtmfDetection::Ddet => "AT+DDET=1",
            DtmfDetection::Qtonedet => "AT+QTONEDET=1",
        }
    }
}

/// A bridging method an operator can choose (`[voice] method` in a profile,
/// `voice_method` of a SIM in the daemon's configuration). Which one a SIM
/// uses is the voice layer's decision; this is only the operator's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeMethod {
    /// Multiparty with the appliance's leg muted (3GPP TS 22.084,
    /// `AT+CHLD=3`).
    #[serde(alias = "conference")]
    Multiparty,
    /// Explicit call transfer (3GPP TS 22.091, `AT+CHLD=4`).
    Transfer,
}

impl Voice {
    /// The network joins two calls into a multiparty call (`AT+CHLD=3`).
    pub fn multiparty(&self) -> bool {
        self.chld.iter().any(|v| v == "3")
    }

    /// The network connects two calls and drops the modem (`AT+CHLD=4`).
    pub fn transfer(&self) -> bool {
        self.chld.iter().any(|v| v == "4")
    }
}

/// Periodic vendor noise (signal and mode reports) the model prints unasked.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    /// Lines printed every `interval_ms`; `{rssi}` is replaced by the current
    /// `+CSQ` value.
    #[serde(default)]
    pub periodic: Vec<String>,
    #[serde(default)]
    pub interval_ms: u64,
    /// A command that stops the periodic noise (Huawei `AT^CURC=0`).
    #[serde(default)]
    pub off_command: Option<String>,
}

/// What the driver does beyond the standard 27.007/27.005 initialisation.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Driver {
    /// Extra commands sent after the standard initialisation; a failing one
    /// is logged, not fatal.
    #[serde(default)]
    pub init: Vec<String>,
    /// Delete the message with `AT+CMGD=<index>` only; some firmware rejects
    /// the delete-flag parameter.
    #[serde(default)]
    pub cmgd_without_flag: bool,
    /// The command that ends every call; `AT+CHUP` (3GPP TS 27.007 §6.5)
    /// when absent, with `ATH` (ITU-T V.250 §6.3.6) tried when it fails.
    #[serde(default)]
    pub hangup: Option<String>,
}

impl Profile {
    /// Parses one profile file's text.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|source| ProfileError::Parse {
            name: name.to_string(),
            source: Box::new(source),
        })?;
        if profile.name != name {
            return Err(ProfileError::NameMismatch {
                file: name.to_string(),
                declared: profile.name,
            });
        }
        profile.validate()?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), ProfileError> {
        let invalid = |problem: String| ProfileError::Invalid {
            name: self.name.clone(),
            problem,
        };
        if self.sms.storages.is_empty() {
            return Err(invalid("sms.storages is empty".into()));
        }
        if !self
            .sms
            .storages
            .iter()
            .any(|s| s.name == self.sms.default_storage)
        {
            return Err(invalid(format!(
                "sms.default_storage {:?} is not one of sms.storages",
                self.sms.default_storage
            )));
        }
        const CHLD: [&str; 7] = ["0", "1", "1x", "2", "2x", "3", "4"];
        if let Some(bad) = self.voice.chld.iter().find(|v| !CHLD.contains(&v.as_str())) {
            return Err(invalid(format!("voice.chld has unknown service {bad:?}")));
        }
        if self.detect.manufacturer.is_empty() {
            return Err(invalid("detect.manufacturer is empty".into()));
        }
        if !matches!(self.boot.cfun, 0 | 1 | 4) {
            return Err(invalid(format!(
                "boot.cfun {}: a modem boots at level 0, 1 or 4 (3GPP TS 27.007 §8.2)",
                self.boot.cfun
            )));
        }
        Ok(())
    }

    /// The capacity of a storage, if the model has it.
    pub fn storage_capacity(&self, name: &str) -> Option<u16> {
        self.sms
            .storages
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
            .map(|s| s.capacity)
    }

    /// Whether this profile describes a modem reporting these identity strings.
    pub fn matches(&self, manufacturer: &str, model: &str) -> bool {
        let contains_any = |haystack: &str, needles: &[String]| {
            let haystack = haystack.to_ascii_lowercase();
            needles
                .iter()
                .any(|n| haystack.contains(&n.to_ascii_lowercase()))
        };
        contains_any(manufacturer, &self.detect.manufacturer)
            && (self.detect.model.is_empty() || contains_any(model, &self.detect.model))
    }
}

/// A set of profiles by name.
#[derive(Debug, Clone)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

impl Profiles {
    /// The profiles compiled into the binary from `firmware-config/`.
    pub fn builtin() -> Self {
        let by_name = BUILTIN
            .iter()
            .map(|(name, text)| {
                // cannot fail: compiled-in texts, each one loaded by a unit test below.
                let profile = Profile::from_toml(name, text)
                    .unwrap_or_else(|e| panic!("built-in profile is invalid: {e}"));
                (name.to_string(), profile)
            })
            .collect();
        Self { by_name }
    }

    /// Every `*.toml` in `dir`, on top of the built-in ones (a file replaces
    /// the built-in profile of the same name).
    pub fn load_dir(dir: &Path) -> Result<Self, ProfileError> {
        let mut profiles = Self::builtin();
        let read_error = |source| ProfileError::Read {
            path: dir.display().to_string(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let profile = Profile::from_toml(&name, &text)?;
            profiles.by_name.insert(name, profile);
        }
        Ok(profiles)
    }

    pub fn get(&self, name: &str) -> Result<&Profile, ProfileError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ProfileError::Unknown(name.to_string(), self.names().join(", ")))
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.by_name.values()
    }

    /// The profile for a modem reporting these identity strings; the generic
    /// 27.007 profile when no specific one matches.
    pub fn detect(&self, manufacturer: &str, model: &str) -> &Profile {
        self.by_name
            .values()
            .filter(|p| p.name != GENERIC)
            .find(|p| p.matches(manufacturer, model))
            // cannot fail: sets start from the built-ins, generic among them; files only replace.
            .unwrap_or_else(|| &self.by_name[GENERIC])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_file_loads_with_no_unknown_key() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let name = path.file_stem().unwrap().to_str().unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            Profile::from_toml(name, &text).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                BUILTIN.iter().any(|(n, _)| *n == name),
                "{name}.toml is not compiled into the binary: add it to BUILTIN"
            );
            seen += 1;
        }
        assert_eq!(seen, BUILTIN.len());
        let names = Profiles::builtin().names();
        for required in [
            "generic",
            "simcom-sim800",
            "quectel-ec25",
            "huawei-e173",
            "terse",
        ] {
            assert!(names.iter().any(|n| n == required), "{required} missing");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let text = BUILTIN[0]
            .1
            .replace("[identity]", "colour = \"red\"\n[identity]");
        let error = Profile::from_toml("generic", &text).unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn detection_by_identity_falls_back_to_generic() {
        let profiles = Profiles::builtin();
        for profile in profiles.iter() {
            let found = profiles.detect(&profile.identity.manufacturer, &profile.identity.model);
            assert_eq!(found.name, profile.name);
        }
        assert_eq!(profiles.detect("ACME", "X1").name, GENERIC);
        assert_eq!(profiles.detect("huawei", "E1752").name, "huawei-e173");
    }

    #[test]
    fn an_implemented_list_names_commands_by_their_form() {
        let terse = Profiles::builtin().get("terse").unwrap().commands.clone();
        assert!(!terse.implements(""), "a bare AT is refused");
        assert!(terse.implements("E0") && terse.implements("E1"));
        assert!(terse.implements("+CPIN?") && terse.implements("+CPIN=\"1234\""));
        assert!(terse.implements("+CPMS=\"SM\",\"SM\",\"SM\""));
        assert!(!terse.implements("+CPMS=?") && !terse.implements("+CPMS?"));
        assert!(terse.implements("+CMGF=0") && !terse.implements("+CMGF=1"));
        assert!(terse.implements("D+447700900123;"));
        assert!(!terse.implements("+CCID") && !terse.implements("+CHLD=?"));
        assert!(!terse.implements("EX"));
        let generic = Profiles::builtin().get("generic").unwrap().commands.clone();
        assert!(generic.implements("") && generic.implements("+ANYTHING"));
    }
}
