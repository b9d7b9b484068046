//! Every topic the appliance publishes or listens to, in one place (the
//! README's topic list mirrors this file).
//!
//! ```text
//! <prefix>/availability                 online | offline (retained; offline is the last will)
//! <prefix>/state                        the appliance (retained JSON)
//! <prefix>/sim/<sim>/state              one SIM (retained JSON)
//! <prefix>/sim/<sim>/availability       online | offline (retained)
//! <prefix>/sim/<sim>/ussd               the last USSD reply (JSON; commands on)
//! <prefix>/events/<kind>                one event (JSON, not retained)
//! <prefix>/command/<name>               commands, when enabled
//! <prefix>/command/<name>/result        each command's result (JSON)
//! <discovery>/<component>/<node>/<object>/config    Home Assistant discovery
//! <discovery>/status                    Home Assistant's birth: online → discovery again
//! ```

/// The topics of one appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `simmask/<appliance>` unless configured.
    pub prefix: String,
    /// `homeassistant` unless configured.
    pub discovery_prefix: String,
    /// The discovery node id and the root of every unique id:
    /// `simmask_<appliance>`.
    pub node: String,
}

/// A SIM's id (its ICCID, or `imsi:<IMSI>`) as a topic level and a Home
/// Assistant object id.
pub fn sim_key(id: &str) -> String {
    crate::config::slug(id)
}

impl Topics {
    pub fn new(prefix: String, discovery_prefix: String, appliance: &str) -> Self {
        Self {
            prefix,
            discovery_prefix,
            node: format!("simmask_{}", crate::config::slug(appliance)),
        }
    }

    pub fn availability(&self) -> String {
        format!("{}/availability", self.prefix)
    }

    pub fn state(&self) -> String {
        format!("{}/state", self.prefix)
    }

    pub fn sim_state(&self, key: &str) -> String {
        format!("{}/sim/{key}/state", self.prefix)
    }

    pub fn sim_availability(&self, key: &str) -> String {
        format!("{}/sim/{key}/availability", self.prefix)
    }

    pub fn sim_ussd(&self, key: &str) -> String {
        format!("{}/sim/{key}/ussd", self.prefix)
    }

    pub fn event(&self, kind: &str) -> String {
        format!("{}/events/{kind}", self.prefix)
    }

    pub fn command(&self, name: &str) -> String {
        format!("{}/command/{name}", self.prefix)
    }

    /// Every command (one level: results, one deeper, are not matched).
    pub fn commands(&self) -> String {
        format!("{}/command/+", self.prefix)
    }

    /// The command `topic` names, if it is one of ours.
    pub fn command_name<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let name = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/command/")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }

    pub fn command_result(&self, name: &str) -> String {
        format!("{}/command/{name}/result", self.prefix)
    }

    /// The discovery topic of one entity.
    pub fn discovery(&self, component: &str, object: &str) -> String {
        format!(
            "{}/{component}/{}/{object}/config",
            self.discovery_prefix, self.node
        )
    }

    /// Every discovery topic of this appliance.
    pub fn discoveries(&self) -> String {
        format!("{}/+/{}/+/config", self.discovery_prefix, self.node)
    }

    /// The object id of one of our discovery topics.
    pub fn discovery_object<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic
            .strip_prefix(&self.discovery_prefix)?
            .strip_prefix('/')?;
        let (_component, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix(&self.node)?.strip_prefix('/')?;
        let object = rest.strip_suffix("/config")?;
        (!object.is_empty() && !object.contains('/')).then_some(object)
    }

    /// Home Assistant's birth and last will.
    pub fn home_assistant_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_built_and_read_back() {
        let topics = Topics::new("simmask/attic".into(), "homeassistant".into(), "Attic");
        assert_eq!(topics.node, "simmask_attic");
        assert_eq!(sim_key("imsi:001010123456789"), "imsi_001010123456789");
        assert_eq!(
            topics.sim_state("8944"),
            "simmask/attic/sim/8944/state".to_string()
        );
        assert_eq!(
            topics.command_name("simmask/attic/command/ussd"),
            Some("ussd")
        );
        assert_eq!(
            topics.command_name("simmask/attic/command/ussd/result"),
            None
        );
        assert_eq!(topics.command_name("simmask/other/command/ussd"), None);
        let config = topics.discovery("sensor", "sim_8944_signal");
        assert_eq!(
            config,
            "homeassistant/sensor/simmask_attic/sim_8944_signal/config"
        );
        assert_eq!(topics.discovery_object(&config), Some("sim_8944_signal"));
        assert_eq!(
            topics.discovery_object("homeassistant/sensor/simmask_other/x/config"),
            None
        );
    }
}
