//! `simmask pdu decode|encode`: the codec from the shell, JSON out. Invalid
//! input exits with status 2 and one line naming the problem.

use std::process::ExitCode;

use clap::Subcommand;

use crate::pdu::{self, Address, SubmitOptions};

#[derive(Debug, Subcommand)]
pub enum PduCommand {
    /// Decode a PDU as AT+CMGR/AT+CMGL print it (with the SMSC field).
    Decode {
        /// The PDU has no leading SMSC field (a bare TPDU).
        #[arg(long)]
        no_smsc: bool,
        /// The PDU in hexadecimal.
        hex: String,
    },
    /// Encode a text as the SMS-SUBMIT PDUs AT+CMGS takes in PDU mode.
    Encode {
        /// The destination: `+` and digits for international, else as given.
        #[arg(long)]
        to: String,
        /// The message text (split into parts when long).
        #[arg(long)]
        text: String,
        /// The service centre; without it the SIM's own is used (`00`).
        #[arg(long)]
        smsc: Option<String>,
        /// Ask the network for a delivery report.
        #[arg(long)]
        status_report: bool,
    },
}

pub fn run(command: PduCommand, out: super::Output) -> ExitCode {
    let result = match command {
        PduCommand::Decode { no_smsc, hex } => pdu::decode_hex(&hex, !no_smsc)
            .map(|decoded| pdu::decoded_json(&decoded))
            .map_err(|e| format!("pdu decode: {e}")),
        PduCommand::Encode {
            to,
            text,
            smsc,
            status_report,
        } => encode(&to, &text, smsc.as_deref(), status_report)
            .map_err(|e| format!("pdu encode: {e}")),
    };
    match result {
        Ok(value) if out.json => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Ok(value) => {
            println!("{}", super::output::generic(&value));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("simmask: {message}");
            ExitCode::from(2)
        }
    }
}

fn encode(
    to: &str,
    text: &str,
    smsc: Option<&str>,
    status_report: bool,
) -> Result<serde_json::Value, String> {
    let destination = Address::from_number(to).map_err(|e| format!("--to: {e}"))?;
    let smsc = smsc
        .map(Address::from_number)
        .transpose()
        .map_err(|e| format!("--smsc: {e}"))?;
    let options = SubmitOptions {
        smsc,
        status_report,
        ..SubmitOptions::default()
    };
    let encoding = pdu::segment(text).encoding;
    let parts = pdu::encode_submit(&destination, text, 1, &options).map_err(|e| e.to_string())?;
    Ok(pdu::submit_json(encoding, &parts))
}
