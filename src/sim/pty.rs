//! A virtual modem's serial port: the master side of a pseudo-terminal,
//! driven by an [`Interpreter`], with the slave path exposed to clients.
//!
//! One port task per modem owns its pty across unplug and plug: it writes
//! the interpreter's answers (paced at the configured baud rate), the
//! network's unsolicited output, the profile's boot and periodic noise and
//! injected faults, and records every byte in the network's trace.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sim::SimError;
use crate::sim::interpreter::Interpreter;
use crate::sim::line_clock::LineClock;
use crate::sim::network::{Direction, Network, PortCommand};

/// How often injected noise bytes appear on a noisy line.
const NOISE_INTERVAL: Duration = Duration::from_millis(700);

/// Bytes a noisy line produces: framing errors read as 0x00/0xFF, and a
/// stray high-bit character.
const NOISE: &[u8] = &[0x00, 0xFF, 0xFE, 0x7F, 0xE0];

/// An open pty pair. The slave is kept open by the simulator so that a
/// client closing its side does not make the master read fail.
pub struct Pty {
    master: File,
    _slave: OwnedFd,
    /// The slave device path (`/dev/pts/N`).
    pub path: PathBuf,
}

impl Pty {
    /// Opens a raw pty pair whose master is non-blocking.
    pub fn open() -> Result<Self, SimError> {
        let pair = openpty(None, None).map_err(|e| SimError::Pty(e.to_string()))?;
        let path = nix::unistd::ttyname(&pair.slave).map_err(|e| SimError::Pty(e.to_string()))?;
        // Raw mode: the line discipline must neither echo nor translate CR,
        // since the modem itself echoes as V.250 says.
        let mut termios = tcgetattr(&pair.slave).map_err(|e| SimError::Pty(e.to_string()))?;
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios)
            .map_err(|e| SimError::Pty(e.to_string()))?;
        fcntl(&pair.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| SimError::Pty(e.to_string()))?;
        Ok(Pty {
            master: File::from(pair.master),
            _slave: pair.slave,
            path,
        })
    }
}

/// Creates (or replaces) the symlink `link` to `target`.
pub fn make_link(link: &Path, target: &Path) -> Result<(), SimError> {
    // A stale link from an earlier run or plug is replaced.
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|source| SimError::Link {
        path: link.to_path_buf(),
        source,
    })
}

/// Where and how one modem's port lives.
pub struct PortSetup {
    pub network: Network,
    pub index: usize,
    /// Directory for the links; `None` exposes only the pty path.
    pub links: Option<PathBuf>,
    /// The current link name (`modem3`), replaced by a plug with a new name.
    pub link_name: String,
    /// Bytes per second are `baud / 10` (8N1: ten bits per byte).
    pub baud: Option<u32>,
}

/// Serves modem `setup.index` on `pty` until `stop`, unplugging and
/// plugging as `commands` ask.
pub async fn run_port(
    mut setup: PortSetup,
    pty: Pty,
    mut commands: UnboundedReceiver<PortCommand>,
    stop: CancellationToken,
) {
    let mut pty = Some(pty);
    loop {
        let Some(current) = pty.take() else {
            // Unplugged: wait for a plug (or the end).
            let command = tokio::select! {
                () = stop.cancelled() => return,
                command = commands.recv() => command,
            };
            match command {
                Some(PortCommand::Plug { link }) => {
                    if let Some(name) = link {
                        setup.link_name = name;
                    }
                    match Pty::open() {
                        Ok(fresh) => pty = Some(fresh),
                        Err(error) => {
                            tracing::warn!(modem = setup.index, %error, "cannot open a pty to plug");
                        }
                    }
                    continue;
                }
                Some(PortCommand::Unplug) => continue,
                None => return,
            }
        };
        let link = setup.links.as_ref().map(|dir| dir.join(&setup.link_name));
        if let Some(link) = &link
            && let Err(error) = make_link(link, &current.path)
        {
            tracing::warn!(modem = setup.index, %error, "cannot link the pty");
        }
        setup
            .network
            .set_plugged(setup.index, Some(current.path.clone()), link.clone());
        setup.network.boot(setup.index);
        let ended = serve(&setup, current, &mut commands, &stop).await;
        setup.network.set_plugged(setup.index, None, None);
        if let Some(link) = &link {
            let _ = std::fs::remove_file(link);
        }
        match ended {
            Ended::Stopped => return,
            Ended::Unplugged => {}
            Ended::Replugged(name) => {
                if let Some(name) = name {
                    setup.link_name = name;
                }
                pty = Pty::open()
                    .inspect_err(|error| {
                        tracing::warn!(modem = setup.index, %error, "cannot open a pty to plug");
                    })
                    .ok();
            }
        }
    }
}

enum Ended {
    Stopped,
    Unplugged,
    /// A plug while plugged: the device re-enumerates (optionally renamed).
    Replugged(Option<String>),
}

/// One plugged session of the port: from boot to unplug or stop.
async fn serve(
    setup: &PortSetup,
    pty: Pty,
    commands: &mut UnboundedReceiver<PortCommand>,
    stop: &CancellationToken,
) -> Ended {
    let Pty {
        master,
        _slave,
        path,
    } = pty;
    let network = &setup.network;
    let index = setup.index;
    // SAFETY: the `File` owns its descriptor and moves into the AsyncFd,
    // so the descriptor stays open and unchanged for the AsyncFd's life.
    let registered = unsafe { AsyncFd::register(master) };
    let fd = match registered {
        Ok(fd) => fd,
        Err(error) => {
            tracing::warn!(?path, error = %error, "cannot watch pty");
            return Ended::Unplugged;
        }
    };
    let Some(waker) = network.waker(index) else {
        return Ended::Stopped;
    };
    let mut port = Writer {
        fd: &fd,
        network,
        index,
        baud: setup.baud,
        rx_free: Instant::now(),
        tx_free: Instant::now(),
        clock: LineClock::new(),
    };
    let mut interpreter = Interpreter::new(network.clone(), index);
    if port.write(&interpreter.boot_output()).await.is_err() {
        return Ended::Unplugged;
    }
    let periodic = Duration::from_millis(interpreter.profile().noise.interval_ms.max(100));
    let mut next_periodic = Instant::now() + periodic;
    let mut next_noise = Instant::now() + NOISE_INTERVAL;
    let mut buf = [0u8; 1024];
    loop {
        // Locked-up firmware says nothing at all.
        let hung = network
            .with_modem(index, |slot| slot.faults.hung)
            .unwrap_or(false);
        let urcs_allowed = interpreter.accepts_urcs() && !hung;
        tokio::select! {
            () = stop.cancelled() => return Ended::Stopped,
            command = commands.recv() => match command {
                Some(PortCommand::Unplug) | None => return Ended::Unplugged,
                Some(PortCommand::Plug { link }) => return Ended::Replugged(link),
            },
            () = waker.notified(), if urcs_allowed => {
                let urcs = network.take_urcs(index);
                if port.write(&urcs).await.is_err() {
                    return Ended::Unplugged;
                }
            }
            () = tokio::time::sleep_until(next_periodic) => {
                next_periodic = Instant::now() + periodic;
                if urcs_allowed
                    && let Some(noise) = interpreter.periodic_output()
                    && port.write(&noise).await.is_err()
                {
                    return Ended::Unplugged;
                }
            }
            () = tokio::time::sleep_until(next_noise) => {
                next_noise = Instant::now() + NOISE_INTERVAL;
                let noisy = network.with_modem(index, |slot| slot.faults.noise).unwrap_or(false);
                if noisy && urcs_allowed && port.write(NOISE).await.is_err() {
                    return Ended::Unplugged;
                }
            }
            guard = fd.readable() => {
                let Ok(mut guard) = guard else { return Ended::Unplugged };
                match guard.try_io(|inner| inner.get_ref().read(&mut buf)) {
                    Ok(Ok(0)) => return Ended::Unplugged,
                    Ok(Ok(n)) => {
                        port.receive(&buf[..n]).await;
                        if network.with_modem(index, |slot| slot.faults.hung).unwrap_or(false) {
                            continue;
                        }
                        let reply = interpreter.feed(&buf[..n]);
                        let submit_delay = if interpreter.take_submitted() {
                            network.with_modem(index, |slot| slot.faults.submit_delay_ms).unwrap_or(0)
                        } else {
                            0
                        } + interpreter.take_slowness();
                        if port.reply(&interpreter, &reply, submit_delay).await.is_err() {
                            return Ended::Unplugged;
                        }
                        if reply.ends_with(b"> ") {
                            let _ = network.with_modem(index, |slot| {
                                if std::mem::take(&mut slot.faults.hang_after_prompt) {
                                    tracing::debug!(modem = index, "firmware locked up after the prompt");
                                    slot.faults.hung = true;
                                }
                            });
                        }
                        if interpreter.take_reset() {
                            // The modem is busy resetting, then boots again.
                            let reset = Duration::from_millis(interpreter.profile().boot.reset_ms);
                            tokio::time::sleep(reset).await;
                            network.boot(index);
                            interpreter = Interpreter::new(network.clone(), index);
                            if port.write(&interpreter.boot_output()).await.is_err() {
                                return Ended::Unplugged;
                            }
                        }
                    }
                    // EIO while no client has the slave open: wait and retry.
                    Ok(Err(error)) if error.raw_os_error() == Some(nix::libc::EIO) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(?path, %error, "pty read failed");
                        return Ended::Unplugged;
                    }
                    Err(_would_block) => {}
                }
            }
        }
    }
}

/// Writes to the port: paced, traced, with the injected response faults.
/// On a paced line it also takes in what the host wrote at the line's
/// speed: a command is answered once its last byte has crossed the line.
///
/// Pacing runs on the line's own clock, not on the timer's: tokio's timer
/// fires up to a millisecond late, and when each write and each received
/// command ended in a sleep, those late wake-ups showed in the trace as the
/// line sitting idle between a command and its answer (several
/// milliseconds per relay at 115200 baud, charged to the host). The bytes
/// never run ahead of the line: a write starts when the line is free and
/// the command it answers is in, and each chunk is handed to the host no
/// earlier than its last byte's place in that schedule (a late timer makes
/// it later, never earlier, and the trace says when it was).
struct Writer<'a> {
    fd: &'a AsyncFd<File>,
    network: &'a Network,
    index: usize,
    baud: Option<u32>,
    /// When the host-to-modem direction is free again: the last command
    /// received is all in by then.
    rx_free: Instant,
    /// When the modem-to-host direction is free again.
    tx_free: Instant,
    clock: LineClock,
}

impl Writer<'_> {
    /// Bytes per second on a paced line (8N1: ten bits per byte).
    fn rate(&self) -> Option<f64> {
        self.baud
            .filter(|&baud| baud > 0)
            .map(|baud| (f64::from(baud) / 10.0).max(1.0))
    }

    /// Bytes the host wrote: traced, and on a paced line timed until they
    /// have all arrived (the pty hands them over at once); the answer waits
    /// for that ([`Writer::reply`]).
    async fn receive(&mut self, bytes: &[u8]) {
        let Some(rate) = self.rate() else {
            self.network.trace(self.index, Direction::Rx, bytes);
            return;
        };
        // The host cannot have answered what the modem sent before it
        // crossed the line (the pty hands each chunk over at once).
        let start = self.rx_free.max(self.tx_free).max(Instant::now());
        self.network
            .trace_paced(self.index, Direction::Rx, bytes, start.into_std(), rate);
        self.rx_free = start + Duration::from_secs_f64(bytes.len() as f64 / rate);
    }

    /// Writes a command's answer. Injected faults may delay or swallow it;
    /// URCs that arrive while its information lines go out (a slow line, a
    /// delay) are written before its final result code, as a real modem
    /// interleaves them. URCs the command itself caused come after it.
    async fn reply(
        &mut self,
        interpreter: &Interpreter,
        reply: &[u8],
        extra_delay_ms: u64,
    ) -> std::io::Result<()> {
        if reply.is_empty() {
            return Ok(());
        }
        let mark = self.network.urc_mark(self.index);
        let (delay_ms, dropped) = self
            .network
            .with_modem(self.index, |slot| {
                let dropped = slot.faults.drop_responses > 0 && has_final_result(reply);
                if dropped {
                    slot.faults.drop_responses -= 1;
                }
                (slot.faults.delay_ms, dropped)
            })
            .unwrap_or((0, false));
        if dropped {
            return Ok(());
        }
        let delay_ms = delay_ms.saturating_add(extra_delay_ms);
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        // Answered once the command is all in (and after any delay).
        let answer_at = self.rx_free.max(Instant::now());
        let split = final_result_start(reply).unwrap_or(reply.len());
        self.write_from(&reply[..split], answer_at).await?;
        if split < reply.len() && interpreter.accepts_urcs() {
            let urcs = self.network.take_urcs_since(self.index, mark);
            self.write(&urcs).await?;
        }
        self.write(&reply[split..]).await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_from(bytes, Instant::now()).await
    }

    /// Writes `bytes`, on a paced line starting no earlier than `earliest`
    /// and once the line is free.
    async fn write_from(&mut self, bytes: &[u8], earliest: Instant) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self.rate() {
            Some(per_second) => {
                // Each chunk reaches the host once its last byte has crossed
                // the line, and is traced as it is written, when the host
                // can first read it. (Written as its first byte went out,
                // the host had up to a chunk's line time, 2.8 ms at 115200
                // baud, before the trace said the line was in, and a quick
                // answer showed as taking no time at all.)
                let mut due = earliest.max(self.tx_free);
                for chunk in bytes.chunks(32) {
                    due += Duration::from_secs_f64(chunk.len() as f64 / per_second);
                    self.clock.sleep_until(due).await;
                    write_all(self.fd, chunk).await?;
                    self.network.trace(self.index, Direction::Tx, chunk);
                }
                self.tx_free = due;
                Ok(())
            }
            None => {
                self.network.trace(self.index, Direction::Tx, bytes);
                write_all(self.fd, bytes).await
            }
        }
    }
}

/// The start of the reply's last line if it is a final result code.
fn final_result_start(reply: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(reply).ok()?;
    let body = text.strip_suffix("\r\n")?;
    let start = body.rfind("\r\n")?;
    let last = &body[start + 2..];
    let is_final = matches!(last, "OK" | "ERROR" | "NO CARRIER" | "COMMAND NOT SUPPORT")
        || last.starts_with("+CMS ERROR")
        || last.starts_with("+CME ERROR");
    is_final.then_some(start)
}

fn has_final_result(reply: &[u8]) -> bool {
    final_result_start(reply).is_some()
        || reply.ends_with(b"0\r")
        || reply.ends_with(b"4\r")
        || reply.ends_with(b"> ")
}

/// How long a write may wait for room in the pty before the rest is
/// dropped: a serial port that no one reads loses what it is sent, and the
/// port task must stay free to serve unplug and stop.
const STALLED_WRITE: Duration = Duration::from_secs(1);

async fn write_all(fd: &AsyncFd<File>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let Ok(writable) = tokio::time::timeout(STALLED_WRITE, fd.writable()).await else {
            tracing::debug!(
                dropped = bytes.len(),
                "nobody reads the pty; output dropped"
            );
            return Ok(());
        };
        let mut guard = writable?;
        match guard.try_io(|inner| inner.get_ref().write(bytes)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(error)) => return Err(error),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_result_is_found_after_information_lines() {
        let reply = b"\r\n+CMGL: 1,0,,5\r\n0011\r\n\r\nOK\r\n";
        assert_eq!(final_result_start(reply), Some(reply.len() - 6));
        assert_eq!(final_result_start(b"\r\n+CMTI: \"SM\",1\r\n"), None);
        assert!(has_final_result(b"\r\n+CMS ERROR: 21\r\n"));
        assert!(!has_final_result(b"AT"));
    }
}
