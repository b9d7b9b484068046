//! `hw/99-simmask.rules`: every line is well-formed udev syntax, and applied
//! (by a small evaluator of the subset the file uses, following udev(7)) to
//! the devices a modem bank shows, it keeps ModemManager away from each
//! modem, names each AT port after its USB path, tags it for the bank, and
//! lets dialout switch hub power. Where `udevadm verify` exists (systemd
//! 253 and later) it checks the file too.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn rules_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("hw/99-simmask.rules"))
        .expect("hw/99-simmask.rules")
}

#[derive(Debug, Clone)]
struct Key {
    name: String,
    attr: Option<String>,
    op: String,
    value: String,
}

/// Parses the file into rules (one per line), refusing anything udev would.
fn parse(text: &str) -> Vec<Vec<Key>> {
    const MATCH_ONLY: &[&str] = &[
        "ACTION",
        "DEVPATH",
        "KERNEL",
        "KERNELS",
        "SUBSYSTEM",
        "SUBSYSTEMS",
        "DRIVER",
        "DRIVERS",
        "ATTRS",
        "TAGS",
        "TEST",
        "PROGRAM",
        "RESULT",
    ];
    const ASSIGN_ONLY: &[&str] = &[
        "SYMLINK", "OWNER", "GROUP", "MODE", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS", "NAME",
    ];
    const BOTH: &[&str] = &["ATTR", "ENV", "TAG", "SYSCTL"];
    let mut rules = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut keys = Vec::new();
        let mut rest = line;
        while !rest.is_empty() {
            let op_at = rest
                .find(['=', '!', '+', ':', '-'])
                .unwrap_or_else(|| panic!("line {}: no operator in {rest:?}", number + 1));
            let (lhs, after) = rest.split_at(op_at);
            let op = ["==", "!=", "+=", "-=", ":=", "="]
                .into_iter()
                .find(|op| after.starts_with(op))
                .unwrap_or_else(|| panic!("line {}: bad operator in {after:?}", number + 1));
            let after = &after[op.len()..];
            assert!(
                after.starts_with('"'),
                "line {}: values are quoted",
                number + 1
            );
            let end = after[1..]
                .find('"')
                .unwrap_or_else(|| panic!("line {}: unterminated value", number + 1))
                + 1;
            let value = after[1..end].to_string();
            let (name, attr) = match lhs.split_once('{') {
                Some((name, attr)) => (
                    name.to_string(),
                    Some(
                        attr.strip_suffix('}')
                            .unwrap_or_else(|| panic!("line {}: bad {{}}", number + 1))
                            .to_string(),
                    ),
                ),
                None => (lhs.to_string(), None),
            };
            let is_match = op == "==" || op == "!=";
            if MATCH_ONLY.contains(&name.as_str()) {
                assert!(is_match, "line {}: {name} only matches", number + 1);
            } else if ASSIGN_ONLY.contains(&name.as_str()) {
                assert!(!is_match, "line {}: {name} only assigns", number + 1);
            } else {
                assert!(
                    BOTH.contains(&name.as_str()),
                    "line {}: unknown key {name}",
                    number + 1
                );
            }
            if ["ATTR", "ATTRS", "ENV", "IMPORT"].contains(&name.as_str()) {
                assert!(attr.is_some(), "line {}: {name} needs {{}}", number + 1);
            }
            keys.push(Key {
                name,
                attr,
                op: op.to_string(),
                value,
            });
            rest = after[end + 1..].trim_start();
            if let Some(next) = rest.strip_prefix(',') {
                rest = next.trim_start();
            } else {
                assert!(
                    rest.is_empty(),
                    "line {}: keys are comma-separated",
                    number + 1
                );
            }
        }
        rules.push(keys);
    }
    // Every GOTO has its LABEL further down, and labels are unique.
    let labels: Vec<(usize, &str)> = rules
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.iter()
                .filter(|k| k.name == "LABEL")
                .map(move |k| (i, &*k.value))
        })
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        for goto in rule.iter().filter(|k| k.name == "GOTO") {
            assert!(
                labels.iter().any(|(at, l)| *at > i && *l == goto.value),
                "GOTO {} without a LABEL after it",
                goto.value
            );
        }
    }
    let mut names: Vec<&str> = labels.iter().map(|(_, l)| *l).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), labels.len(), "labels are unique");
    rules
}

/// udev's patterns: `*`, `?` and `|` alternatives.
fn matches(pattern: &str, value: &str) -> bool {
    fn glob(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], v) || (!v.is_empty() && glob(p, &v[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a == b => glob(&p[1..], &v[1..]),
            _ => false,
        }
    }
    pattern
        .split('|')
        .any(|alternative| glob(alternative.as_bytes(), value.as_bytes()))
}

/// A device as udev sees it, with its parents (nearest first).
#[derive(Debug, Clone, Default)]
struct Device {
    action: &'static str,
    subsystem: &'static str,
    attrs: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    parents: Vec<Parent>,
}

#[derive(Debug, Clone)]
struct Parent {
    kernel: String,
    subsystem: &'static str,
    attrs: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Outcome {
    env: BTreeMap<String, String>,
    tags: Vec<String>,
    symlinks: Vec<String>,
    group: Option<String>,
    mode: Option<String>,
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A tty of a USB modem: interface `interface` of device `vid:pid` on USB
/// port `usb_path` (e.g. `1-1.3`).
fn usb_tty(vid: &str, pid: &str, usb_path: &str, interface: &str) -> Device {
    Device {
        action: "add",
        subsystem: "tty",
        env: attrs(&[("ID_USB_INTERFACE_NUM", interface)]),
        parents: vec![
            Parent {
                kernel: format!("{usb_path}:1.{}", interface.trim_start_matches('0')),
                subsystem: "usb",
                attrs: attrs(&[("bInterfaceNumber", interface)]),
            },
            Parent {
                kernel: usb_path.to_string(),
                subsystem: "usb",
                attrs: attrs(&[
                    ("idVendor", vid),
                    ("idProduct", pid),
                    ("bDeviceClass", "00"),
                ]),
            },
        ],
        ..Device::default()
    }
}

fn usb_device(vid: &str, pid: &str, class: &str) -> Device {
    Device {
        action: "add",
        subsystem: "usb",
        attrs: attrs(&[
            ("idVendor", vid),
            ("idProduct", pid),
            ("bDeviceClass", class),
        ]),
        env: attrs(&[("DEVTYPE", "usb_device")]),
        ..Device::default()
    }
}

/// Applies the rules to `device` as udev would for the keys the file uses.
fn apply(rules: &[Vec<Key>], device: &Device) -> Outcome {
    let mut out = Outcome {
        env: device.env.clone(),
        ..Outcome::default()
    };
    let mut skip_to: Option<String> = None;
    for rule in rules {
        if let Some(label) = &skip_to {
            if rule.iter().any(|k| k.name == "LABEL" && &k.value == label) {
                skip_to = None;
            } else {
                continue;
            }
        }
        // Keys on parents must all match one device of the chain (udev(7)).
        let parent_keys: Vec<&Key> = rule
            .iter()
            .filter(|k| ["ATTRS", "SUBSYSTEMS", "KERNELS", "DRIVERS"].contains(&k.name.as_str()))
            .collect();
        let mut matched_parent: Option<String> = None;
        if !parent_keys.is_empty() {
            let chain = std::iter::once(Parent {
                kernel: String::new(),
                subsystem: device.subsystem,
                attrs: device.attrs.clone(),
            })
            .chain(device.parents.iter().cloned());
            let found = chain.into_iter().find(|p| {
                parent_keys.iter().all(|k| {
                    let value = match k.name.as_str() {
                        "ATTRS" => p.attrs.get(k.attr.as_deref().unwrap()).cloned(),
                        "SUBSYSTEMS" => Some(p.subsystem.to_string()),
                        "KERNELS" => Some(p.kernel.clone()),
                        _ => None,
                    };
                    let hit = value.is_some_and(|v| matches(&k.value, &v));
                    if k.op == "==" { hit } else { !hit }
                })
            });
            match found {
                Some(parent) => matched_parent = Some(parent.kernel),
                None => continue,
            }
        }
        let own_match = rule
            .iter()
            .filter(|k| k.op == "==" || k.op == "!=")
            .all(|k| {
                let value = match k.name.as_str() {
                    "ACTION" => Some(device.action.to_string()),
                    "SUBSYSTEM" => Some(device.subsystem.to_string()),
                    "ATTR" => device.attrs.get(k.attr.as_deref().unwrap()).cloned(),
                    "ENV" => Some(
                        out.env
                            .get(k.attr.as_deref().unwrap())
                            .cloned()
                            .unwrap_or_default(),
                    ),
                    _ => return true, // parent keys, checked above
                };
                let hit = value.is_some_and(|v| matches(&k.value, &v));
                if k.op == "==" { hit } else { !hit }
            });
        if !own_match {
            continue;
        }
        for key in rule.iter().filter(|k| k.op != "==" && k.op != "!=") {
            let mut value = key.value.clone();
            if let Some(parent) = &matched_parent {
                value = value.replace("%b", parent);
            }
            while let Some(start) = value.find("$env{") {
                let end = value[start..].find('}').unwrap() + start;
                let name = value[start + 5..end].to_string();
                let env = out.env.get(&name).cloned().unwrap_or_default();
                value.replace_range(start..=end, &env);
            }
            match key.name.as_str() {
                "ENV" => {
                    out.env.insert(key.attr.clone().unwrap(), value);
                }
                "TAG" => out.tags.push(value),
                "SYMLINK" => out.symlinks.push(value),
                "GROUP" => out.group = Some(value),
                "MODE" => out.mode = Some(value),
                "GOTO" => skip_to = Some(value),
                _ => {}
            }
        }
    }
    out
}

fn is_at_port(out: &Outcome, usb_path: &str) {
    assert_eq!(
        out.env.get("ID_MM_DEVICE_IGNORE").map(String::as_str),
        Some("1")
    );
    assert_eq!(out.env.get("SIMMASK_PORT").map(String::as_str), Some("at"));
    assert_eq!(out.symlinks, [format!("simmask/usb-{usb_path}")]);
    assert_eq!(out.tags, ["simmask"]);
    assert_eq!(out.group.as_deref(), Some("dialout"));
    assert_eq!(out.mode.as_deref(), Some("0660"));
}

#[test]
fn each_supported_modem_gets_its_at_port_named_by_usb_path_and_tagged() {
    let rules = parse(&rules_text());
    for (vid, pid, at_interface) in [
        ("2c7c", "0125", "02"), // Quectel EC25 / EG25
        ("1e0e", "9001", "02"), // SIMCom SIM7600
        ("12d1", "1001", "02"), // Huawei E1550
        ("12d1", "1436", "02"), // Huawei E173
        ("1a86", "7523", "00"), // SIM800 behind a CH340
        ("10c4", "ea60", "00"), // SIM800 behind a CP2102
    ] {
        let out = apply(&rules, &usb_tty(vid, pid, "1-1.3", at_interface));
        is_at_port(&out, "1-1.3");
    }
}

#[test]
fn identical_modems_on_two_hub_ports_get_two_names() {
    let rules = parse(&rules_text());
    let first = apply(&rules, &usb_tty("2c7c", "0125", "1-1.2", "02"));
    let second = apply(&rules, &usb_tty("2c7c", "0125", "1-1.4.1", "02"));
    is_at_port(&first, "1-1.2");
    is_at_port(&second, "1-1.4.1");
}

#[test]
fn a_modems_other_ports_are_hidden_from_modemmanager_but_not_probed() {
    let rules = parse(&rules_text());
    for interface in ["00", "01", "03"] {
        let out = apply(&rules, &usb_tty("2c7c", "0125", "1-1.2", interface));
        assert_eq!(
            out.env.get("ID_MM_DEVICE_IGNORE").map(String::as_str),
            Some("1")
        );
        assert!(out.symlinks.is_empty() && out.tags.is_empty(), "{out:?}");
    }
    // ModemManager also looks at the USB device itself.
    let out = apply(&rules, &usb_device("2c7c", "0125", "ef"));
    assert_eq!(
        out.env.get("ID_MM_DEVICE_IGNORE").map(String::as_str),
        Some("1")
    );
}

#[test]
fn other_devices_are_left_alone() {
    let rules = parse(&rules_text());
    // An FTDI adapter (a console cable) and a keyboard.
    let out = apply(&rules, &usb_tty("0403", "6001", "1-1.1", "00"));
    assert!(!out.env.contains_key("ID_MM_DEVICE_IGNORE"), "{out:?}");
    assert!(out.symlinks.is_empty() && out.tags.is_empty() && out.group.is_none());
    let out = apply(&rules, &usb_device("046d", "c31c", "00"));
    assert!(out.group.is_none() && !out.env.contains_key("ID_MM_DEVICE_IGNORE"));
    // A removal changes nothing.
    let mut removed = usb_tty("2c7c", "0125", "1-1.2", "02");
    removed.action = "remove";
    let out = apply(&rules, &removed);
    assert!(out.symlinks.is_empty() && !out.env.contains_key("SIMMASK_PORT"));
}

#[test]
fn hubs_can_be_power_switched_by_dialout() {
    let rules = parse(&rules_text());
    let out = apply(&rules, &usb_device("2109", "2817", "09"));
    assert_eq!(out.group.as_deref(), Some("dialout"));
    assert_eq!(out.mode.as_deref(), Some("0664"));
}

#[test]
fn malformed_rules_are_refused() {
    for bad in [
        "ATTRS{idVendor}=\"2c7c\"",  // ATTRS only matches
        "SYMLINK==\"x\"",            // SYMLINK only assigns
        "ENV{X}=\"1\" GOTO=\"end\"", // no comma
        "FOO==\"1\"",                // unknown key
        "GOTO=\"nowhere\"",          // no label
        "ENV{X}==1",                 // unquoted
    ] {
        let result = std::panic::catch_unwind(|| parse(bad));
        assert!(result.is_err(), "accepted: {bad}");
    }
}

#[test]
fn udevadm_verify_accepts_the_file_where_it_exists() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("hw/99-simmask.rules");
    let has_verify = Command::new("udevadm")
        .args(["verify", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_verify {
        let output = Command::new("udevadm")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
