//! One AT port over tokio-serial: sends a command line, feeds what comes back
//! to the pure digester and collects the response until its final result.
//! URCs seen meanwhile are kept for the caller (the modem actor) to type.
//!
//! Any read or write failure, and end of file, means the device is gone:
//! it is reported as [`AtError::Unplugged`] so callers can retry later.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::command::Command;
use super::digest::{Digest, DigestState, FinalResult, digest, digest_all};
use super::error::AtError;

/// How long a port stays quiet after an answer before a missing final
/// result is taken as the end of the response.
const QUIET_AFTER_ANSWER: Duration = Duration::from_millis(300);

/// Ends the PDU after the `> ` prompt (3GPP TS 27.005 §3.5.1).
const CTRL_Z: u8 = 0x1a;
/// Abandons the PDU input when the send cannot go on.
const ESC: u8 = 0x1b;

pub const DEFAULT_BAUD: u32 = 115_200;

pub struct AtPort {
    stream: SerialStream,
    buf: Vec<u8>,
    /// URCs that arrived while waiting for responses, oldest first.
    pub urcs: Vec<Vec<String>>,
}

/// What ends the wait for a response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    Final,
    /// A final result, or a quiet port once an answer line came (Wavecom's
    /// `AT+CPIN?` ends without `OK`).
    FinalOrQuiet,
    /// The `> ` prompt (or an error final result).
    Prompt,
}

fn gone(error: std::io::Error) -> AtError {
    tracing::debug!(%error, "port i/o failed: taking the modem as unplugged");
    AtError::Unplugged
}

impl AtPort {
    /// Opens `path` exclusively at 115200 baud.
    pub fn open(path: &str) -> Result<Self, AtError> {
        Self::open_with_baud(path, DEFAULT_BAUD)
    }

    /// Opens `path` exclusively at `baud`.
    pub fn open_with_baud(path: &str, baud: u32) -> Result<Self, AtError> {
        let stream = tokio_serial::new(path, baud)
            .open_native_async()
            .map_err(|e| AtError::Io(format!("opening {path}: {e}")))?;
        Ok(AtPort {
            stream,
            buf: Vec::new(),
            urcs: Vec::new(),
        })
    }

    /// Runs `line` (without `\r`); returns its information lines, those with
    /// `prefix` or any unrecognised line. Times out after `timeout`.
    pub async fn command(
        &mut self,
        line: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, AtError> {
        let state = DigestState {
            command: Some(line.to_string()),
            response_prefix: Some(prefix.to_string()),
            numeric_results: false,
        };
        self.write_line(line).await?;
        let until = if line.eq_ignore_ascii_case("AT+CPIN?") {
            Until::FinalOrQuiet
        } else {
            Until::Final
        };
        match tokio::time::timeout(timeout, self.collect(&state, until)).await {
            Ok(result) => result,
            Err(_) => Err(AtError::Timeout(timeout)),
        }
    }

    /// Sends `line` and waits up to `timeout` for any final result code,
    /// verbose or numeric (ITU-T V.250 §5.7.1), and returns it: an `ERROR`
    /// is an answer here, not a failure. Only silence (or output that never
    /// ends in a result code, such as NMEA sentences or QCDM frames) times
    /// out.
    pub async fn probe(&mut self, line: &str, timeout: Duration) -> Result<FinalResult, AtError> {
        let state = DigestState {
            command: Some(line.to_string()),
            response_prefix: Some("+NONE".to_string()),
            numeric_results: true,
        };
        self.write_line(line).await?;
        let wait = async {
            let mut chunk = [0u8; 512];
            loop {
                while let Some(unit) = self.next_digest(&state) {
                    match unit {
                        Digest::Final(result) => return Ok(result),
                        Digest::Urc(lines) => self.urcs.push(lines),
                        other => tracing::trace!(?other, "probe: output before a result code"),
                    }
                }
                let n = self.stream.read(&mut chunk).await.map_err(gone)?;
                if n == 0 {
                    return Err(AtError::Unplugged);
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(AtError::Timeout(timeout)),
        }
    }

    /// Reads and drops what the modem still sends until it has been quiet
    /// for `quiet` (a late answer to a command that timed out), keeping URCs;
    /// a port that never goes quiet is left after ten such periods.
    pub async fn settle(&mut self, quiet: Duration) -> Result<(), AtError> {
        let mut chunk = [0u8; 512];
        let give_up = tokio::time::Instant::now() + quiet * 10;
        while tokio::time::Instant::now() < give_up {
            match tokio::time::timeout(quiet, self.stream.read(&mut chunk)).await {
                Err(_) => break,
                Ok(read) => {
                    let n = read.map_err(gone)?;
                    if n == 0 {
                        return Err(AtError::Unplugged);
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        self.digest_after_response();
        // What is left is a line cut short: nothing a command will answer.
        self.buf.clear();
        Ok(())
    }

    /// Runs a typed command with its own prefix and timeout.
    pub async fn run(&mut self, command: &Command) -> Result<Vec<String>, AtError> {
        self.command(&command.line, command.prefix, command.timeout)
            .await
    }

    /// Runs a command that takes a PDU after the `> ` prompt (`AT+CMGS`,
    /// `AT+CMGW`, `AT+CNMA=0,<len>`): the line, the prompt, the PDU ended
    /// with Ctrl-Z, then the response. `timeout` covers the whole exchange.
    pub async fn command_with_pdu(
        &mut self,
        command: &Command,
        pdu_hex: &str,
    ) -> Result<Vec<String>, AtError> {
        let exchange = async {
            let mut state = DigestState {
                command: Some(command.line.clone()),
                response_prefix: Some(command.prefix.to_string()),
                numeric_results: false,
            };
            self.write_line(&command.line).await?;
            self.collect(&state, Until::Prompt).await?;
            let mut wire = pdu_hex.as_bytes().to_vec();
            wire.push(CTRL_Z);
            self.stream.write_all(&wire).await.map_err(gone)?;
            // With echo on, the modem repeats the PDU before answering.
            state.command = Some(pdu_hex.to_string());
            self.collect(&state, Until::Final).await
        };
        match tokio::time::timeout(command.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                // Leave the modem's PDU input mode so the next command is read.
                let _ = self.stream.write_all(&[ESC]).await;
                Err(AtError::Timeout(command.timeout))
            }
        }
    }

    /// Sends Esc (leaving message input after a `> ` prompt, if the modem
    /// is in it), then drops whatever it answers within a moment, so the
    /// next command gets its own answer.
    pub async fn cancel_input(&mut self) -> Result<(), AtError> {
        self.stream.write_all(&[ESC]).await.map_err(gone)?;
        self.settle(Duration::from_millis(300)).await
    }

    /// Waits for bytes with no command in flight and digests them: URCs go to
    /// [`AtPort::urcs`], stray lines and late final results are dropped.
    /// Cancel-safe: bytes are only taken once the read has completed.
    pub async fn read_unsolicited(&mut self) -> Result<(), AtError> {
        let mut chunk = [0u8; 512];
        let n = self.stream.read(&mut chunk).await.map_err(gone)?;
        if n == 0 {
            return Err(AtError::Unplugged);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        let (found, used) = digest_all(&self.buf, &DigestState::default());
        self.buf.drain(..used);
        for digest in found {
            match digest {
                Digest::Urc(lines) => self.urcs.push(lines),
                other => tracing::trace!(?other, "unsolicited output dropped"),
            }
        }
        Ok(())
    }

    /// The next unit in the buffer, read as `state` says; `None` when the
    /// buffer holds no complete unit.
    fn next_digest(&mut self, state: &DigestState) -> Option<Digest> {
        loop {
            let (found, used) = digest(&self.buf, state);
            self.buf.drain(..used);
            match found {
                Some(unit) => return Some(unit),
                None if used == 0 || self.buf.is_empty() => return None,
                None => {}
            }
        }
    }

    /// What came after a response's final result is read with no command in
    /// flight (a `NO CARRIER` there ends a call, not the command); its URCs
    /// are kept, the rest dropped.
    fn digest_after_response(&mut self) {
        while let Some(unit) = self.next_digest(&DigestState::default()) {
            match unit {
                Digest::Urc(lines) => self.urcs.push(lines),
                other => tracing::trace!(?other, "output after the response dropped"),
            }
        }
    }

    async fn write_line(&mut self, line: &str) -> Result<(), AtError> {
        let mut wire = line.as_bytes().to_vec();
        wire.push(b'\r');
        self.stream.write_all(&wire).await.map_err(gone)
    }

    /// Reads until `until` is met; information lines are returned.
    async fn collect(&mut self, state: &DigestState, until: Until) -> Result<Vec<String>, AtError> {
        let mut lines = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            while let Some(unit) = self.next_digest(state) {
                match unit {
                    Digest::Echo => {}
                    Digest::Prompt if until == Until::Prompt => return Ok(lines),
                    Digest::Prompt => {}
                    Digest::Line(l) => lines.push(l),
                    Digest::Urc(u) => self.urcs.push(u),
                    // `AT+CMGS=<n>` answers with the prompt or an error, never
                    // OK: an OK now is a late answer to an earlier command.
                    Digest::Final(FinalResult::Ok) if until == Until::Prompt => {
                        tracing::debug!("late OK while waiting for the prompt; ignored");
                        lines.clear();
                    }
                    Digest::Final(result) => {
                        self.digest_after_response();
                        return final_outcome(result, lines);
                    }
                }
            }
            let read = self.stream.read(&mut chunk);
            let n = if until == Until::FinalOrQuiet && !lines.is_empty() {
                match tokio::time::timeout(QUIET_AFTER_ANSWER, read).await {
                    Ok(n) => n,
                    Err(_) => return Ok(lines),
                }
            } else {
                read.await
            }
            .map_err(gone)?;
            if n == 0 {
                return Err(AtError::Unplugged);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn final_outcome(result: FinalResult, lines: Vec<String>) -> Result<Vec<String>, AtError> {
    match result {
        FinalResult::Ok | FinalResult::Connect(_) => Ok(lines),
        FinalResult::Cme(t) => Err(AtError::cme(&t)),
        FinalResult::Cms(t) => Err(AtError::cms(&t)),
        FinalResult::NotSupported => Err(AtError::NotSupported),
        FinalResult::Error => Err(AtError::Error),
        FinalResult::NoCarrier => Err(AtError::CallEnded("NO CARRIER")),
        FinalResult::Busy => Err(AtError::CallEnded("BUSY")),
        FinalResult::NoAnswer => Err(AtError::CallEnded("NO ANSWER")),
        FinalResult::NoDialtone => Err(AtError::CallEnded("NO DIALTONE")),
    }
}
