//! Home Assistant MQTT discovery: what makes the appliance and each of its
//! SIMs appear in Home Assistant by themselves, one device each, with
//! sensors that read the retained state topics.
//!
//! Each entity is one retained configuration at
//! `<discovery>/<component>/<node>/<object>/config` (Home Assistant's
//! single-component discovery) carrying `unique_id`, the `device` it belongs
//! to (`identifiers`; a SIM's device is reached `via_device` the
//! appliance), `state_topic` with a `value_template` into the state's JSON,
//! `availability` (the appliance's last will, and for what depends on the
//! radio the SIM's own availability too), `device_class`, `state_class`
//! and `unit_of_measurement` where Home Assistant has them (signal strength
//! in dBm, counters `total_increasing`), and `origin`. An empty retained
//! configuration removes an entity.
//!
//! Pure: JSON built from data, no I/O.

use serde_json::{Map, Value, json};

use super::topics::Topics;

/// One entity's discovery configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// `sensor`, `binary_sensor`, `switch`, `text`.
    pub component: &'static str,
    /// Unique within the appliance: `appliance_…` or `sim_<key>_…`.
    pub object: String,
    pub config: Value,
}

/// What a SIM's device shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDevice {
    /// Its id in the pool (ICCID, or `imsi:<IMSI>`).
    pub id: String,
    /// [`super::topics::sim_key`] of the id.
    pub key: String,
    /// The proxy number: the appliance's own, not a participant's.
    pub msisdn: String,
    /// The modem's model, when known.
    pub model: Option<String>,
}

/// One sensor reading a field of a state topic.
struct Sensor {
    object: &'static str,
    name: &'static str,
    template: &'static str,
    device_class: Option<&'static str>,
    state_class: Option<&'static str>,
    unit: Option<&'static str>,
    category: Option<&'static str>,
    icon: Option<&'static str>,
    /// Meaningful only while the SIM's modem is up (signal, network).
    radio: bool,
}

const fn sensor(object: &'static str, name: &'static str, template: &'static str) -> Sensor {
    Sensor {
        object,
        name,
        template,
        device_class: None,
        state_class: None,
        unit: None,
        category: None,
        icon: None,
        radio: false,
    }
}

const MEASUREMENT: Option<&str> = Some("measurement");
const TOTAL_INCREASING: Option<&str> = Some("total_increasing");
const DIAGNOSTIC: Option<&str> = Some("diagnostic");
const SMS: Option<&str> = Some("SMS");

/// The appliance's sensors, reading `<prefix>/state`.
const APPLIANCE_SENSORS: &[Sensor] = &[
    Sensor {
        state_class: MEASUREMENT,
        unit: Some("sessions"),
        icon: Some("mdi:account-switch"),
        ..sensor(
            "open_sessions",
            "Open sessions",
            "{{ value_json.open_sessions }}",
        )
    },
    Sensor {
        state_class: MEASUREMENT,
        unit: SMS,
        icon: Some("mdi:message-processing"),
        ..sensor(
            "messages_relayed_today",
            "Relayed in 24 h",
            "{{ value_json.messages_relayed_today }}",
        )
    },
    Sensor {
        state_class: MEASUREMENT,
        unit: Some("SIMs"),
        icon: Some("mdi:sim"),
        ..sensor("sims_up", "SIMs up", "{{ value_json.sims_up }}")
    },
    Sensor {
        device_class: Some("duration"),
        state_class: MEASUREMENT,
        unit: Some("s"),
        category: DIAGNOSTIC,
        icon: Some("mdi:clock-alert-outline"),
        ..sensor(
            "clock_offset",
            "Clock offset",
            "{{ value_json.clock_offset_seconds }}",
        )
    },
    Sensor {
        state_class: TOTAL_INCREASING,
        unit: Some("events"),
        category: DIAGNOSTIC,
        icon: Some("mdi:delete-clock"),
        ..sensor(
            "events_dropped",
            "MQTT events dropped",
            "{{ value_json.events_dropped }}",
        )
    },
];

/// A SIM's sensors, reading `<prefix>/sim/<key>/state`.
const SIM_SENSORS: &[Sensor] = &[
    Sensor {
        icon: Some("mdi:sim"),
        ..sensor("state", "State", "{{ value_json.state }}")
    },
    Sensor {
        device_class: Some("signal_strength"),
        state_class: MEASUREMENT,
        unit: Some("dBm"),
        radio: true,
        ..sensor("signal", "Signal", "{{ value_json.signal_dbm }}")
    },
    Sensor {
        category: DIAGNOSTIC,
        icon: Some("mdi:radio-tower"),
        radio: true,
        ..sensor(
            "registration",
            "Registration",
            "{{ value_json.registration }}",
        )
    },
    Sensor {
        category: DIAGNOSTIC,
        icon: Some("mdi:antenna"),
        radio: true,
        ..sensor("operator", "Operator", "{{ value_json.operator }}")
    },
    Sensor {
        state_class: MEASUREMENT,
        unit: SMS,
        icon: Some("mdi:tray-full"),
        ..sensor("queue_depth", "Queue", "{{ value_json.queue_depth }}")
    },
    Sensor {
        state_class: TOTAL_INCREASING,
        unit: SMS,
        icon: Some("mdi:message-arrow-right"),
        ..sensor("sent", "Sent", "{{ value_json.sent }}")
    },
    Sensor {
        state_class: TOTAL_INCREASING,
        unit: SMS,
        icon: Some("mdi:message-arrow-left"),
        ..sensor("received", "Received", "{{ value_json.received }}")
    },
    Sensor {
        state_class: TOTAL_INCREASING,
        unit: SMS,
        icon: Some("mdi:message-alert"),
        ..sensor("failed", "Failed", "{{ value_json.failed }}")
    },
    Sensor {
        state_class: MEASUREMENT,
        unit: Some("sessions"),
        icon: Some("mdi:account-switch"),
        ..sensor(
            "open_sessions",
            "Open sessions",
            "{{ value_json.open_sessions }}",
        )
    },
    Sensor {
        state_class: MEASUREMENT,
        unit: SMS,
        icon: Some("mdi:gauge"),
        ..sensor(
            "messages_today",
            "Sent in 24 h",
            "{{ value_json.messages_today }}",
        )
    },
    Sensor {
        state_class: TOTAL_INCREASING,
        unit: Some("recipients"),
        icon: Some("mdi:account-multiple"),
        ..sensor(
            "recipients_this_month",
            "Recipients this month",
            "{{ value_json.recipients_this_month }}",
        )
    },
];

/// What every configuration of this appliance shares.
pub struct Discovery<'a> {
    pub topics: &'a Topics,
    /// The appliance's name, as people call it.
    pub appliance: &'a str,
    pub qos: u8,
    /// Commands are accepted: the SIMs get a switch and a USSD box.
    pub commands: bool,
}

fn origin() -> Value {
    json!({"name": "simmask", "sw_version": env!("CARGO_PKG_VERSION")})
}

impl Discovery<'_> {
    fn appliance_device(&self) -> Value {
        json!({
            "identifiers": [self.topics.node],
            "name": format!("simmask {}", self.appliance),
            "manufacturer": "simmask",
            "model": "Number-masking appliance",
            "sw_version": env!("CARGO_PKG_VERSION"),
        })
    }

    fn sim_device(&self, sim: &SimDevice) -> Value {
        json!({
            "identifiers": [format!("{}_sim_{}", self.topics.node, sim.key)],
            "name": format!("SIM {}", sim.msisdn),
            "manufacturer": "simmask",
            "model": sim.model.clone().unwrap_or_else(|| "SIM".into()),
            "serial_number": sim.id,
            "via_device": self.topics.node,
        })
    }

    fn availability(&self, sim: Option<&str>) -> Value {
        let mut list = vec![json!({"topic": self.topics.availability()})];
        if let Some(key) = sim {
            list.push(json!({"topic": self.topics.sim_availability(key)}));
        }
        Value::Array(list)
    }

    /// The parts of a configuration every entity has.
    fn base(
        &self,
        object: &str,
        name: &str,
        device: Value,
        sim_radio: Option<&str>,
    ) -> Map<String, Value> {
        let mut config = Map::new();
        config.insert("name".into(), name.into());
        config.insert(
            "unique_id".into(),
            format!("{}_{object}", self.topics.node).into(),
        );
        config.insert("device".into(), device);
        config.insert("origin".into(), origin());
        config.insert("availability".into(), self.availability(sim_radio));
        if sim_radio.is_some() {
            config.insert("availability_mode".into(), "all".into());
        }
        config.insert("qos".into(), self.qos.into());
        config
    }

    fn sensor(
        &self,
        sensor: &Sensor,
        object: String,
        state_topic: String,
        device: Value,
        sim: Option<&str>,
    ) -> Entity {
        let radio = sim.filter(|_| sensor.radio);
        let mut config = self.base(&object, sensor.name, device, radio);
        config.insert("state_topic".into(), state_topic.into());
        config.insert("value_template".into(), sensor.template.into());
        let optional = [
            ("device_class", sensor.device_class),
            ("state_class", sensor.state_class),
            ("unit_of_measurement", sensor.unit),
            ("entity_category", sensor.category),
            ("icon", sensor.icon),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                config.insert(key.into(), value.into());
            }
        }
        Entity {
            component: "sensor",
            object,
            config: Value::Object(config),
        }
    }

    /// The appliance's entities.
    pub fn appliance(&self) -> Vec<Entity> {
        let mut entities: Vec<Entity> = APPLIANCE_SENSORS
            .iter()
            .map(|sensor| {
                self.sensor(
                    sensor,
                    format!("appliance_{}", sensor.object),
                    self.topics.state(),
                    self.appliance_device(),
                    None,
                )
            })
            .collect();
        let object = "appliance_clock_problem".to_string();
        let mut clock = self.base(&object, "Clock", self.appliance_device(), None);
        clock.insert("state_topic".into(), self.topics.state().into());
        clock.insert(
            "value_template".into(),
            "{{ 'ON' if value_json.clock_suspect else 'OFF' }}".into(),
        );
        clock.insert("device_class".into(), "problem".into());
        clock.insert("entity_category".into(), "diagnostic".into());
        entities.push(Entity {
            component: "binary_sensor",
            object,
            config: Value::Object(clock),
        });
        entities
    }

    /// One SIM's entities.
    pub fn sim(&self, sim: &SimDevice) -> Vec<Entity> {
        let object = |name: &str| format!("sim_{}_{name}", sim.key);
        let state_topic = self.topics.sim_state(&sim.key);
        let mut entities: Vec<Entity> = SIM_SENSORS
            .iter()
            .map(|sensor| {
                self.sensor(
                    sensor,
                    object(sensor.object),
                    state_topic.clone(),
                    self.sim_device(sim),
                    Some(&sim.key),
                )
            })
            .collect();
        let mut problem = self.base(&object("problem"), "Problem", self.sim_device(sim), None);
        problem.insert("state_topic".into(), state_topic.clone().into());
        problem.insert(
            "value_template".into(),
            "{{ 'OFF' if value_json.healthy else 'ON' }}".into(),
        );
        problem.insert("device_class".into(), "problem".into());
        entities.push(Entity {
            component: "binary_sensor",
            object: object("problem"),
            config: Value::Object(problem),
        });
        if self.commands {
            entities.extend(self.sim_commands(sim, &state_topic));
        }
        entities
    }

    /// A switch that enables the SIM, a box to send USSD from it, and the
    /// last reply.
    fn sim_commands(&self, sim: &SimDevice, state_topic: &str) -> Vec<Entity> {
        let object = |name: &str| format!("sim_{}_{name}", sim.key);
        let command = |enabled: bool| json!({"sim": sim.id, "enabled": enabled}).to_string();
        let mut enabled = self.base(&object("enabled"), "Enabled", self.sim_device(sim), None);
        enabled.insert("state_topic".into(), state_topic.into());
        enabled.insert(
            "value_template".into(),
            "{{ 'ON' if value_json.enabled else 'OFF' }}".into(),
        );
        enabled.insert(
            "command_topic".into(),
            self.topics.command("sim_enabled").into(),
        );
        enabled.insert("payload_on".into(), command(true).into());
        enabled.insert("payload_off".into(), command(false).into());
        enabled.insert("state_on".into(), "ON".into());
        enabled.insert("state_off".into(), "OFF".into());
        enabled.insert("entity_category".into(), "config".into());
        let mut ussd = self.base(
            &object("ussd"),
            "USSD code",
            self.sim_device(sim),
            Some(&sim.key),
        );
        ussd.insert("command_topic".into(), self.topics.command("ussd").into());
        ussd.insert(
            "command_template".into(),
            format!("{{\"sim\": \"{}\", \"code\": \"{{{{ value }}}}\"}}", sim.id).into(),
        );
        ussd.insert("pattern".into(), "^[0-9*#]{1,32}$".into());
        ussd.insert("max".into(), 32.into());
        ussd.insert("icon".into(), "mdi:pound".into());
        let mut reply = self.base(
            &object("ussd_reply"),
            "USSD reply",
            self.sim_device(sim),
            None,
        );
        reply.insert("state_topic".into(), self.topics.sim_ussd(&sim.key).into());
        reply.insert(
            "value_template".into(),
            "{{ value_json.reply if value_json.ok else value_json.message }}".into(),
        );
        reply.insert("entity_category".into(), "diagnostic".into());
        reply.insert("icon".into(), "mdi:message-reply-text".into());
        vec![
            Entity {
                component: "switch",
                object: object("enabled"),
                config: Value::Object(enabled),
            },
            Entity {
                component: "text",
                object: object("ussd"),
                config: Value::Object(ussd),
            },
            Entity {
                component: "sensor",
                object: object("ussd_reply"),
                config: Value::Object(reply),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(topics: &Topics, commands: bool) -> Discovery<'_> {
        Discovery {
            topics,
            appliance: "attic",
            qos: 1,
            commands,
        }
    }

    fn sim() -> SimDevice {
        SimDevice {
            id: "8944110000000000001".into(),
            key: "8944110000000000001".into(),
            msisdn: "+447700900001".into(),
            model: Some("SIM800L".into()),
        }
    }

    #[test]
    fn every_entity_has_what_home_assistant_requires() {
        let topics = Topics::new("simmask/attic".into(), "homeassistant".into(), "attic");
        let entities: Vec<Entity> = [
            discovery(&topics, true).appliance(),
            discovery(&topics, true).sim(&sim()),
        ]
        .concat();
        let mut unique = std::collections::HashSet::new();
        for entity in &entities {
            let config = &entity.config;
            assert!(unique.insert(config["unique_id"].clone()), "{config}");
            assert!(config["device"]["identifiers"][0].is_string(), "{config}");
            assert_eq!(config["origin"]["name"], "simmask");
            assert!(config["availability"][0]["topic"].is_string(), "{config}");
            let topic = topics.discovery(entity.component, &entity.object);
            assert_eq!(
                topics.discovery_object(&topic),
                Some(entity.object.as_str())
            );
            if entity.component != "text" {
                assert!(config["state_topic"].is_string(), "{config}");
            }
        }
        let by = |object: &str| {
            entities
                .iter()
                .find(|e| e.object == object)
                .unwrap_or_else(|| panic!("no {object}"))
        };
        let signal = &by("sim_8944110000000000001_signal").config;
        assert_eq!(signal["device_class"], "signal_strength");
        assert_eq!(signal["unit_of_measurement"], "dBm");
        assert_eq!(signal["availability_mode"], "all");
        assert_eq!(
            signal["device"]["via_device"], "simmask_attic",
            "the SIM's device hangs under the appliance"
        );
        assert_eq!(
            by("sim_8944110000000000001_sent").config["state_class"],
            "total_increasing"
        );
        let switch = by("sim_8944110000000000001_enabled");
        assert_eq!(switch.component, "switch");
        assert_eq!(
            serde_json::from_str::<Value>(switch.config["payload_off"].as_str().unwrap()).unwrap(),
            json!({"sim": "8944110000000000001", "enabled": false})
        );
        let ussd = &by("sim_8944110000000000001_ussd").config;
        assert_eq!(
            ussd["command_template"],
            "{\"sim\": \"8944110000000000001\", \"code\": \"{{ value }}\"}"
        );
        // The state sensor stays available when the SIM is not: it says why.
        assert_eq!(
            by("sim_8944110000000000001_state").config["availability"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn without_commands_nothing_can_be_changed_from_home_assistant() {
        let topics = Topics::new("simmask/attic".into(), "homeassistant".into(), "attic");
        let entities = discovery(&topics, false).sim(&sim());
        assert!(
            entities
                .iter()
                .all(|e| e.config.get("command_topic").is_none())
        );
        assert!(
            entities
                .iter()
                .all(|e| matches!(e.component, "sensor" | "binary_sensor"))
        );
    }
}
