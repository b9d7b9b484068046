//! The modem actor: one tokio task owns one serial port, runs one request at
//! a time, types every URC into a [`ModemEvent`], and reopens the port with
//! backoff when it vanishes. [`ModemHandle`] is the cheap, cloneable way in.
//!
//! While the port is gone every request fails at once with
//! [`AtError::Unplugged`]; a request interrupted by the unplug fails with it
//! too, so callers can retry once [`ModemEvent::Replugged`] arrives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::command::Command;
use super::error::AtError;
use super::init::initialise;
pub use super::init::{Capabilities, ModemIdentity, ModemOptions};
use super::network::{self, AtExec};
pub use super::parse::{Call, CallState, Signal};
use super::parse::{Registration, parse_clcc, parse_cmgl, parse_cmgr, parse_cmgs};
use super::port::AtPort;
use super::urc::{Urc, parse_urc};
use crate::pdu::{self, Address, SubmitOptions};
use crate::profile::Profile;

/// How long after `RING` a `+CLIP` may still come to name the caller.
const CLIP_AFTER_RING: Duration = Duration::from_millis(500);
/// How long the network may take to answer a USSD request.
const USSD_ANSWER: Duration = Duration::from_secs(30);
/// Reopening a vanished port: first wait, and the longest wait.
const REOPEN_FIRST: Duration = Duration::from_millis(200);
const REOPEN_MAX: Duration = Duration::from_secs(5);

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
    async fn run(mut self) {
        self.dispatch_urcs().await;
        let mut reopen_wait = REOPEN_FIRST;
        loop {
            if self.announce_unplug {
                self.announce_unplug = false;
                tracing::warn!(path = %self.path, "modem port gone; reopening with backoff");
                self.emit(ModemEvent::Unplugged).await;
            }
            if self.port.is_none() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    request = self.inbox.recv() => match request {
                        Some(request) => request.fail(AtError::Unplugged),
                        None => return,
                    },
                    () = tokio::time::sleep(reopen_wait) => {
                        if self.reopen().await {
                            reopen_wait = REOPEN_FIRST;
                        } else {
                            reopen_wait = (reopen_wait * 2).min(REOPEN_MAX);
                        }
                    }
                }
                continue;
            }
            let ring_deadline = self.ring_since.map(|at| at + CLIP_AFTER_RING);
            let Some(port) = self.port.as_mut() else {
                continue;
            };
            tokio::select! {
                () = self.stop.cancelled() => return,
                request = self.inbox.recv() => match request {
                    Some(request) => self.serve(request).await,
                    None => return,
                },
                read = port.read_unsolicited() => {
                    if read.is_err() {
                        self.lose_port();
                    }
                }
                () = sleep_until_or_forever(ring_deadline) => {
                    self.ring_since = None;
                    self.emit(ModemEvent::Ring { caller: None }).await;
                }
            }
            self.dispatch_urcs().await;
        }
    }

    /// Tries to open the path again and re-initialise; true when back.
    async fn reopen(&mut self) -> bool {
        let mut port = match AtPort::open_with_baud(&self.path, self.options.baud) {
            Ok(port) => port,
            Err(error) => {
                tracing::trace!(path = %self.path, %error, "port not back yet");
                return false;
            }
        };
        match initialise(&mut port, &self.path, &self.options).await {
            Ok((identity, profile)) => {
                tracing::info!(path = %self.path, profile = %identity.profile, "modem back");
                *self.identity.write().unwrap_or_else(|e| e.into_inner()) = identity;
                self.profile = profile;
                self.port = Some(port);
                self.selected_storage = None;
                self.connected.store(true, Ordering::Release);
                self.emit(ModemEvent::Replugged).await;
                self.dispatch_urcs().await;
                true
            }
            Err(error) => {
                tracing::debug!(path = %self.path, %error, "modem not back yet");
                false
            }
        }
    }

    fn lose_port(&mut self) {
        if self.port.take().is_some() {
            self.connected.store(false, Ordering::Release);
            self.announce_unplug = true;
        }
    }

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

    /// `AT+CFUN=1,1`, the boot time the profile gives, then initialisation
    /// again on the same port. A port that vanished meanwhile (USB
    /// re-enumeration) is reopened by the main loop instead.
    async fn reset(&mut self) -> Result<(), AtError> {
        // Modems answer OK before rebooting; a stuck one will not answer.
        let reset = Command::plain("AT+CFUN=1,1").with_timeout(Duration::from_secs(5));
        self.exec(&reset).await?;
        self.connected.store(false, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(self.profile.boot.reset_ms)).await;
        let Some(port) = self.port.as_mut() else {
            return Ok(());
        };
        // Boot noise (RDY, +CFUN: 1 …) is read and dropped with the answers.
        match initialise(port, &self.path, &self.options).await {
            Ok((identity, profile)) => {
                *self.identity.write().unwrap_or_else(|e| e.into_inner()) = identity;
                self.profile = profile;
                self.selected_storage = None;
                self.connected.store(true, Ordering::Release);
                self.emit(ModemEvent::Replugged).await;
            }
            Err(error) => {
                tracing::warn!(%error, "modem did not come back from its reset; reopening");
                self.port = None;
                self.announce_unplug = true;
            }
        }
        Ok(())
    }

    async fn send_sms(
        &mut self,
        to: &str,
        text: &str,
        status_report: bool,
    ) -> Result<Vec<u8>, AtError> {
        let destination = Address::from_number(to).map_err(|e| {
            AtError::Invalid(format!("destination {}: {e}", crate::number::redact(to)))
        })?;
        let reference = self.concat_reference;
        self.concat_reference = self.concat_reference.wrapping_add(1);
        let options = SubmitOptions {
            status_report,
            ..SubmitOptions::default()
        };
        let parts = pdu::encode_submit(&destination, text, reference, &options)
            .map_err(|e| AtError::Invalid(format!("message text: {e}")))?;
        let mut references = Vec::with_capacity(parts.len());
        for part in parts {
            let lines = self
                .exec_pdu(&Command::send_pdu(part.tpdu_length), &part.hex)
                .await?;
            let line = lines
                .iter()
                .find(|l| l.starts_with("+CMGS:"))
                .ok_or_else(|| AtError::Parse {
                    command: "+CMGS",
                    line: lines.join(" | "),
                    reason: "no +CMGS: <mr> in the answer".into(),
                })?;
            references.push(parse_cmgs(line)?);
        }
        Ok(references)
    }

    /// Selects `storage` for reading and deleting unless it already is.
    async fn select_storage(&mut self, storage: &str) -> Result<(), AtError> {
        if self.selected_storage.as_deref() == Some(storage) {
            return Ok(());
        }
        self.exec(&Command::select_storage(storage)?).await?;
        self.selected_storage = Some(storage.to_string());
        Ok(())
    }

    async fn read_sms(&mut self, storage: &str, index: u32) -> Result<StoredSms, AtError> {
        self.select_storage(storage).await?;
        let lines = self
            .exec(&Command::new(format!("AT+CMGR={index}"), "+CMGR:"))
            .await?;
        let mut messages = pair_pdus(&lines, "+CMGR:", |line| {
            parse_cmgr(line).map(|status| (index, status))
        })?;
        let (index, status, pdu_hex) = messages.pop().ok_or_else(|| AtError::Parse {
            command: "+CMGR",
            line: lines.join(" | "),
            reason: format!("no message at {storage} {index}"),
        })?;
        Ok(StoredSms {
            storage: storage.to_string(),
            index,
            pdu_hex,
            status,
        })
    }

    async fn list_sms(&mut self) -> Result<Vec<StoredSms>, AtError> {
        let storages = self
            .identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .capabilities
            .storages
            .clone();
        let mut all = Vec::new();
        for storage in storages {
            self.select_storage(&storage).await?;
            // 4: all messages, read or not (3GPP TS 27.005 §3.4.2, PDU mode).
            let lines = self.exec(&Command::new("AT+CMGL=4", "+CMGL:")).await?;
            for (index, status, pdu_hex) in pair_pdus(&lines, "+CMGL:", parse_cmgl)? {
                all.push(StoredSms {
                    storage: storage.clone(),
                    index,
                    pdu_hex,
                    status,
                });
            }
        }
        Ok(all)
    }

    async fn delete_sms(&mut self, storage: &str, index: u32) -> Result<(), AtError> {
        self.select_storage(storage).await?;
        let line = if self.profile.driver.cmgd_without_flag {
            format!("AT+CMGD={index}")
        } else {
            format!("AT+CMGD={index},0")
        };
        self.exec(&Command::plain(line)).await.map(drop)
    }

    async fn hangup(&mut self) -> Result<(), AtError> {
        let command = self
            .profile
            .driver
            .hangup
            .clone()
            .unwrap_or_else(|| "AT+CHUP".to_string());
        match self.exec(&Command::plain(command)).await {
            Ok(_) => Ok(()),
            Err(AtError::Unplugged) => Err(AtError::Unplugged),
            Err(error) => {
                tracing::debug!(%error, "hang-up command refused; trying ATH");
                self.exec(&Command::plain("ATH")).await.map(drop)
            }
        }
    }

    async fn list_calls(&mut self) -> Result<Vec<Call>, AtError> {
        let lines = self.exec(&Command::new("AT+CLCC", "+CLCC:")).await?;
        lines
            .iter()
            .filter(|l| l.starts_with("+CLCC:"))
            .filter_map(|l| parse_clcc(l).transpose())
            .collect()
    }

    async fn ussd(&mut self, code: &str) -> Result<String, AtError> {
        self.exec(&Command::ussd(code)?).await?;
        let deadline = Instant::now() + USSD_ANSWER;
        loop {
            let port = self.port.as_mut().ok_or(AtError::Unplugged)?;
            if let Some(at) = port
                .urcs
                .iter()
                .position(|u| u.first().is_some_and(|l| l.starts_with("+CUSD:")))
            {
                let lines = port.urcs.remove(at);
                return match parse_urc(&lines)? {
                    // 0 done, 1 more expected, 2 ended by the network: all
                    // may carry the answer (3GPP TS 27.007 §7.15 <m>).
                    Urc::Ussd {
                        status: 0..=2,
                        text: Some(text),
                    } => Ok(text),
                    Urc::Ussd { status: 0..=1, .. } => Ok(String::new()),
                    Urc::Ussd { status, .. } => Err(AtError::Cme {
                        code: None,
                        text: format!("ussd ended by the network (+CUSD status {status})"),
                    }),
                    _ => Err(AtError::Parse {
                        command: "+CUSD",
                        line: lines.join(" | "),
                        reason: "not a +CUSD answer".into(),
                    }),
                };
            }
            match tokio::time::timeout_at(deadline, port.read_unsolicited()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    self.lose_port();
                    return Err(error);
                }
                Err(_) => return Err(AtError::Timeout(USSD_ANSWER)),
            }
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

    /// Types the URCs the port collected and sends them on as events.
    async fn dispatch_urcs(&mut self) {
        loop {
            let Some(port) = self.port.as_mut() else {
                return;
            };
            if port.urcs.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut port.urcs);
            for lines in batch {
                self.dispatch(&lines).await;
            }
        }
    }

    async fn dispatch(&mut self, lines: &[String]) {
        let urc = match parse_urc(lines) {
            Ok(urc) => urc,
            Err(error) => {
                tracing::debug!(%error, "unreadable URC dropped");
                return;
            }
        };
        let event = match urc {
            Urc::SmsStored { storage, index } => ModemEvent::SmsStored { storage, index },
            Urc::SmsDelivered { pdu_hex } => ModemEvent::SmsDirect { pdu_hex },
            Urc::StatusReport { pdu_hex } => {
                self.emit(ModemEvent::StatusReport { pdu_hex }).await;
                if self.sms_service() == 1 {
                    // Phase 2+ wants every +CDS acknowledged (27.005 §3.4.4).
                    if let Err(error) = self.exec(&Command::plain("AT+CNMA")).await {
                        tracing::debug!(%error, "status report acknowledgement failed");
                    }
                }
                return;
            }
            Urc::StatusReportStored { storage, index } => {
                ModemEvent::StatusReportStored { storage, index }
            }
            Urc::Ring => {
                self.ring_since.get_or_insert_with(Instant::now);
                return;
            }
            Urc::CallerId { number } | Urc::CallWaiting { number } => {
                self.ring_since = None;
                ModemEvent::Ring { caller: number }
            }
            Urc::CallEnded { busy: true } => ModemEvent::Busy,
            Urc::Call(_) | Urc::CallEnded { .. } | Urc::CallProgress => ModemEvent::CallsChanged,
            Urc::Ussd { text, .. } => ModemEvent::Ussd {
                text: text.unwrap_or_default(),
            },
            Urc::Registration(status) => {
                ModemEvent::Registration(Registration::from_status(status))
            }
            Urc::Ignored => {
                tracing::trace!(?lines, "vendor noise ignored");
                return;
            }
        };
        self.emit(event).await;
    }

    fn sms_service(&self) -> u8 {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .capabilities
            .sms_service
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

/// Waits until `deadline`, or forever when there is none.
async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Pairs each header line (`+CMGL: …` / `+CMGR: …`) with the PDU line that
/// follows it (3GPP TS 27.005 §3.4.2–3, PDU mode).
fn pair_pdus<F>(
    lines: &[String],
    prefix: &str,
    header: F,
) -> Result<Vec<(u32, u8, String)>, AtError>
where
    F: Fn(&str) -> Result<(u32, u8), AtError>,
{
    let mut out = Vec::new();
    let mut pending: Option<(u32, u8)> = None;
    for line in lines {
        if line.starts_with(prefix) {
            pending = Some(header(line)?);
        } else if let Some((index, status)) = pending.take() {
            let pdu = line.trim().to_string();
            if pdu.is_empty() || !pdu.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(AtError::Parse {
                    command: "+CMGL",
                    line: line.clone(),
                    reason: "expected a hexadecimal PDU line".into(),
                });
            }
            out.push((index, status, pdu));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // PDU-mode listing shape of 3GPP TS 27.005 §3.4.2; the PDUs are the
    // SMS-DELIVER examples of the digester tests.
    #[test]
    fn cmgl_headers_pair_with_their_pdus() {
        let lines: Vec<String> = [
            "+CMGL: 1,0,,24",
            "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07",
            "+CMGL: 4,1,,24",
            "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD08",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pairs = pair_pdus(&lines, "+CMGL:", parse_cmgl).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[1].0, pairs[1].1), (4, 1));
        assert!(pairs[1].2.ends_with("FD08"));
        let broken: Vec<String> = vec!["+CMGL: 1,0,,24".into(), "not hex".into()];
        assert!(pair_pdus(&broken, "+CMGL:", parse_cmgl).is_err());
    }

    #[test]
    fn identifiers_are_cut_to_their_tail_for_logs() {
        assert_eq!(tail(Some("356938035643809")), "3809");
        assert_eq!(tail(Some("12")), "12");
        assert_eq!(tail(None), "-");
    }
}
