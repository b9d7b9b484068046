//! All modems: discovery of ports, identity (IMEI, ICCID), health, hotplug
//! and reset.
