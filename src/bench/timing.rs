//! Times read from the simulator's port traces (pure).
//!
//! Every trace line is stamped with the time its last byte crossed the
//! line (on a paced line; instantly otherwise). The relay overhead of one
//! message is the time from the end of the URC that brought it (`+CMTI`,
//! or `+CMT` with its PDU line) to the first byte of the relayed
//! `AT+CMGS` on the same modem.

use serde::Serialize;
use serde_json::Value;

/// One trace entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub t_us: u64,
    pub tx: bool,
    pub line: String,
}

/// Parses the control API's trace answer.
pub fn lines(trace: &[Value]) -> Vec<Line> {
    trace
        .iter()
        .map(|entry| Line {
            t_us: entry["t_us"].as_u64().unwrap_or(0),
            tx: entry["dir"] == "tx",
            line: entry["line"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// How long `bytes` take on a line of `baud` (8N1), in microseconds; 0 on
/// an unpaced line.
pub fn line_time_us(bytes: usize, baud: Option<u32>) -> f64 {
    match baud {
        Some(baud) if baud > 0 => bytes as f64 * 10.0 / f64::from(baud) * 1e6,
        _ => 0.0,
    }
}

/// One relayed message's overhead, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overhead {
    /// From the end of the inbound URC to the first byte of `AT+CMGS`.
    pub from_urc_end_ms: f64,
    /// From the first byte of the inbound URC.
    pub from_urc_start_ms: f64,
}

/// Pairs the k-th inbound URC on a port with the k-th `AT+CMGS` after it
/// (each message here is relayed as one part, in order).
pub fn overheads(lines: &[Line], baud: Option<u32>) -> Vec<Overhead> {
    let mut announced = std::collections::VecDeque::new();
    let mut out = Vec::new();
    let mut iter = lines.iter().peekable();
    while let Some(entry) = iter.next() {
        if entry.tx && entry.line.starts_with("+CMTI:") {
            // "\r\n+CMTI: ...\r\n"
            let start = entry.t_us as f64 - line_time_us(entry.line.len() + 4, baud);
            announced.push_back((start, entry.t_us as f64));
        } else if entry.tx && entry.line.starts_with("+CMT:") {
            // The URC ends with its PDU line.
            let start = entry.t_us as f64 - line_time_us(entry.line.len() + 4, baud);
            let end = match iter.peek() {
                Some(pdu) if pdu.tx => pdu.t_us as f64,
                _ => entry.t_us as f64,
            };
            announced.push_back((start, end));
        } else if !entry.tx && entry.line.to_ascii_uppercase().starts_with("AT+CMGS=") {
            // Stamped at its CR: the first byte was a line's length earlier.
            let first = entry.t_us as f64 - line_time_us(entry.line.len() + 1, baud);
            if let Some((start, end)) = announced.pop_front() {
                out.push(Overhead {
                    from_urc_end_ms: (first - end).max(0.0) / 1000.0,
                    from_urc_start_ms: (first - start).max(0.0) / 1000.0,
                });
            }
        }
    }
    out
}

/// Sends completed per second on one port: the `+CMGS:` answers at or
/// after `since_us`, counted from the first to the last.
pub fn send_rate(lines: &[Line], since_us: u64) -> Option<(usize, f64)> {
    let done: Vec<u64> = lines
        .iter()
        .filter(|l| l.tx && l.t_us >= since_us && l.line.starts_with("+CMGS:"))
        .map(|l| l.t_us)
        .collect();
    let (first, last) = (*done.first()?, *done.last()?);
    (done.len() >= 2 && last > first).then(|| {
        (
            done.len(),
            (done.len() - 1) as f64 / ((last - first) as f64 / 1e6),
        )
    })
}

/// p50, p99 and max of a sample, in its unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        (!sorted.is_empty()).then(|| Spread {
            p50: round3(at(0.50)),
            p99: round3(at(0.99)),
            max: round3(*sorted.last().unwrap_or(&f64::NAN)),
        })
    }
}

/// Rounded to three decimals, for readable JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_announcement_pairs_with_the_next_send() {
        let trace = json!([
            {"t_us": 1000, "dir": "tx", "line": "+CMTI: \"SM\",1"},
            {"t_us": 1500, "dir": "tx", "line": "+CMTI: \"SM\",2"},
            {"t_us": 2000, "dir": "rx", "line": "AT+CMGR=1"},
            {"t_us": 4000, "dir": "rx", "line": "AT+CMGS=20"},
            {"t_us": 9500, "dir": "rx", "line": "AT+CMGS=21"},
            {"t_us": 9900, "dir": "rx", "line": "AT+CMGS=22"}
        ]);
        let gaps: Vec<f64> = overheads(&lines(trace.as_array().unwrap()), None)
            .iter()
            .map(|o| o.from_urc_end_ms)
            .collect();
        assert_eq!(gaps, vec![3.0, 8.0]);
    }

    #[test]
    fn a_direct_delivery_ends_with_its_pdu_line_and_paced_lines_take_time() {
        // 11520 bytes per second: 10 bytes take 868 µs.
        let trace = json!([
            {"t_us": 10_000, "dir": "tx", "line": "+CMT: ,23"},
            {"t_us": 14_000, "dir": "tx", "line": "0791"},
            {"t_us": 20_000, "dir": "rx", "line": "AT+CMGS=20"}
        ]);
        let found = overheads(&lines(trace.as_array().unwrap()), Some(115_200));
        let first_byte = 20_000.0 - line_time_us(11, Some(115_200));
        assert_eq!(found.len(), 1);
        assert!((found[0].from_urc_end_ms - (first_byte - 14_000.0) / 1000.0).abs() < 1e-9);
        let urc_start = 10_000.0 - line_time_us(13, Some(115_200));
        assert!((found[0].from_urc_start_ms - (first_byte - urc_start) / 1000.0).abs() < 1e-9);
    }

    #[test]
    fn the_send_rate_counts_from_the_first_to_the_last_answer() {
        let trace = json!([
            {"t_us": 500, "dir": "tx", "line": "+CMGS: 1"},
            {"t_us": 1_000_000, "dir": "tx", "line": "+CMGS: 2"},
            {"t_us": 1_500_000, "dir": "tx", "line": "+CMGS: 3"},
            {"t_us": 2_000_000, "dir": "tx", "line": "+CMGS: 4"}
        ]);
        let (count, rate) = send_rate(&lines(trace.as_array().unwrap()), 1_000).unwrap();
        assert_eq!(count, 3);
        assert!((rate - 2.0).abs() < 1e-9);
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]).unwrap().p50, 2.0);
    }
}
