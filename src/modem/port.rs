//! One AT port over tokio-serial: sends a command line, feeds what comes back
//! to the pure digester and collects the response until its final result.
//! URCs seen meanwhile are kept for the caller (the modem actor) to type.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::digest::{Digest, DigestState, FinalResult, digest_all};
use super::error::AtError;

/// How long a port stays quiet after an answer before a missing final
/// result is taken as the end of the response.
const QUIET_AFTER_ANSWER: Duration = Duration::from_millis(300);

pub struct AtPort {
    stream: SerialStream,
    buf: Vec<u8>,
    /// URCs that arrived while waiting for responses, oldest first.
    pub urcs: Vec<Vec<String>>,
}

impl AtPort {
    /// Opens `path` exclusively at 115200 baud.
    pub fn open(path: &str) -> Result<Self, AtError> {
        let stream = tokio_serial::new(path, 115_200)
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
        };
        let mut wire = line.as_bytes().to_vec();
        wire.push(b'\r');
        self.stream
            .write_all(&wire)
            .await
            .map_err(|e| AtError::Io(e.to_string()))?;
        // Wavecom answers `AT+CPIN?` with its `+CPIN:` line and no `OK`.
        let final_optional = line.eq_ignore_ascii_case("AT+CPIN?");
        match tokio::time::timeout(timeout, self.collect(&state, final_optional)).await {
            Ok(result) => result,
            Err(_) => Err(AtError::Timeout(timeout)),
        }
    }

    /// Reads until a final result; with `final_optional`, a quiet port after
    /// the answer line also ends the response.
    async fn collect(
        &mut self,
        state: &DigestState,
        final_optional: bool,
    ) -> Result<Vec<String>, AtError> {
        let mut lines = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let (found, used) = digest_all(&self.buf, state);
            self.buf.drain(..used);
            for d in found {
                match d {
                    Digest::Echo | Digest::Prompt => {}
                    Digest::Line(l) => lines.push(l),
                    Digest::Urc(u) => self.urcs.push(u),
                    Digest::Final(FinalResult::Ok) | Digest::Final(FinalResult::Connect(_)) => {
                        return Ok(lines);
                    }
                    Digest::Final(FinalResult::Cme(t)) => return Err(AtError::cme(&t)),
                    Digest::Final(FinalResult::Cms(t)) => return Err(AtError::cms(&t)),
                    Digest::Final(FinalResult::NotSupported) => return Err(AtError::NotSupported),
                    Digest::Final(_) => return Err(AtError::Error),
                }
            }
            let read = self.stream.read(&mut chunk);
            let n = if final_optional && !lines.is_empty() {
                match tokio::time::timeout(QUIET_AFTER_ANSWER, read).await {
                    Ok(n) => n,
                    Err(_) => return Ok(lines),
                }
            } else {
                read.await
            }
            .map_err(|e| AtError::Io(e.to_string()))?;
            if n == 0 {
                return Err(AtError::Unplugged);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
