//! The radio: a modem that boots with it off (`+CFUN: 0`, minimum
//! functionality, or `4`, radio off; 3GPP TS 27.007 §8.2) neither registers
//! nor, at level 0, reads its SIM. Such a modem is switched to full
//! functionality; the SIM is then waited for (`pin.rs`).

use super::{BringUp, Step};
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::parse::parse_cfun;

/// Reads the functionality level and switches a modem found at 0 or 4 to
/// full functionality: the level found, and whether it was switched (the
/// SIM and the network need a moment after that). A modem that does not
/// answer `AT+CFUN?` is left as it is (most boot at full functionality).
pub(super) async fn radio_on(steps: &mut BringUp<'_>) -> Result<(Option<u8>, bool), AtError> {
    let level = steps
        .ask_parsed(
            Step::Functionality,
            Command::new("AT+CFUN?", "+CFUN:"),
            parse_cfun,
        )
        .await?;
    match level {
        Some(0 | 4) => {
            tracing::info!(level, "modem found with its radio off: AT+CFUN=1");
            let switched = steps
                .ask(Step::Functionality, Command::plain("AT+CFUN=1"))
                .await?
                .is_some();
            Ok((level, switched))
        }
        _ => Ok((level, false)),
    }
}
