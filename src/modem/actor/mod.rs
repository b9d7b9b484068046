//! The modem actor: one tokio task owns one serial port, runs one request at
//! a time, types every URC into a [`ModemEvent`], and reopens the port with
//! backoff when it vanishes. [`ModemHandle`] is the cheap, cloneable way in.
//!
//! While the port is gone every request fails at once with
//! [`AtError::Unplugged`]; a request interrupted by the unplug fails with it
//! too, so callers can retry once [`ModemEvent::Replugged`] arrives.
//!
//! This file holds the handle, its requests and the actor's state; the
//! actor's work is split by concern:
//!
//! - `lifecycle.rs`: the main loop, losing and reopening the port, reset.
//! - `sms.rs`: sending, reading, listing and deleting messages.
//! - `calls.rs`: hanging up and listing calls; `ussd.rs`: USSD requests.
//! - `urcs.rs`: URCs typed into [`ModemEvent`]s.

mod calls;
mod lifecycle;
mod sms;
mod urcs;
mod ussd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::command::Command;
use super::error::AtError;
use super::init::initialise;
pub use super::init::{Capabilities, ModemIdentity, ModemOptions};
use super::network::{self, AtExec};
use super::parse::Registration;
pub use super::parse::{Call, CallState, Signal};
use super::port::AtPort;
use crate::profile::{DtmfDetection, Profile};

/// A message as stored on the SIM or in the modem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredSms {
    pub storage: String,
    pub index: u32,
    /// The PDU as the modem gives it, with its SMSC field.
    pub pdu_hex: String,
    /// 3GPP TS 27.005 §3.1 `<stat>`: 0 unread, 1 read, 2 unsent, 3 sent.
    pub status: u8,
}

/// What a modem reports on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModemEvent {
    /// `+CMTI`: a message was stored; read it with [`ModemHandle::read_sms`].
    SmsStored {
        storage: String,
        index: u32,
    },
    /// `+CMT`: a message routed directly; commit it, then [`ModemHandle::ack_sms`].
    SmsDirect {
        pdu_hex: String,
    },
    /// `+CDS`: a status report routed directly (acknowledged by the actor
    /// when the message service requires it).
    StatusReport {
        pdu_hex: String,
    },
    /// `+CDSI`: a status report was stored.
    StatusReportStored {
        storage: String,
        index: u32,
    },
    /// `RING` / `+CRING`, with the `+CLIP` caller when the network gave one.
    Ring {
        caller: Option<String>,
    },
    /// A call ended or changed (`NO CARRIER`, `BUSY`, `+CLCC`): re-read
    /// [`ModemHandle::list_calls`].
    CallsChanged,
    /// `BUSY`: the call the SIM placed met a busy party (a call also ended,
    /// as with [`ModemEvent::CallsChanged`]).
    Busy,
    /// A network-initiated USSD message.
    Ussd {
        text: String,
    },
    Registration(Registration),
    /// A key the other side of a call pressed, once detection is on
    /// ([`ModemHandle::detect_dtmf`]).
    Dtmf {
        key: char,
    },
    /// The port is gone; the actor reopens the same path with backoff.
    Unplugged,
    /// The port is back and the modem initialised again.
    Replugged,
}

/// What [`spawn_modem`] returns: the handle and the actor's events.
pub struct ModemSpawn {
    pub handle: ModemHandle,
    pub events: mpsc::Receiver<ModemEvent>,
}

type Reply<T> = oneshot::Sender<Result<T, AtError>>;

/// One request to the actor; each carries its typed reply.
enum Request {
    SendSms {
        to: String,
        text: String,
        status_report: bool,
        reply: Reply<Vec<u8>>,
    },
    ReadSms {
        storage: String,
        index: u32,
        reply: Reply<StoredSms>,
    },
    ListSms(Reply<Vec<StoredSms>>),
    DeleteSms {
        storage: String,
        index: u32,
        reply: Reply<()>,
    },
    Hangup(Reply<()>),
    ListCalls(Reply<Vec<Call>>),
    Ussd {
        code: String,
        reply: Reply<String>,
    },
    Signal(Reply<Signal>),
    Registration(Reply<Registration>),
    Reset(Reply<()>),
    /// One command whose answer lines go back as they are.
    Run {
        command: Command,
        reply: Reply<Vec<String>>,
    },
}

impl Request {
    /// Answers the request with `error` without running it.
    fn fail(self, error: AtError) {
        match self {
            Request::SendSms { reply, .. } => drop(reply.send(Err(error))),
            Request::ReadSms { reply, .. } => drop(reply.send(Err(error))),
            Request::ListSms(reply) => drop(reply.send(Err(error))),
            Request::DeleteSms { reply, .. } => drop(reply.send(Err(error))),
            Request::Hangup(reply) => drop(reply.send(Err(error))),
            Request::ListCalls(reply) => drop(reply.send(Err(error))),
            Request::Ussd { reply, .. } => drop(reply.send(Err(error))),
            Request::Signal(reply) => drop(reply.send(Err(error))),
            Request::Registration(reply) => drop(reply.send(Err(error))),
            Request::Reset(reply) => drop(reply.send(Err(error))),
            Request::Run { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// The way into one modem actor. Cheap to clone; the actor stops when
/// [`ModemHandle::shutdown`] is called or every handle is dropped.
#[derive(Clone)]
pub struct ModemHandle {
    requests: mpsc::Sender<Request>,
    identity: Arc<RwLock<ModemIdentity>>,
    connected: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl std::fmt::Debug for ModemHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let identity = self.identity();
        f.debug_struct("ModemHandle")
            .field("path", &identity.path)
            .field("imei", &identity.imei)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl ModemHandle {
    /// The identity and capabilities found at the last (re-)initialisation.
    pub fn identity(&self) -> ModemIdentity {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The port is open and the modem initialised.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Stops the actor and closes its port.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, AtError> {
        if self.stop.is_cancelled() {
            return Err(AtError::Stopped);
        }
        if !self.is_connected() {
            return Err(AtError::Unplugged);
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(make(reply))
            .await
            .map_err(|_| AtError::Stopped)?;
        answer.await.map_err(|_| AtError::Stopped)?
    }

    async fn run(&self, command: Command) -> Result<Vec<String>, AtError> {
        self.request(|reply| Request::Run { command, reply }).await
    }

    /// Sends `text` to `to` in PDU mode, split into concatenated parts as
    /// needed; returns each part's TP-MR (for matching status reports).
    pub async fn send_sms(
        &self,
        to: &str,
        text: &str,
        status_report: bool,
    ) -> Result<Vec<u8>, AtError> {
        let (to, text) = (to.to_string(), text.to_string());
        self.request(|reply| Request::SendSms {
            to,
            text,
            status_report,
            reply,
        })
        .await
    }

    /// `AT+CMGR`: one stored message.
    pub async fn read_sms(&self, storage: &str, index: u32) -> Result<StoredSms, AtError> {
        let storage = storage.to_string();
        self.request(|reply| Request::ReadSms {
            storage,
            index,
            reply,
        })
        .await
    }

    /// `AT+CMGL=4` over every readable storage: all messages kept.
    pub async fn list_sms(&self) -> Result<Vec<StoredSms>, AtError> {
        self.request(Request::ListSms).await
    }

    /// `AT+CMGD`: deletes one stored message.
    pub async fn delete_sms(&self, storage: &str, index: u32) -> Result<(), AtError> {
        let storage = storage.to_string();
        self.request(|reply| Request::DeleteSms {
            storage,
            index,
            reply,
        })
        .await
    }

    /// `AT+CNMA` (3GPP TS 27.005 §3.4.4): acknowledges a direct `+CMT`
    /// once it is stored safely.
    pub async fn ack_sms(&self) -> Result<(), AtError> {
        self.run(Command::plain("AT+CNMA")).await.map(drop)
    }

    /// `ATD<number>;`: places a voice call.
    pub async fn dial(&self, number: &str) -> Result<(), AtError> {
        self.run(Command::dial(number)?).await.map(drop)
    }

    /// `ATA`: answers the ringing call.
    pub async fn answer(&self) -> Result<(), AtError> {
        self.run(Command::plain("ATA")).await.map(drop)
    }

    /// Ends every call (`AT+CHUP`, or the profile's command; `ATH` if that fails).
    pub async fn hangup(&self) -> Result<(), AtError> {
        self.request(Request::Hangup).await
    }

    /// `AT+CHLD=1<id>` (3GPP TS 27.007 §7.13): ends one call.
    pub async fn hangup_call(&self, id: u8) -> Result<(), AtError> {
        if !(1..=9).contains(&id) {
            return Err(AtError::Invalid(format!(
                "call id {id}: +CHLD=1x takes 1 to 9"
            )));
        }
        self.run(Command::plain(format!("AT+CHLD=1{id}")))
            .await
            .map(drop)
    }

    /// `AT+CHLD=2`: holds the active call (and takes the waiting or held one).
    pub async fn hold(&self) -> Result<(), AtError> {
        self.run(Command::plain("AT+CHLD=2")).await.map(drop)
    }

    /// `AT+CHLD=3`: joins the held and active calls (multiparty).
    pub async fn join(&self) -> Result<(), AtError> {
        self.run(Command::plain("AT+CHLD=3")).await.map(drop)
    }

    /// `AT+CHLD=4`: connects the two calls and leaves (explicit call transfer).
    pub async fn transfer(&self) -> Result<(), AtError> {
        self.run(Command::plain("AT+CHLD=4")).await.map(drop)
    }

    /// `AT+CMUT` (3GPP TS 27.007 §8.24): mutes the modem's microphone.
    pub async fn mute(&self, on: bool) -> Result<(), AtError> {
        self.run(Command::plain(format!("AT+CMUT={}", u8::from(on))))
            .await
            .map(drop)
    }

    /// Turns on the detection of keys pressed by the other side of a call,
    /// in the model's dialect (`AT+DDET=1`, `AT+QTONEDET=1`): they come as
    /// [`ModemEvent::Dtmf`].
    pub async fn detect_dtmf(&self, detection: DtmfDetection) -> Result<(), AtError> {
        self.run(Command::plain(detection.enable_command()))
            .await
            .map(drop)
    }

    /// `AT+CLCC`: the calls in progress.
    pub async fn list_calls(&self) -> Result<Vec<Call>, AtError> {
        self.request(Request::ListCalls).await
    }

    /// `AT+CUSD=1,<code>`: waits for the network's `+CUSD` answer.
    pub async fn ussd(&self, code: &str) -> Result<String, AtError> {
        Command::ussd(code)?;
        let code = code.to_string();
        self.request(|reply| Request::Ussd { code, reply }).await
    }

    /// `AT+CSQ`: signal in dBm.
    pub async fn signal(&self) -> Result<Signal, AtError> {
        self.request(Request::Signal).await
    }

    /// `AT+CPMS?` (3GPP TS 27.005 §3.2.2): each selected storage as
    /// `(name, used, total)`, the one new messages go to last.
    pub async fn storage_use(&self) -> Result<Vec<super::parse::Storage>, AtError> {
        let lines = self.run(Command::new("AT+CPMS?", "+CPMS:")).await?;
        match lines.iter().find(|line| line.starts_with("+CPMS:")) {
            Some(line) => super::parse::parse_cpms(line),
            None => Ok(Vec::new()),
        }
    }

    /// `AT+CCLK?` (3GPP TS 27.007 §8.15): the modem's clock, which the
    /// network sets (NITZ) once `AT+CTZU=1` lets it; `None` when the answer
    /// holds no time.
    pub async fn clock(&self) -> Result<Option<time::OffsetDateTime>, AtError> {
        let lines = self.run(Command::new("AT+CCLK?", "+CCLK:")).await?;
        Ok(lines.iter().find_map(|line| super::parse::parse_cclk(line)))
    }

    /// `AT+CREG?` (then `AT+CEREG?` on LTE) and `AT+COPS?`.
    pub async fn registration(&self) -> Result<Registration, AtError> {
        self.request(Request::Registration).await
    }

    /// `AT+CFUN=1,1` (3GPP TS 27.007 §8.2): resets the modem. The port
    /// usually vanishes and comes back; the actor reopens it.
    /// Once the modem is back it is initialised again (a reset forgets PDU
    /// mode, routing and the rest); `Replugged` follows.
    pub async fn reset(&self) -> Result<(), AtError> {
        self.request(Request::Reset).await
    }

    /// `AT`, asked once: whether the modem answers at all.
    pub async fn ping(&self) -> Result<(), AtError> {
        let mut ping = Command::plain("AT");
        ping.idempotent = false;
        self.run(ping).await.map(drop)
    }
}

/// Opens `path`, identifies the modem, initialises it from its profile and
/// starts its actor.
pub async fn spawn_modem(path: &str, options: ModemOptions) -> Result<ModemSpawn, AtError> {
    let mut port = AtPort::open_with_baud(path, options.baud)?;
    let (identity, profile) = initialise(&mut port, path, &options).await?;
    let span = tracing::info_span!(
        "modem",
        imei = %tail(identity.imei.as_deref()),
        iccid = %tail(identity.iccid.as_deref()),
    );
    span.in_scope(|| {
        tracing::info!(
            profile = %identity.profile,
            model = %identity.model,
            path,
            "modem initialised"
        )
    });
    let (requests, inbox) = mpsc::channel(32);
    let (events, events_rx) = mpsc::channel(options.event_capacity.max(1));
    let identity = Arc::new(RwLock::new(identity));
    let connected = Arc::new(AtomicBool::new(true));
    let stop = CancellationToken::new();
    let actor = Actor {
        path: path.to_string(),
        options,
        port: Some(port),
        profile,
        identity: identity.clone(),
        connected: connected.clone(),
        events,
        inbox,
        stop: stop.clone(),
        selected_storage: None,
        concat_reference: rand::random(),
        ring_since: None,
        announce_unplug: false,
    };
    tokio::spawn(actor.run().instrument(span));
    Ok(ModemSpawn {
        handle: ModemHandle {
            requests,
            identity,
            connected,
            stop,
        },
        events: events_rx,
    })
}

/// The last four characters of an identifier, for log lines.
fn tail(id: Option<&str>) -> String {
    let id = id.unwrap_or("-");
    let skip = id.chars().count().saturating_sub(4);
    id.chars().skip(skip).collect()
}

struct Actor {
    path: String,
    options: ModemOptions,
    /// `None` while the device is gone.
    port: Option<AtPort>,
    profile: Profile,
    identity: Arc<RwLock<ModemIdentity>>,
    connected: Arc<AtomicBool>,
    events: mpsc::Sender<ModemEvent>,
    inbox: mpsc::Receiver<Request>,
    stop: CancellationToken,
    /// The storage `AT+CPMS` last selected for reading and deleting.
    selected_storage: Option<String>,
    /// The concatenation reference of the next multipart message.
    concat_reference: u16,
    /// A `RING` waiting for its `+CLIP`.
    ring_since: Option<Instant>,
    /// The port was lost and `Unplugged` not yet sent.
    announce_unplug: bool,
}

impl Actor {
    async fn emit(&self, event: ModemEvent) {
        // Nobody listening is not the modem's problem.
        let _ = self.events.send(event).await;
    }

    async fn exec_pdu(&mut self, command: &Command, pdu_hex: &str) -> Result<Vec<String>, AtError> {
        let port = self.port.as_mut().ok_or(AtError::Unplugged)?;
        let result = port.command_with_pdu(command, pdu_hex).await;
        if matches!(result, Err(AtError::Unplugged)) {
            self.lose_port();
        }
        result
    }

    async fn serve(&mut self, request: Request) {
        match request {
            Request::SendSms {
                to,
                text,
                status_report,
                reply,
            } => drop(reply.send(self.send_sms(&to, &text, status_report).await)),
            Request::ReadSms {
                storage,
                index,
                reply,
            } => drop(reply.send(self.read_sms(&storage, index).await)),
            Request::ListSms(reply) => drop(reply.send(self.list_sms().await)),
            Request::DeleteSms {
                storage,
                index,
                reply,
            } => drop(reply.send(self.delete_sms(&storage, index).await)),
            Request::Hangup(reply) => drop(reply.send(self.hangup().await)),
            Request::ListCalls(reply) => drop(reply.send(self.list_calls().await)),
            Request::Ussd { code, reply } => drop(reply.send(self.ussd(&code).await)),
            Request::Signal(reply) => drop(reply.send(self.signal().await)),
            Request::Registration(reply) => drop(reply.send(self.registration().await)),
            Request::Reset(reply) => drop(reply.send(self.reset().await)),
            Request::Run { command, reply } => drop(reply.send(self.exec(&command).await)),
        }
    }

    async fn signal(&mut self) -> Result<Signal, AtError> {
        network::signal(self).await
    }

    /// A failed `AT+COPS?` only leaves the operator unknown.
    async fn registration(&mut self) -> Result<Registration, AtError> {
        network::registration(self)
            .await
            .map(|(registration, _)| registration)
    }
}

impl AtExec for Actor {
    /// Runs one command; a vanished port is noted for the main loop.
    async fn exec(&mut self, command: &Command) -> Result<Vec<String>, AtError> {
        let port = self.port.as_mut().ok_or(AtError::Unplugged)?;
        let mut result = port.run(command).await;
        if command.idempotent && matches!(result, Err(AtError::Timeout(_))) {
            tracing::debug!(command = %command.line, "timed out; asking once more");
            result = port.run(command).await;
        }
        if matches!(result, Err(AtError::Unplugged)) {
            self.lose_port();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_cut_to_their_tail_for_logs() {
        assert_eq!(tail(Some("356938035643809")), "3809");
        assert_eq!(tail(Some("12")), "12");
        assert_eq!(tail(None), "-");
    }
}
