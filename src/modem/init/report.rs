//! What bringing a modem up found, field by field, and what failed on the
//! way: the driver keeps what it needs as a [`ModemIdentity`], `simmask
//! probe` prints all of it.

use serde::Serialize;

use super::ModemIdentity;
use crate::modem::error::AtError;
use crate::modem::parse::Registration;
use crate::profile::Profile;

/// Everything [`super::bring_up`] found out.
#[derive(Debug, Clone, PartialEq)]
pub struct InitReport {
    pub identity: Identity,
    /// The profile chosen from manufacturer and model (the generic one when
    /// neither is known).
    pub profile: Profile,
    /// The `+CPIN` state last read: `READY` once unlocked, else what the SIM
    /// asks for (`SIM PIN`, `SIM PUK` …); `None` when the modem gave none.
    pub pin_state: Option<String>,
    /// The functionality level the modem was found at (`AT+CFUN?`: 1 full,
    /// 0 minimum, 4 radio off), if it said.
    pub functionality: Option<u8>,
    /// The modem was found with its radio off (`+CFUN: 0` or `4`) and
    /// switched on.
    pub powered_on: bool,
    pub capabilities: Capabilities,
    /// The storages messages can be read from as the modem lists them
    /// (`AT+CPMS=?`, first list, broadcast storage included); empty when
    /// it does not answer.
    pub readable_storages: Vec<String>,
    /// The storages selected once set up, with their counts (`AT+CPMS?`).
    pub storage_use: Vec<StorageUse>,
    pub network: Network,
    /// Every step that failed, in the order met. An identity field left
    /// `None` has at least one entry for its [`Step`].
    pub failures: Vec<Failure>,
}

/// Who the modem and its SIM are. Each field is found (or not) on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// `AT+CGMI`, `AT+GMI` or `ATI`.
    pub manufacturer: Option<String>,
    /// `AT+CGMM`, `AT+GMM` or `ATI`.
    pub model: Option<String>,
    /// `AT+CGMR`, `AT+GMR` or `ATI`.
    pub revision: Option<String>,
    /// `AT+CGSN`, `AT+GSN` or `ATI`.
    pub imei: Option<String>,
    /// The vendor's ICCID command, the others known, then EF_ICCID.
    pub iccid: Option<String>,
    /// `AT+CIMI`, once the SIM is unlocked.
    pub imsi: Option<String>,
    /// `AT+CNUM`, when the SIM knows its number.
    pub msisdn: Option<String>,
}

impl Identity {
    /// What the pool knows the SIM by (see [`SimId`]).
    pub fn sim_id(&self) -> Option<SimId> {
        SimId::of(self.iccid.as_deref(), self.imsi.as_deref())
    }
}

/// What a SIM is known by: its ICCID, or its IMSI when the ICCID cannot be
/// read (firmware without a vendor ICCID command or `AT+CRSM`). The id is a
/// plain string so the store and the API key on it as they always did: the
/// ICCID itself, or `imsi:` and the IMSI (ICCIDs are digits, so the two
/// never meet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SimId(String);

/// Where a [`SimId`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdSource {
    Iccid,
    Imsi,
}

impl SimId {
    const IMSI: &'static str = "imsi:";

    /// The ICCID when there is one, else the IMSI; `None` with neither.
    pub fn of(iccid: Option<&str>, imsi: Option<&str>) -> Option<SimId> {
        match (iccid, imsi) {
            (Some(iccid), _) if !iccid.is_empty() => Some(SimId(iccid.to_string())),
            (_, Some(imsi)) if !imsi.is_empty() => Some(SimId(format!("{}{imsi}", Self::IMSI))),
            _ => None,
        }
    }

    /// Reads an id as the store and the API hold it.
    pub fn parse(id: &str) -> SimId {
        SimId(id.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn source(&self) -> IdSource {
        if self.0.starts_with(Self::IMSI) {
            IdSource::Imsi
        } else {
            IdSource::Iccid
        }
    }

    /// The ICCID, when the id is one.
    pub fn iccid(&self) -> Option<&str> {
        (self.source() == IdSource::Iccid).then_some(self.0.as_str())
    }

    /// The IMSI, when the id is one.
    pub fn imsi(&self) -> Option<&str> {
        self.0.strip_prefix(Self::IMSI)
    }
}

impl std::fmt::Display for SimId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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
    /// `AT+CHLD=?` services (`1x`, `2`, `3` multiparty, `4` transfer, …);
    /// `None` when the modem did not say (the services are then tried, not
    /// assumed missing).
    pub chld: Option<Vec<String>>,
    /// The modem places and answers voice calls.
    pub voice: bool,
}

impl Capabilities {
    pub fn multiparty(&self) -> bool {
        self.chld.iter().flatten().any(|s| s == "3")
    }

    pub fn transfer(&self) -> bool {
        self.chld.iter().flatten().any(|s| s == "4")
    }
}

/// One message storage and how full it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageUse {
    pub name: String,
    pub used: u32,
    pub total: u32,
}

/// The network as bring-up found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// `None` when unknown (`+CSQ` rssi 99) or not read.
    pub signal_dbm: Option<i16>,
    pub registration: Option<Registration>,
}

/// One step of bring-up that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub step: Step,
    /// The command line sent.
    pub command: String,
    /// How it failed; an answer without the value sought is an
    /// [`AtError::Parse`].
    pub error: AtError,
}

/// The steps of bring-up, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `ATE0`.
    Echo,
    /// `ATV1`.
    Verbose,
    /// `AT+CMEE`: verbose error reports.
    ErrorReports,
    /// `AT+CFUN?`, and `AT+CFUN=1` when the radio is off.
    Functionality,
    Manufacturer,
    Model,
    Revision,
    Imei,
    /// A line of the profile's own initialisation.
    ProfileInit,
    Iccid,
    /// `AT+CPIN?`.
    PinState,
    /// Typing the configured PIN, or finding none to type.
    Unlock,
    Imsi,
    Msisdn,
    /// `AT+CMGF=0`.
    PduMode,
    /// `AT+CPMS=?`.
    Storages,
    /// `AT+CPMS=<mem>,<mem>,<mem>`.
    ReceiveStorage,
    /// `AT+CNMI=?` and `AT+CNMI=<setting>`.
    MessageRouting,
    /// `AT+CSMS`.
    SmsService,
    /// `AT+CLIP=1`.
    CallerId,
    /// `AT+CREG=1`.
    RegistrationReports,
    /// `AT+CTZU=1`: the network sets the modem's clock.
    NetworkTime,
    /// `AT+CCWA=1`.
    CallWaiting,
    /// `AT+CLCC=1`.
    CallReports,
    /// The vendor's DTMF detection (`AT+DDET=1`, `AT+QTONEDET=1`).
    KeyDetection,
    /// `AT+CHLD=?`.
    CallServices,
    /// `AT+CLCC`.
    Voice,
    /// `AT+CPMS?`.
    StorageUse,
    Signal,
    Registration,
    Operator,
}

impl Step {
    /// The driver cannot run the modem when this failed: a SIM still
    /// locked answers nothing useful, and everything the driver sends and
    /// reads is PDU (3GPP TS 27.005 §3.2.3).
    pub fn blocks_driver(self) -> bool {
        matches!(self, Step::Unlock | Step::PduMode)
    }
}

impl InitReport {
    /// The failures of `step`, in the order met: why its field is missing.
    pub fn failures_of(&self, step: Step) -> impl Iterator<Item = &Failure> {
        self.failures.iter().filter(move |f| f.step == step)
    }

    /// The first failure the driver cannot run the modem with.
    pub fn driver_blocker(&self) -> Option<&AtError> {
        self.failures
            .iter()
            .find(|f| f.step.blocks_driver())
            .map(|f| &f.error)
    }

    /// What the actor keeps of the report, unless something the driver
    /// cannot run without failed.
    pub fn into_driver(self, path: &str) -> Result<(ModemIdentity, Profile), AtError> {
        if let Some(error) = self.driver_blocker() {
            return Err(error.clone());
        }
        let Identity {
            manufacturer,
            model,
            revision,
            imei,
            iccid,
            imsi,
            msisdn,
        } = self.identity;
        let identity = ModemIdentity {
            path: path.to_string(),
            imei,
            iccid,
            imsi,
            msisdn,
            manufacturer: manufacturer.unwrap_or_default(),
            model: model.unwrap_or_default(),
            revision: revision.unwrap_or_default(),
            profile: self.profile.name.clone(),
            pin_state: self.pin_state,
            capabilities: self.capabilities,
        };
        Ok((identity, self.profile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profiles;

    fn report(failures: Vec<Failure>) -> InitReport {
        InitReport {
            identity: Identity {
                manufacturer: Some("SIMMASK".into()),
                imei: Some("356938035643809".into()),
                ..Identity::default()
            },
            profile: Profiles::builtin().detect("", "").clone(),
            pin_state: Some("SIM PIN".into()),
            functionality: Some(1),
            powered_on: false,
            capabilities: Capabilities::default(),
            readable_storages: Vec::new(),
            storage_use: Vec::new(),
            network: Network::default(),
            failures,
        }
    }

    fn failure(step: Step, error: AtError) -> Failure {
        Failure {
            step,
            command: "AT".into(),
            error,
        }
    }

    #[test]
    fn the_driver_is_refused_the_first_failure_it_cannot_run_with() {
        let locked = AtError::PinRequired {
            iccid: None,
            state: "SIM PIN".into(),
        };
        let report = report(vec![
            failure(Step::Iccid, AtError::Error),
            failure(Step::Unlock, locked.clone()),
            failure(Step::PduMode, AtError::cme("SIM PIN required")),
        ]);
        assert_eq!(report.driver_blocker(), Some(&locked));
        assert_eq!(report.failures_of(Step::Iccid).count(), 1);
        assert_eq!(report.into_driver("/dev/ttyUSB0").err(), Some(locked));
    }

    #[test]
    fn missing_fields_reach_the_driver_as_they_always_did() {
        let (identity, profile) = report(vec![failure(Step::Revision, AtError::Error)])
            .into_driver("/dev/ttyUSB0")
            .expect("nothing blocks the driver");
        assert_eq!(identity.manufacturer, "SIMMASK");
        assert_eq!(identity.model, "");
        assert_eq!(identity.revision, "");
        assert_eq!(identity.imei.as_deref(), Some("356938035643809"));
        assert_eq!(identity.iccid, None);
        assert_eq!(identity.profile, profile.name);
        assert_eq!(identity.path, "/dev/ttyUSB0");
    }

    #[test]
    fn a_sim_is_known_by_its_iccid_else_by_its_imsi() {
        let by_iccid = SimId::of(Some("8944000000000000018"), Some("001010000000001")).unwrap();
        assert_eq!(by_iccid.as_str(), "8944000000000000018");
        assert_eq!(by_iccid.source(), IdSource::Iccid);
        assert_eq!(by_iccid.iccid(), Some("8944000000000000018"));
        let by_imsi = SimId::of(None, Some("001010000000001")).unwrap();
        assert_eq!(by_imsi.as_str(), "imsi:001010000000001");
        assert_eq!(by_imsi.source(), IdSource::Imsi);
        assert_eq!(by_imsi.iccid(), None);
        assert_eq!(by_imsi.imsi(), Some("001010000000001"));
        assert_eq!(SimId::parse("imsi:001010000000001"), by_imsi);
        assert_eq!(SimId::of(Some(""), None), None);
    }
}
