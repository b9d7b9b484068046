//! The bytes on a modem's port, gathered into lines with monotonic time
//! stamps, so that a test or benchmark measures the product from outside.

use std::collections::VecDeque;

use serde::Serialize;

/// Trace entries kept per modem; older ones are dropped first.
const TRACE_CAPACITY: usize = 4096;

/// A traced line longer than this is cut into entries of this size.
const MAX_TRACE_LINE: usize = 1024;

/// Which way bytes went on a port, from the modem's side of view of the host:
/// `rx` the modem received, `tx` it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Rx,
    Tx,
}

/// One line (or fragment, such as the `> ` prompt) seen on a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    /// Microseconds since the network started, from a monotonic clock.
    pub t_us: u64,
    pub dir: Direction,
    pub line: String,
}

/// A bounded record of one port's lines.
#[derive(Debug, Default)]
pub struct Trace {
    entries: VecDeque<TraceEntry>,
    /// The unfinished line in each direction (rx, tx).
    partial: [Vec<u8>; 2],
}

impl Trace {
    /// Records bytes seen at `t_us`. Bytes gather into lines (clients like
    /// gammu write a byte at a time); an entry is made when the line ends
    /// (CR received, LF sent, Ctrl-Z or Esc after a prompt, or the `> `
    /// prompt itself), stamped with the time it ended.
    pub fn record(&mut self, t_us: u64, dir: Direction, bytes: &[u8]) {
        let slot_dir = match dir {
            Direction::Rx => 0,
            Direction::Tx => 1,
        };
        for &byte in bytes {
            let partial = &mut self.partial[slot_dir];
            let ends = match dir {
                Direction::Rx => matches!(byte, b'\r' | 0x1A | 0x1B),
                Direction::Tx => byte == b'\n',
            };
            if !ends && partial.len() < MAX_TRACE_LINE {
                partial.push(byte);
            }
            let prompt = dir == Direction::Tx && partial.ends_with(b"> ");
            if ends || prompt || partial.len() >= MAX_TRACE_LINE {
                let line = String::from_utf8_lossy(partial)
                    .trim_matches(['\r', '\n'])
                    .to_string();
                partial.clear();
                if line.is_empty() {
                    continue;
                }
                if self.entries.len() >= TRACE_CAPACITY {
                    self.entries.pop_front();
                }
                self.entries.push_back(TraceEntry { t_us, dir, line });
            }
        }
    }

    pub fn entries(&self) -> Vec<TraceEntry> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_gather_into_lines_and_the_prompt_is_its_own_entry() {
        let mut trace = Trace::default();
        for (t, byte) in b"AT+CMGS=5\r".iter().enumerate() {
            trace.record(t as u64, Direction::Rx, &[*byte]);
        }
        trace.record(20, Direction::Tx, b"\r\n> ");
        trace.record(30, Direction::Rx, b"0011\x1a");
        trace.record(40, Direction::Tx, b"\r\n+CMGS: 1\r\n\r\nOK\r\n");
        let lines: Vec<(u64, Direction, &str)> = trace
            .entries
            .iter()
            .map(|e| (e.t_us, e.dir, e.line.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (9, Direction::Rx, "AT+CMGS=5"),
                (20, Direction::Tx, "> "),
                (30, Direction::Rx, "0011"),
                (40, Direction::Tx, "+CMGS: 1"),
                (40, Direction::Tx, "OK"),
            ]
        );
    }

    #[test]
    fn the_record_is_bounded() {
        let mut trace = Trace::default();
        for i in 0..(TRACE_CAPACITY + 10) {
            trace.record(i as u64, Direction::Tx, b"OK\r\n");
        }
        assert_eq!(trace.entries.len(), TRACE_CAPACITY);
        assert_eq!(trace.entries[0].t_us, 10);
        trace.record(0, Direction::Rx, &vec![b'A'; MAX_TRACE_LINE * 3]);
        assert!(trace.entries.iter().all(|e| e.line.len() <= MAX_TRACE_LINE));
    }
}
