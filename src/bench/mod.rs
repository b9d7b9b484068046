//! `simmask bench`: the product measured from outside, on the virtual
//! network: the simulator and the daemon wired together, timed from the
//! simulator's port traces.

pub mod relay;
