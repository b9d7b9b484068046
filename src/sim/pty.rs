//! A virtual modem's serial port: the master side of a pseudo-terminal,
//! driven by an [`Interpreter`], with the slave path exposed to clients.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use crate::sim::SimError;
use crate::sim::interpreter::Interpreter;

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

    /// Serves the interpreter on this pty until `stop` is cancelled.
    pub async fn serve(self, mut interpreter: Interpreter, stop: CancellationToken) {
        let Pty {
            master,
            _slave,
            path,
        } = self;
        // SAFETY: the `File` owns its descriptor and moves into the AsyncFd,
        // so the descriptor stays open and unchanged for the AsyncFd's life.
        let registered = unsafe { AsyncFd::register(master) };
        let fd = match registered {
            Ok(fd) => fd,
            Err(error) => {
                tracing::warn!(?path, error = %error, "cannot watch pty");
                return;
            }
        };
        let mut buf = [0u8; 1024];
        loop {
            let read = tokio::select! {
                () = stop.cancelled() => return,
                guard = fd.readable() => guard,
            };
            let Ok(mut guard) = read else { return };
            match guard.try_io(|inner| inner.get_ref().read(&mut buf)) {
                Ok(Ok(0)) => return,
                Ok(Ok(n)) => {
                    let reply = interpreter.feed(&buf[..n]);
                    if write_all(&fd, &reply).await.is_err() {
                        return;
                    }
                }
                // EIO while no client has the slave open: wait and retry.
                Ok(Err(error)) if error.raw_os_error() == Some(nix::libc::EIO) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Ok(Err(error)) => {
                    tracing::warn!(?path, %error, "pty read failed");
                    return;
                }
                Err(_would_block) => continue,
            }
        }
    }
}

async fn write_all(fd: &AsyncFd<File>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| inner.get_ref().write(bytes)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(error)) => return Err(error),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}
