//! A SIM's or modem's SMS storages (3GPP TS 27.005 §3.1 `<mem1>`…`<mem3>`):
//! numbered slots of PDUs with their status, capacities from the profile.
//! They belong to the network's record of the SIM, so they survive an unplug.

use std::collections::BTreeMap;

use crate::profile::Profile;

/// 3GPP TS 27.005 §3.1 `<stat>` in PDU mode (0..3) and its text-mode name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    RecUnread,
    RecRead,
    StoUnsent,
    StoSent,
}

impl Stat {
    pub fn code(self) -> u8 {
        match self {
            Stat::RecUnread => 0,
            Stat::RecRead => 1,
            Stat::StoUnsent => 2,
            Stat::StoSent => 3,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Stat::RecUnread => "REC UNREAD",
            Stat::RecRead => "REC READ",
            Stat::StoUnsent => "STO UNSENT",
            Stat::StoSent => "STO SENT",
        }
    }
}

/// Which messages `+CMGL` lists: one status, or all (PDU `4`, text `"ALL"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatFilter {
    One(Stat),
    All,
}

impl StatFilter {
    /// Parses a `+CMGL` argument in PDU mode (`0`..`4`) or text mode
    /// (`"REC UNREAD"`…`"ALL"`).
    pub fn parse(argument: &str, text_mode: bool) -> Option<Self> {
        let argument = argument.trim();
        if text_mode {
            let name = argument.trim_matches('"').to_ascii_uppercase();
            return match name.as_str() {
                "REC UNREAD" => Some(Self::One(Stat::RecUnread)),
                "REC READ" => Some(Self::One(Stat::RecRead)),
                "STO UNSENT" => Some(Self::One(Stat::StoUnsent)),
                "STO SENT" => Some(Self::One(Stat::StoSent)),
                "ALL" => Some(Self::All),
                _ => None,
            };
        }
        match argument {
            "0" => Some(Self::One(Stat::RecUnread)),
            "1" => Some(Self::One(Stat::RecRead)),
            "2" => Some(Self::One(Stat::StoUnsent)),
            "3" => Some(Self::One(Stat::StoSent)),
            "4" => Some(Self::All),
            _ => None,
        }
    }

    fn accepts(self, stat: Stat) -> bool {
        match self {
            Self::All => true,
            Self::One(wanted) => wanted == stat,
        }
    }
}

/// One stored message: the PDU as the modem would hand it over (SMSC field
/// first) and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub stat: Stat,
    /// Uppercase hex, SMSC field included.
    pub pdu: String,
    /// Octets after the SMSC field (the `<length>` of `+CMGL`/`+CMGR`).
    pub tpdu_length: usize,
}

/// One named storage.
#[derive(Debug, Clone)]
pub struct Storage {
    pub name: String,
    pub capacity: u16,
    slots: BTreeMap<u16, StoredMessage>,
}

/// Indices start at 1, as on SIM cards (EF_SMS record numbers, TS 31.102 §4.2.25).
const FIRST_INDEX: u16 = 1;

impl Storage {
    pub fn used(&self) -> usize {
        self.slots.len()
    }

    pub fn is_full(&self) -> bool {
        self.slots.len() >= usize::from(self.capacity)
    }

    /// Stores a message in the lowest free slot; `None` when full.
    pub fn insert(&mut self, message: StoredMessage) -> Option<u16> {
        if self.is_full() {
            return None;
        }
        let index = (FIRST_INDEX..FIRST_INDEX.saturating_add(self.capacity))
            .find(|i| !self.slots.contains_key(i))?;
        self.slots.insert(index, message);
        Some(index)
    }

    pub fn get(&self, index: u16) -> Option<&StoredMessage> {
        self.slots.get(&index)
    }

    /// Reads a message; a received unread one becomes read (27.005 §3.4.3).
    pub fn read(&mut self, index: u16) -> Option<StoredMessage> {
        let slot = self.slots.get_mut(&index)?;
        let before = slot.clone();
        if slot.stat == Stat::RecUnread {
            slot.stat = Stat::RecRead;
        }
        Some(before)
    }

    /// The messages `filter` selects, in index order; listing unread
    /// messages marks them read as real modems do.
    pub fn list(&mut self, filter: StatFilter) -> Vec<(u16, StoredMessage)> {
        let mut listed = Vec::new();
        for (index, message) in self.slots.iter_mut() {
            if filter.accepts(message.stat) {
                listed.push((*index, message.clone()));
                if message.stat == Stat::RecUnread {
                    message.stat = Stat::RecRead;
                }
            }
        }
        listed
    }

    /// Changes a stored message's status (a sent draft becomes STO SENT).
    pub fn set_stat(&mut self, index: u16, stat: Stat) {
        if let Some(message) = self.slots.get_mut(&index) {
            message.stat = stat;
        }
    }

    pub fn delete(&mut self, index: u16) -> Option<StoredMessage> {
        self.slots.remove(&index)
    }

    /// `+CMGD=<index>,<delflag>` with a flag 1..4 (27.005 §3.5.4): 1 read,
    /// 2 read and sent, 3 read, sent and unsent, 4 all.
    pub fn delete_by_flag(&mut self, flag: u8) -> usize {
        let before = self.slots.len();
        self.slots.retain(|_, message| match flag {
            1 => message.stat != Stat::RecRead,
            2 => !matches!(message.stat, Stat::RecRead | Stat::StoSent),
            3 => message.stat == Stat::RecUnread,
            _ => false,
        });
        before - self.slots.len()
    }

    /// Whether `index` is a location of this storage at all.
    pub fn valid_index(&self, index: u16) -> bool {
        (FIRST_INDEX..FIRST_INDEX.saturating_add(self.capacity)).contains(&index)
    }
}

/// Every storage of one SIM/modem and the `+CPMS` selection.
#[derive(Debug, Clone)]
pub struct Storages {
    storages: Vec<Storage>,
    /// `<mem1>` (read, list, delete), `<mem2>` (write, send), `<mem3>`
    /// (where received messages go), as indices into `storages`.
    pub mem: [usize; 3],
}

impl Storages {
    /// The profile's storages, empty, with its default selected; its
    /// storage of status reports, if it has one, comes last.
    pub fn from_profile(profile: &Profile) -> Self {
        let storages: Vec<Storage> = profile
            .sms
            .storages
            .iter()
            .chain(profile.sms.status_report_storage.iter())
            .map(|s| Storage {
                name: s.name.clone(),
                capacity: s.capacity,
                slots: BTreeMap::new(),
            })
            .collect();
        let mut this = Storages {
            storages,
            mem: [0; 3],
        };
        this.select_default(profile);
        this
    }

    /// Back to the profile's default selection (after a reset or re-plug);
    /// the messages stay.
    pub fn select_default(&mut self, profile: &Profile) {
        let default = self.position(&profile.sms.default_storage).unwrap_or(0);
        self.mem = [default; 3];
    }

    /// The position of a storage by name (case-insensitive).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.storages
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(name))
    }

    pub fn names(&self) -> Vec<&str> {
        self.storages.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn at(&self, position: usize) -> &Storage {
        &self.storages[position.min(self.storages.len() - 1)]
    }

    pub fn at_mut(&mut self, position: usize) -> &mut Storage {
        let last = self.storages.len() - 1;
        &mut self.storages[position.min(last)]
    }

    /// `<mem1>`: where `+CMGR`, `+CMGL` and `+CMGD` act.
    pub fn read_storage(&mut self) -> &mut Storage {
        let position = self.mem[0];
        self.at_mut(position)
    }

    /// `<mem2>`: where `+CMGW` writes and `+CMSS` sends from.
    pub fn write_storage(&mut self) -> &mut Storage {
        let position = self.mem[1];
        self.at_mut(position)
    }

    /// Where stored status reports go: the storage of their own the
    /// profile names, else `<mem3>`.
    pub fn report_storage(&mut self, profile: &Profile) -> &mut Storage {
        let position = profile
            .sms
            .status_report_storage
            .as_ref()
            .and_then(|s| self.position(&s.name))
            .unwrap_or(self.mem[2]);
        self.at_mut(position)
    }

    /// `<mem3>`: where received messages go.
    pub fn receive_storage(&mut self) -> &mut Storage {
        let position = self.mem[2];
        self.at_mut(position)
    }

    /// The `+CPMS` used/total triple for the selection, with or without names.
    pub fn cpms(&self, with_names: bool) -> String {
        self.mem
            .iter()
            .map(|&position| {
                let storage = self.at(position);
                if with_names {
                    format!(
                        "\"{}\",{},{}",
                        storage.name,
                        storage.used(),
                        storage.capacity
                    )
                } else {
                    format!("{},{}", storage.used(), storage.capacity)
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profiles;

    fn message(stat: Stat) -> StoredMessage {
        StoredMessage {
            stat,
            pdu: "00".into(),
            tpdu_length: 0,
        }
    }

    #[test]
    fn slots_fill_lowest_first_and_refuse_when_full() {
        let mut storage = Storage {
            name: "SM".into(),
            capacity: 2,
            slots: BTreeMap::new(),
        };
        assert_eq!(storage.insert(message(Stat::RecUnread)), Some(1));
        assert_eq!(storage.insert(message(Stat::RecUnread)), Some(2));
        assert_eq!(storage.insert(message(Stat::RecUnread)), None);
        storage.delete(1);
        assert_eq!(storage.insert(message(Stat::RecUnread)), Some(1));
    }

    #[test]
    fn reading_marks_read_and_flags_delete_by_status() {
        let mut storage = Storage {
            name: "SM".into(),
            capacity: 10,
            slots: BTreeMap::new(),
        };
        for stat in [
            Stat::RecUnread,
            Stat::RecUnread,
            Stat::StoSent,
            Stat::StoUnsent,
        ] {
            storage.insert(message(stat));
        }
        assert_eq!(storage.read(1).map(|m| m.stat), Some(Stat::RecUnread));
        assert_eq!(storage.get(1).map(|m| m.stat), Some(Stat::RecRead));
        assert_eq!(storage.delete_by_flag(1), 1);
        assert_eq!(storage.delete_by_flag(2), 1);
        assert_eq!(storage.used(), 2);
        assert_eq!(storage.delete_by_flag(3), 1);
        assert_eq!(storage.delete_by_flag(4), 1);
        assert_eq!(storage.used(), 0);
    }

    #[test]
    fn cpms_reports_the_profiles_names_and_sizes() {
        let profiles = Profiles::builtin();
        let profile = profiles.get("quectel-ec25").expect("profile");
        let storages = Storages::from_profile(profile);
        assert_eq!(
            storages.cpms(true),
            "\"ME\",0,255,\"ME\",0,255,\"ME\",0,255"
        );
        assert_eq!(
            StatFilter::parse("\"REC UNREAD\"", true),
            Some(StatFilter::One(Stat::RecUnread))
        );
        assert_eq!(StatFilter::parse("4", false), Some(StatFilter::All));
        assert_eq!(StatFilter::parse("9", false), None);
    }
}
