//! # simmask
//!
//! A number-masking appliance: a bank of GSM modems, each SIM a proxy number;
//! sessions pair two real numbers through one proxy so that SMS and calls are
//! relayed without either side learning the other's number.
//!
//! # Data flow
//!
//! From the serial ports inwards, and from the operator outwards:
//!
//! ```text
//!  serial tty ──► modem (AT engine, URCs, actor) ──► bank (discovery, health)
//!                                                      │ BankEvent
//!                                                      ▼
//!                           daemon::dispatch ──► sms::relay ──► store (one writer)
//!                                          └───► voice::desk      ▲
//!                                                  │ masking rules │
//!                                                  ▼               │
//!                       operators ──► api (axum, SSE, dashboard) ──┘
//!                   home automation ──► mqtt (broker, discovery) ──► api
//! ```
//!
//! # Layout
//!
//! Every arrow points down: a module uses only the layers below it, never
//! one above or beside it (`tests/layering.rs` keeps it so). Bottom first:
//!
//! 1. Foundations that know nothing of the product: [`events`], the event
//!    bus (observers such as the metrics register on it, so it imports
//!    nothing above); [`number`], phone numbers and their redacting `Debug`;
//!    [`clock`], the daemon's time on the monotonic clock and the network's
//!    time as the modems report it (a Pi has no real-time clock). The clock
//!    is a foundation, not part of the bank: the bank and the relay feed it
//!    samples, and the daemon, the API and `doctor` read it, so it must sit
//!    below all of them and know none. [`serve`], HTTP connections on a
//!    network the appliance does not control (header and idle deadlines,
//!    a connection cap with a reserve): the API and the simulator's
//!    control API both serve through it.
//! 2. [`logging`], tracing set-up (human or JSON); [`pdu`], the pure SMS PDU
//!    codec; [`profile`], the per-model firmware profiles. The codec and the
//!    profiles are shared by the driver and the simulator, which is why they
//!    are foundations and not part of either: code tested on the simulator
//!    meets real modems speaking the same format.
//! 3. [`masking`], the pure masking rules (allocation, session lifecycle,
//!    out-of-session policy); [`modem`], one modem (AT engine, URCs, the actor
//!    that owns a port); [`sim`], the virtual GSM network behind real ptys.
//!    The driver and the simulator share only the foundations.
//! 4. [`bank`], all modems (discovery, identity, health, hotplug, reset; it
//!    knows modems and SIMs only); [`store`], SQL and nothing else. The store
//!    runs one writer connection on its own thread: SQLite allows one writer
//!    at a time, and one thread that owns it can group the commits of many
//!    SIMs into one fsync. It applies the pure masking rules inside its
//!    transaction so that two openers can never break the rule.
//! 5. [`config`], the TOML configuration and its defaults; [`metrics`],
//!    Prometheus counters fed from the event bus.
//! 6. [`sms`], the relay (decisions, reassembly, outbox workers; it drives
//!    the store's inbound transaction); [`voice`], the call bridge (a pure
//!    state machine per SIM and the desk that carries out what it asks).
//! 7. [`api`]: the local web API, SSE, callbacks, OpenAPI and the dashboard.
//! 8. [`mqtt`]: events and health on an MQTT broker with Home Assistant
//!    discovery, and opt-in commands: another door, built on the API's views
//!    and actions (what a viewer sees is what is published; a command is
//!    the admin route's own function), hence above it.
//! 9. [`daemon`]: wiring only: starts the long-lived tasks and connects them.
//! 10. [`bench`]: the product measured from outside on the virtual network;
//!     [`doctor`]: the installation checked from outside (the service user,
//!     udev, ModemManager, the clock, the disk, the store and each SIM),
//!     reading the machine under a root a test can replace.
//! 11. [`cli`]: one file per command group, each a thin door; `main.rs` only
//!     parses and dispatches.
//!
//! Pure layers (the PDU codec, the AT digester, the masking rules, the relay
//! and bridge decisions) never import tokio: they are plain functions over
//! data, fast to test and easy to fuzz.

pub mod api;
pub mod bank;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod events;
pub mod logging;
pub mod masking;
pub mod metrics;
pub mod modem;
pub mod mqtt;
pub mod number;
pub mod pdu;
pub mod profile;
pub mod serve;
pub mod sim;
pub mod sms;
pub mod store;
pub mod voice;
