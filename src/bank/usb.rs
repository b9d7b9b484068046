//! Where a modem sits on the USB tree, for the power-cycle hook: a per-port
//! power switch (`uhubctl -l {hub} -p {port}`) needs the hub and the port,
//! not the tty. Both come from sysfs: `/sys/class/tty/ttyUSB0/device`
//! resolves to `…/usb1/1-1/1-1.3/1-1.3:1.2/ttyUSB0`, whose USB device
//! `1-1.3` is port `3` of hub `1-1` (a device on a root hub, `1-2`, is
//! port `2` of hub `1`, as uhubctl names them).

use std::path::{Path, PathBuf};

/// A modem's place on the USB tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbPort {
    /// The hub's location, e.g. `1-1` (uhubctl's `-l`).
    pub hub: String,
    /// The port on that hub, e.g. `3` (uhubctl's `-p`).
    pub port: String,
}

/// The hub and port of the USB device behind the tty `tty` (a path such as
/// `/dev/ttyUSB0`, or a symlink to it as in `/dev/serial/by-id/`), read
/// under `sysfs` (normally `/sys`). `None` when the tty is not a USB
/// device's (a pty, a UART).
pub fn locate(tty: &Path, sysfs: &Path) -> Option<UsbPort> {
    let tty = std::fs::canonicalize(tty).unwrap_or_else(|_| tty.to_path_buf());
    let name = tty.file_name()?;
    let device: PathBuf =
        std::fs::canonicalize(sysfs.join("class/tty").join(name).join("device")).ok()?;
    // Up from the tty to the first interface (`1-1.3:1.2`); its parent is the device.
    let interface = device.ancestors().find(|dir| {
        dir.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(':'))
    })?;
    let usb_device = interface.parent()?.file_name()?.to_str()?;
    split(usb_device)
}

/// `1-1.3` → hub `1-1`, port `3`; `1-2` → hub `1`, port `2`.
fn split(device: &str) -> Option<UsbPort> {
    let (bus, ports) = device.split_once('-')?;
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !valid(bus) || !ports.split('.').all(valid) {
        return None;
    }
    Some(match ports.rsplit_once('.') {
        Some((hub_ports, port)) => UsbPort {
            hub: format!("{bus}-{hub_ports}"),
            port: port.to_string(),
        },
        None => UsbPort {
            hub: bus.to_string(),
            port: ports.to_string(),
        },
    })
}

/// The power-cycle command with `{tty}` (the port's path), `{hub}` and
/// `{port}` (its USB location) filled in. `None` when the command needs a
/// USB location that is unknown: better not to run it than to cycle the
/// wrong port. Values are quoted for `sh -c` when they need it.
pub fn power_cycle_line(command: &str, tty: &str, usb: Option<&UsbPort>) -> Option<String> {
    let needs_usb = command.contains("{hub}") || command.contains("{port}");
    let line = command.replace("{tty}", &quote(tty));
    match usb {
        Some(usb) => Some(line.replace("{hub}", &usb.hub).replace("{port}", &usb.port)),
        None if needs_usb => None,
        None => Some(line),
    }
}

/// `text` as one `sh` word.
fn quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded sysfs tree of a modem's AT interface on port 3 of hub 1-1.
    fn fixture(root: &Path) {
        let interface = root.join("devices/platform/soc/fd500000.pcie/usb1/1-1/1-1.3/1-1.3:1.2");
        std::fs::create_dir_all(interface.join("ttyUSB0/tty/ttyUSB0")).unwrap();
        std::fs::create_dir_all(root.join("class/tty/ttyUSB0")).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/platform/soc/fd500000.pcie/usb1/1-1/1-1.3/1-1.3:1.2/ttyUSB0",
            root.join("class/tty/ttyUSB0/device"),
        )
        .unwrap();
        // A CDC-ACM modem: the device link is the interface itself.
        let acm = root.join("devices/pci0000:00/0000:00:14.0/usb2/2-4/2-4:1.0");
        std::fs::create_dir_all(acm.join("tty/ttyACM0")).unwrap();
        std::fs::create_dir_all(root.join("class/tty/ttyACM0")).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:14.0/usb2/2-4/2-4:1.0",
            root.join("class/tty/ttyACM0/device"),
        )
        .unwrap();
    }

    #[test]
    fn a_tty_is_located_on_its_hub_and_port() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        assert_eq!(
            locate(Path::new("/dev/ttyUSB0"), dir.path()),
            Some(UsbPort {
                hub: "1-1".into(),
                port: "3".into()
            })
        );
        assert_eq!(
            locate(Path::new("/dev/ttyACM0"), dir.path()),
            Some(UsbPort {
                hub: "2".into(),
                port: "4".into()
            })
        );
        assert_eq!(locate(Path::new("/dev/pts/7"), dir.path()), None);
    }

    #[test]
    fn a_by_id_link_is_followed_to_its_tty() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(dev.join("serial/by-id")).unwrap();
        std::fs::write(dev.join("ttyUSB0"), "").unwrap();
        let link = dev.join("serial/by-id/usb-Quectel_EC25-if02-port0");
        std::os::unix::fs::symlink("../../ttyUSB0", &link).unwrap();
        assert_eq!(
            locate(&link, dir.path()).map(|usb| (usb.hub, usb.port)),
            Some(("1-1".into(), "3".into()))
        );
    }

    #[test]
    fn the_hook_gets_hub_port_and_tty() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let usb = locate(Path::new("/dev/ttyUSB0"), dir.path());
        assert_eq!(
            power_cycle_line(
                "uhubctl -a cycle -l {hub} -p {port} # {tty}",
                "/dev/ttyUSB0",
                usb.as_ref()
            )
            .unwrap(),
            "uhubctl -a cycle -l 1-1 -p 3 # /dev/ttyUSB0"
        );
        // Unknown location: a command that needs it is not run at all.
        assert_eq!(
            power_cycle_line("uhubctl -l {hub} -p {port}", "/dev/pts/3", None),
            None
        );
        assert_eq!(
            power_cycle_line("reset-modem {tty}", "/tmp/my links/modem0", None).unwrap(),
            "reset-modem '/tmp/my links/modem0'"
        );
    }

    #[test]
    fn device_names_split_into_hub_and_port() {
        assert_eq!(
            split("1-1.3.2").map(|u| (u.hub, u.port)),
            Some(("1-1.3".into(), "2".into()))
        );
        assert_eq!(split("usb1"), None);
        assert_eq!(split("1-1.x"), None);
    }
}
