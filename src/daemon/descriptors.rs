//! File descriptors for the connection cap. Every connection is a
//! descriptor; so are the modems' ports, the store and the callbacks'
//! sockets. If the soft limit cannot hold `max_connections` and the
//! reserve besides those, it is raised towards the hard limit (as Go's
//! runtime does at start); if even the hard limit is too low, the
//! operator is told which setting to change, since accept would then fail
//! with "Too many open files" before the cap is reached.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::serve::ServeLimits;

/// Descriptors kept for everything but API connections: the modems' ports
/// (two per modem with the data port), the store's files, the callbacks'
/// sockets, the simulator's ptys in `simmask demo`, the logs.
pub const OTHER_DESCRIPTORS: u64 = 256;

/// The descriptors `limits` need.
pub fn needed(limits: &ServeLimits) -> u64 {
    (limits.max_connections as u64)
        .saturating_add(limits.reserve_connections as u64)
        .saturating_add(OTHER_DESCRIPTORS)
}

/// Raises the soft descriptor limit to what `limits` need if it is lower,
/// and warns when the hard limit does not allow it.
pub fn fit(limits: &ServeLimits) {
    let need = needed(limits);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= need {
        return;
    }
    let raised = need.min(hard);
    if raised > soft && setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
        tracing::info!(
            from = soft,
            to = raised,
            "raised the open-file limit for the connection cap"
        );
    }
    if raised < need {
        tracing::warn!(
            limit = raised,
            need,
            max_connections = limits.max_connections,
            reserve_connections = limits.reserve_connections,
            "the open-file limit is too low for [api] max_connections and reserve_connections: \
             raise LimitNOFILE in the unit (or ulimit -n), or lower max_connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_allows_the_default_cap() {
        let unit = include_str!("../../systemd/simmask.service");
        let limit: u64 = unit
            .lines()
            .find_map(|line| line.strip_prefix("LimitNOFILE="))
            .and_then(|value| value.trim().parse().ok())
            .expect("the unit sets LimitNOFILE");
        assert!(limit >= needed(&ServeLimits::default()), "{limit}");
        // The usual soft limit holds the defaults too.
        assert!(needed(&ServeLimits::default()) <= 1024);
    }
}
