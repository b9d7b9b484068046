//! The JSON shape `simmask pdu decode` prints.

use serde_json::{Value, json};

use super::{Decoded, EncodedPdu, Encoding, Timestamp, Tpdu, UserData, ValidityPeriod};

fn timestamp(t: &Timestamp) -> Value {
    if t.to_datetime().is_some() {
        Value::String(t.to_rfc3339())
    } else {
        Value::Null
    }
}

fn user_data_fields(object: &mut serde_json::Map<String, Value>, user_data: Option<&UserData>) {
    let Some(user_data) = user_data else {
        object.insert("encoding".into(), Value::Null);
        object.insert("text".into(), Value::Null);
        object.insert("concat".into(), Value::Null);
        return;
    };
    object.insert("encoding".into(), json!(user_data.encoding.as_str()));
    if user_data.encoding == Encoding::EightBit {
        let hex: String = user_data.data.iter().map(|b| format!("{b:02X}")).collect();
        object.insert("data_hex".into(), json!(hex));
    }
    object.insert("text".into(), json!(user_data.text));
    object.insert(
        "concat".into(),
        match user_data.concat {
            Some(c) => json!({"reference": c.reference, "total": c.total, "sequence": c.sequence}),
            None => Value::Null,
        },
    );
    if let Some((destination, originator)) = user_data.ports {
        object.insert(
            "ports".into(),
            json!({"destination": destination, "originator": originator}),
        );
    }
}

fn validity(v: &ValidityPeriod) -> Value {
    match v {
        ValidityPeriod::Relative(octet) => json!({"relative": octet, "seconds": v.seconds()}),
        ValidityPeriod::Absolute(t) => json!({"absolute": timestamp(t)}),
        ValidityPeriod::Enhanced(octets) => json!({
            "enhanced": octets.iter().map(|b| format!("{b:02X}")).collect::<String>(),
            "seconds": v.seconds(),
        }),
    }
}

/// One JSON object describing the parts of an encoded SMS-SUBMIT, as
/// `AT+CMGS` takes them in PDU mode: `{encoding, parts: [{pdu, tpdu_length}]}`.
pub fn submit_json(encoding: Encoding, parts: &[EncodedPdu]) -> Value {
    json!({
        "encoding": encoding.as_str(),
        "parts": parts
            .iter()
            .map(|p| json!({"pdu": p.hex, "tpdu_length": p.tpdu_length}))
            .collect::<Vec<_>>(),
    })
}

/// One JSON object describing a decoded PDU.
pub fn decoded_json(decoded: &Decoded) -> Value {
    let mut object = serde_json::Map::new();
    let pdu = &decoded.pdu;
    object.insert(
        "smsc".into(),
        pdu.smsc
            .as_ref()
            .map_or(Value::Null, |a| json!(a.to_string())),
    );
    match &pdu.tpdu {
        Tpdu::Deliver(d) => {
            object.insert("type".into(), json!("deliver"));
            object.insert("originator".into(), json!(d.originator.to_string()));
            object.insert("timestamp".into(), timestamp(&d.timestamp));
            object.insert("message_reference".into(), Value::Null);
            object.insert("pid".into(), json!(d.pid));
            object.insert("dcs".into(), json!(d.dcs));
            object.insert("class".into(), json!(d.class));
            user_data_fields(&mut object, Some(&d.user_data));
        }
        Tpdu::Submit(s) => {
            object.insert("type".into(), json!("submit"));
            object.insert("destination".into(), json!(s.destination.to_string()));
            object.insert("message_reference".into(), json!(s.message_reference));
            object.insert(
                "status_report_request".into(),
                json!(s.status_report_request),
            );
            object.insert(
                "validity".into(),
                s.validity.as_ref().map_or(Value::Null, validity),
            );
            object.insert("pid".into(), json!(s.pid));
            object.insert("dcs".into(), json!(s.dcs));
            object.insert("class".into(), json!(s.class));
            user_data_fields(&mut object, Some(&s.user_data));
        }
        Tpdu::StatusReport(r) => {
            object.insert("type".into(), json!("status-report"));
            object.insert("recipient".into(), json!(r.recipient.to_string()));
            object.insert("message_reference".into(), json!(r.message_reference));
            object.insert("timestamp".into(), timestamp(&r.service_centre_timestamp));
            object.insert("discharge_time".into(), timestamp(&r.discharge_time));
            object.insert("status".into(), json!(r.status));
            object.insert("delivered".into(), json!(r.delivered()));
            object.insert("class".into(), Value::Null);
            user_data_fields(&mut object, r.user_data.as_ref());
        }
    }
    object.insert("warnings".into(), json!(decoded.warnings));
    Value::Object(object)
}
