//! Deterministic SIM and handset identities derived from a seed, so that a
//! bank started twice with the same `--seed` looks the same to its clients.

/// The identities of one virtual modem and its SIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// 15 digits, the last a Luhn check digit (3GPP TS 23.003 §6.2.1).
    pub imei: String,
    /// 15 digits: MCC 001, MNC 01 (the test network), then the MSIN.
    pub imsi: String,
    /// 19 digits starting `89` (ITU-T E.118), the last a Luhn check digit.
    pub iccid: String,
    /// E.164 with a leading `+`.
    pub msisdn: String,
}

/// The Luhn check digit (ISO/IEC 7812-1 Annex B) for `digits`.
/// Non-digit characters are ignored.
pub fn luhn_check_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .chars()
        .filter_map(|c| c.to_digit(10))
        .rev()
        .enumerate()
        .map(|(i, d)| {
            // The rightmost payload digit is doubled, since the check digit
            // will be appended after it.
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Whether `digits` (check digit last) passes the Luhn test.
pub fn luhn_valid(digits: &str) -> bool {
    let Some((payload, check)) = digits.split_at_checked(digits.len().saturating_sub(1)) else {
        return false;
    };
    !payload.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && check.chars().next().and_then(|c| c.to_digit(10)) == Some(luhn_check_digit(payload))
}

/// SplitMix64: a tiny, well-mixed generator; enough for reproducible fake
/// identities without pulling a RNG into the pure layer.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn digits(state: &mut u64, count: usize) -> String {
    (0..count)
        .map(|_| char::from(b'0' + (splitmix64(state) % 10) as u8))
        .collect()
}

impl Identity {
    /// The identity of modem `index` in a bank started with `seed`.
    pub fn generate(seed: u64, index: usize) -> Self {
        let mut state = seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        // TAC 35 xxxxxx: a plausible GSMA type allocation code range.
        let imei_payload = format!("35{}", digits(&mut state, 12));
        let imei = format!("{imei_payload}{}", luhn_check_digit(&imei_payload));
        let imsi = format!("00101{}", digits(&mut state, 10));
        // 89 (telecom) 44 (country) 1 (issuer) then the account number.
        let iccid_payload = format!("89441{}", digits(&mut state, 13));
        let iccid = format!("{iccid_payload}{}", luhn_check_digit(&iccid_payload));
        // +44 7700 900xxx is Ofcom's drama range: never a real subscriber.
        let msisdn = format!("+447700900{:03}", index % 1000);
        Identity {
            imei,
            imsi,
            iccid,
            msisdn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_matches_published_example() {
        // ISO/IEC 7812-1 worked example, also Wikipedia "Luhn algorithm".
        assert_eq!(luhn_check_digit("7992739871"), 3);
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        // 3GPP TS 23.003 Annex B example IMEI 35 209900 176148 check digit 1.
        assert_eq!(luhn_check_digit("35209900176148"), 1);
    }

    #[test]
    fn identities_are_deterministic_and_valid() {
        let a = Identity::generate(7, 0);
        assert_eq!(a, Identity::generate(7, 0));
        assert_ne!(a, Identity::generate(7, 1));
        assert_ne!(a.imei, Identity::generate(8, 0).imei);
        for index in 0..20 {
            let id = Identity::generate(42, index);
            assert_eq!(id.imei.len(), 15);
            assert!(luhn_valid(&id.imei), "{}", id.imei);
            assert_eq!(id.imsi.len(), 15);
            assert_eq!(id.iccid.len(), 19);
            assert!(luhn_valid(&id.iccid), "{}", id.iccid);
            assert!(id.msisdn.starts_with("+44"));
        }
    }

    #[test]
    fn luhn_rejects_non_digits_and_empty() {
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("5"));
        assert!(!luhn_valid("7992739871x"));
    }
}
