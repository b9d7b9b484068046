//! `simmask bench`: the product measured from outside, on the virtual
//! network: the simulator and the daemon wired together (in one process or
//! as two), timed from the simulator's port traces.
//!
//! - [`relay`]: relay overhead and throughput (`simmask bench relay`).
//! - [`idle`]: the daemon's cost with idle modems (`simmask bench idle`).
//! - [`rig`]: the simulator and the daemon started for a bench.
//! - [`timing`], [`wire`]: what the traces say, and what a line can carry
//!   (pure).

pub mod idle;
pub mod relay;
pub mod rig;
pub mod timing;
pub mod wire;

/// A free TCP port on the loopback interface, as `127.0.0.1:<port>`.
pub fn free_local_port() -> std::io::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}
