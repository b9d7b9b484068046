//! Hubs: one participant (an aid worker, a dispatcher) in many open
//! sessions on one proxy, each session told apart by a short code.
//!
//! The masking rule bends for the hub alone: its counterparts keep it (on
//! a proxy, each of them is in at most one open session), so traffic from
//! a counterpart still has one destination, the hub. Traffic from the hub
//! names its destination with the session's code (`K7 see you at 5`); a
//! reply without one goes to the counterpart the hub last heard from.
//!
//! # Codes
//! A code is a letter and one digit (`K7`), or a letter and two digits
//! (`K72`) once a hub has more than 64 sessions on one proxy:
//! - it mixes letters and digits, so no ordinary word at the start of a
//!   reply ("ok", "yes", "Thanks") is ever taken for one, and a few SMS
//!   spellings that do mix them (`W8`, `M8`, `B4`, `U2`…) are never codes
//!   ([`TEXTESE`]);
//! - its letters leave out B I L O Q S Z and its digits 0 and 1, which
//!   read as one another on a small screen and in handwriting;
//! - it is unique among the hub's open sessions on that proxy, and so are
//!   its keys on a phone keypad (E.161: 2 ABC, 3 DEF, 4 GHI, 5 JKL, 6 MNO,
//!   7 PQRS, 8 TUV, 9 WXYZ): `K7` is keyed `5 7`, and no other open
//!   session of the hub on that proxy is keyed `5 7`, so a hub calling its
//!   proxy can name a conversation with its keypad;
//! - it is drawn at random among the free ones, never derived from the
//!   counterpart's number, and it never changes while the session is open.

use time::OffsetDateTime;

use super::Traffic;
use super::lifecycle::{CloseReason, Session};
use crate::number::PhoneNumber;

/// The letters codes use: A to Z without B I L O Q S Z (read as 8 1 1 0 0
/// 5 2).
pub const LETTERS: &str = "ACDEFGHJKMNPRTUVWXY";
/// The digits codes use: 2 to 9 (0 and 1 read as O and I, and their keys
/// carry no letters).
pub const DIGITS: &str = "23456789";
/// Letter-and-digit spellings people start texts with: never codes, and
/// never read as one in a hub's reply.
pub const TEXTESE: &[&str] = &[
    "A1", "A4", "B4", "C4", "D8", "F1", "G8", "H8", "K9", "L8", "M8", "N8", "R8", "U2", "U4", "W8",
];

/// The key of a letter or digit on a phone keypad (ITU-T E.161).
pub fn key_of(c: char) -> Option<char> {
    let key = match c.to_ascii_uppercase() {
        d @ '0'..='9' => d,
        'A'..='C' => '2',
        'D'..='F' => '3',
        'G'..='I' => '4',
        'J'..='L' => '5',
        'M'..='O' => '6',
        'P'..='S' => '7',
        'T'..='V' => '8',
        'W'..='Z' => '9',
        _ => return None,
    };
    Some(key)
}

/// The keys that type `code` on a phone keypad: `K7` → `57`.
pub fn keys(code: &str) -> String {
    code.chars().filter_map(key_of).collect()
}

/// Whether `token` has the shape of a code: a letter then one or two
/// digits, and not a common SMS spelling. Any case.
pub fn looks_like_code(token: &str) -> bool {
    let bytes = token.as_bytes();
    (2..=3).contains(&bytes.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes[1..].iter().all(u8::is_ascii_digit)
        && !TEXTESE.iter().any(|t| t.eq_ignore_ascii_case(token))
}

/// Every code of `digits` digits (1 or 2), in a fixed order.
fn codes_of_length(digits: usize) -> impl Iterator<Item = String> {
    LETTERS.chars().flat_map(move |letter| {
        let tails: Vec<String> = if digits == 1 {
            DIGITS.chars().map(String::from).collect()
        } else {
            DIGITS
                .chars()
                .flat_map(|a| DIGITS.chars().map(move |b| format!("{a}{b}")))
                .collect()
        };
        tails.into_iter().map(move |tail| format!("{letter}{tail}"))
    })
}

/// How many codes of `digits` digits (1 or 2) can be told apart by their
/// keys: how many sessions a hub can have on one proxy with codes that
/// short (61 with one digit: `A4`, `C4`, `G8`, `H8`, `M8`, `N8` are spellings
/// people write, so keys 24, 48 and 68 have no code; 512 more with two).
pub fn capacity(digits: usize) -> usize {
    codes_of_length(digits)
        .filter(|code| looks_like_code(code))
        .map(|code| keys(&code))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// A new code for one more session of a hub on a proxy, given the codes
/// of its other open sessions there (`taken`): one whose spelling and keys
/// no taken code has. Short codes first; among the free ones, `pick`
/// chooses (callers pass a random number: codes say nothing of anyone).
/// `None` once the hub has [`capacity`] sessions on the proxy.
pub fn new_code(taken: &[&str], pick: u64) -> Option<String> {
    let taken_keys: Vec<String> = taken.iter().map(|c| keys(c)).collect();
    for digits in [1, 2] {
        let free: Vec<String> = codes_of_length(digits)
            .filter(|code| looks_like_code(code))
            .filter(|code| !taken.iter().any(|t| t.eq_ignore_ascii_case(code)))
            .filter(|code| !taken_keys.contains(&keys(code)))
            .collect();
        if !free.is_empty() {
            let index = usize::try_from(pick % free.len() as u64).unwrap_or(0);
            return free.into_iter().nth(index);
        }
    }
    None
}

/// What a hub's message says about where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// It starts with a code (`K7 text`, `[K7] text`, `k7: text`): the
    /// code upper-cased, and the text after it.
    Coded { code: String, text: &'a str },
    /// No code: all of it is the text.
    Uncoded { text: &'a str },
}

/// Reads the code at the start of a hub's message, if there is one: the
/// first word when it [looks like a code](looks_like_code) and is followed
/// by a space, `:`, `,` or nothing, or a code in square brackets.
pub fn parse_reply(body: &str) -> Reply<'_> {
    let start = body.trim_start();
    let separator = |c: char| c.is_whitespace() || c == ':' || c == ',';
    if let Some(rest) = start.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let inner = rest[..end].trim();
            if looks_like_code(inner) {
                return Reply::Coded {
                    code: inner.to_ascii_uppercase(),
                    text: rest[end + 1..].trim_start_matches(separator).trim_end(),
                };
            }
        }
        return Reply::Uncoded { text: body };
    }
    let end = start
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(start.len());
    let (token, after) = start.split_at(end);
    if looks_like_code(token) && (after.is_empty() || after.starts_with(separator)) {
        return Reply::Coded {
            code: token.to_ascii_uppercase(),
            text: after.trim_start_matches(separator).trim_end(),
        };
    }
    Reply::Uncoded { text: body }
}

/// How a counterpart's message reaches the hub: `format` with `{code}` and
/// `{text}` filled in (`[{code}] {text}` by default).
pub fn to_hub(format: &str, code: &str, text: &str) -> String {
    // The code first: a text holding "{code}" stays as it was written.
    format.replace("{code}", code).replacen("{text}", text, 1)
}

/// One open session of a hub on a proxy, with its code.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation<'a> {
    pub session: &'a Session,
    pub code: &'a str,
}

/// Where a hub's message on a proxy goes.
#[derive(Debug, Clone, PartialEq)]
pub enum HubRoute<'a> {
    /// Relay `text` to `to`, the counterpart of `session`; `named` is false
    /// when the message had no code and went to the last counterpart (the
    /// hub is told which).
    Relay {
        session: &'a Session,
        code: &'a str,
        to: &'a PhoneNumber,
        text: String,
        named: bool,
    },
    /// A code with no text after it: nothing to send.
    Empty { code: &'a str },
    /// The conversation named does not carry this traffic (a voice-only
    /// session and an SMS).
    WrongMode { code: &'a str },
    /// No open conversation has this code.
    UnknownCode { code: String },
    /// No code, and no conversation to fall back on: the hub heard from
    /// nobody yet and has more than one.
    NoCode,
}

/// The decision for one message from a hub.
#[derive(Debug, Clone, PartialEq)]
pub struct HubDecision<'a> {
    /// Sessions past their deadline, to mark ended (they route nothing).
    pub expired: Vec<(&'a Session, CloseReason)>,
    pub route: HubRoute<'a>,
}

/// Routes a message from `hub` on a proxy among its open `conversations`
/// there. `last_heard` is the session whose counterpart the hub last heard
/// from on this proxy.
pub fn route_reply<'a>(
    conversations: &'a [Conversation<'a>],
    hub: &PhoneNumber,
    body: &str,
    last_heard: Option<&str>,
    now: OffsetDateTime,
) -> HubDecision<'a> {
    let (live, expired): (Vec<&Conversation<'a>>, Vec<&Conversation<'a>>) = conversations
        .iter()
        .partition(|c| !c.session.is_expired_at(now));
    let expired = expired
        .into_iter()
        .map(|c| (c.session, c.session.expiry_reason(now)))
        .collect();
    let relay = |c: &Conversation<'a>, text: &str, named: bool| -> HubRoute<'a> {
        if !Traffic::Sms.carried_by(c.session.mode) {
            return HubRoute::WrongMode { code: c.code };
        }
        match c.session.other_participant(hub) {
            Some(to) => HubRoute::Relay {
                session: c.session,
                code: c.code,
                to,
                text: text.to_string(),
                named,
            },
            None => HubRoute::UnknownCode {
                code: c.code.to_string(),
            },
        }
    };
    let route = match parse_reply(body) {
        Reply::Coded { code, text } => match live.iter().find(|c| c.code == code) {
            Some(c) if text.is_empty() => HubRoute::Empty { code: c.code },
            Some(c) => relay(c, text, true),
            None => HubRoute::UnknownCode { code },
        },
        Reply::Uncoded { text } => {
            let carrying: Vec<&&Conversation<'a>> = live
                .iter()
                .filter(|c| Traffic::Sms.carried_by(c.session.mode))
                .collect();
            let last = last_heard
                .and_then(|id| carrying.iter().find(|c| c.session.id == id))
                .or_else(|| (carrying.len() == 1).then(|| &carrying[0]));
            match last {
                Some(c) => relay(c, text, false),
                None => HubRoute::NoCode,
            }
        }
    };
    HubDecision { expired, route }
}

/// What the keys a hub pressed so far name, among `codes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// Exactly this code, and no longer one starts with these keys.
    Complete(usize),
    /// More keys (or `#`) are needed: a code starts with these keys.
    Waiting,
    /// No code starts with these keys.
    NoMatch,
}

/// Matches the digits pressed so far (`#` and `*` left out) against the
/// codes' keys.
pub fn match_keys(pressed: &str, codes: &[&str]) -> KeyMatch {
    let all: Vec<String> = codes.iter().map(|c| keys(c)).collect();
    let exact = all.iter().position(|k| k == pressed);
    let longer = all
        .iter()
        .any(|k| k.len() > pressed.len() && k.starts_with(pressed));
    match (exact, longer) {
        (Some(i), false) => KeyMatch::Complete(i),
        (_, true) => KeyMatch::Waiting,
        (None, false) => KeyMatch::NoMatch,
    }
}

/// The code keyed exactly by `pressed`, when the hub ended with `#` or
/// stopped keying.
pub fn exact_keys(pressed: &str, codes: &[&str]) -> Option<usize> {
    codes.iter().position(|c| keys(c) == pressed)
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;
    use crate::masking::Mode;
    use crate::masking::lifecycle::SessionStatus;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);
    const HUB: &str = "+447911000100";

    fn number(s: &str) -> PhoneNumber {
        PhoneNumber::from_e164(s).unwrap()
    }

    fn session(id: &str, other: &str) -> Session {
        Session {
            id: id.into(),
            proxy_iccid: "1".into(),
            participants: [number(other), number(HUB)],
            mode: Mode::Both,
            status: SessionStatus::Open,
            opened_at: NOW - Duration::hours(1),
            expires_at: None,
            idle_ttl: None,
            last_activity_at: NOW - Duration::minutes(1),
        }
    }

    #[test]
    fn a_code_is_keyed_as_on_a_phone() {
        assert_eq!(keys("K7"), "57");
        assert_eq!(keys("w72"), "972");
        assert_eq!(keys("ACDEFGHJKMNPRTUVWXY"), "2233344556677888999");
        assert_eq!(key_of('#'), None);
    }

    #[test]
    fn replies_name_their_code_in_any_of_the_documented_forms() {
        let coded = |code: &str, text: &'static str| Reply::Coded {
            code: code.into(),
            text,
        };
        assert_eq!(parse_reply("K7 see you at 5"), coded("K7", "see you at 5"));
        assert_eq!(parse_reply("[k7] see you"), coded("K7", "see you"));
        assert_eq!(parse_reply("  k72: ok "), coded("K72", "ok"));
        assert_eq!(parse_reply("K7,ok"), coded("K7", "ok"));
        assert_eq!(parse_reply("[ K7 ]ok"), coded("K7", "ok"));
        assert_eq!(parse_reply("K7"), coded("K7", ""));
        // An unknown code is still a code: the hub meant someone.
        assert_eq!(parse_reply("E5 hi"), coded("E5", "hi"));
        for text in [
            "ok see you",
            "Yes",
            "K7hello",
            "K777 apples",
            "7K hello",
            "W8 for me",
            "b4 you go",
            "[note] hi",
            "[K7 hi",
            "",
            "M8!",
        ] {
            assert_eq!(parse_reply(text), Reply::Uncoded { text }, "{text:?}");
        }
    }

    #[test]
    fn the_prefix_format_fills_code_and_text() {
        assert_eq!(to_hub("[{code}] {text}", "K7", "hi"), "[K7] hi");
        assert_eq!(to_hub("{code}: {text}", "K7", "a {code}"), "K7: a {code}");
    }

    #[test]
    fn new_codes_avoid_taken_spellings_and_keys() {
        // J7 and K7 are both keyed 5 7.
        for pick in 0..200 {
            let code = new_code(&["K7"], pick).unwrap();
            assert_ne!(keys(&code), "57", "{code}");
            assert_eq!(code.len(), 2);
        }
        assert_eq!((capacity(1), capacity(2)), (61, 512));
        let mut taken: Vec<String> = Vec::new();
        for i in 0..capacity(1) as u64 {
            let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
            taken.push(new_code(&refs, i * 7919).unwrap());
        }
        assert!(taken.iter().all(|c| c.len() == 2));
        let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
        assert_eq!(
            new_code(&refs, 3).unwrap().len(),
            3,
            "then three characters"
        );
        let mut all = taken.clone();
        for i in 0..capacity(2) as u64 {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            all.push(new_code(&refs, i).unwrap());
        }
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_eq!(new_code(&refs, 0), None, "full");
    }

    #[test]
    fn the_hub_names_the_session_or_gets_the_last_one() {
        let sessions = [
            session("s1", "+447911000001"),
            session("s2", "+447911000002"),
        ];
        let conversations = [
            Conversation {
                session: &sessions[0],
                code: "K7",
            },
            Conversation {
                session: &sessions[1],
                code: "W3",
            },
        ];
        let hub = number(HUB);
        let route = |body: &str, last: Option<&str>| {
            route_reply(&conversations, &hub, body, last, NOW).route
        };
        match route("w3 on my way", None) {
            HubRoute::Relay {
                session,
                to,
                text,
                named: true,
                ..
            } => {
                assert_eq!(session.id, "s2");
                assert_eq!(to, &number("+447911000002"));
                assert_eq!(text, "on my way");
            }
            other => panic!("{other:?}"),
        }
        match route("on my way", Some("s1")) {
            HubRoute::Relay {
                code: "K7",
                named: false,
                text,
                ..
            } => assert_eq!(text, "on my way"),
            other => panic!("{other:?}"),
        }
        assert_eq!(route("on my way", None), HubRoute::NoCode);
        assert_eq!(route("on my way", Some("gone")), HubRoute::NoCode);
        assert_eq!(
            route("E5 hi", Some("s1")),
            HubRoute::UnknownCode { code: "E5".into() }
        );
        assert_eq!(route("[K7]", None), HubRoute::Empty { code: "K7" });
        // One conversation: it is the last one, whoever spoke.
        let one = &conversations[..1];
        assert!(matches!(
            route_reply(one, &hub, "hello", None, NOW).route,
            HubRoute::Relay { named: false, .. }
        ));
    }

    #[test]
    fn expired_and_voice_only_conversations_do_not_take_messages() {
        let mut expired = session("s1", "+447911000001");
        expired.expires_at = Some(NOW - Duration::SECOND);
        let mut voice = session("s2", "+447911000002");
        voice.mode = Mode::Voice;
        let conversations = [
            Conversation {
                session: &expired,
                code: "K7",
            },
            Conversation {
                session: &voice,
                code: "W3",
            },
        ];
        let hub = number(HUB);
        let decision = route_reply(&conversations, &hub, "K7 hi", Some("s1"), NOW);
        assert_eq!(decision.expired, [(&expired, CloseReason::Ttl)]);
        assert_eq!(decision.route, HubRoute::UnknownCode { code: "K7".into() });
        let decision = route_reply(&conversations, &hub, "W3 hi", None, NOW);
        assert_eq!(decision.route, HubRoute::WrongMode { code: "W3" });
        let decision = route_reply(&conversations, &hub, "hi", Some("s2"), NOW);
        assert_eq!(decision.route, HubRoute::NoCode);
    }

    #[test]
    fn keys_complete_a_code_as_soon_as_no_longer_one_could_follow() {
        let codes = ["K7", "W3", "K72"];
        assert_eq!(match_keys("9", &codes), KeyMatch::Waiting);
        assert_eq!(match_keys("93", &codes), KeyMatch::Complete(1));
        assert_eq!(match_keys("57", &codes), KeyMatch::Waiting);
        assert_eq!(match_keys("572", &codes), KeyMatch::Complete(2));
        assert_eq!(match_keys("2", &codes), KeyMatch::NoMatch);
        assert_eq!(exact_keys("57", &codes), Some(0));
        assert_eq!(exact_keys("5", &codes), None);
    }

    mod property {
        use proptest::prelude::*;

        use super::*;

        /// Words and SMS spellings a reply may start with.
        const COMMON: &[&str] = &[
            "ok", "OK", "yes", "no", "hi", "hello", "thanks", "thx", "ty", "np", "lol", "omg",
            "brb", "asap", "b4", "w8", "gr8", "l8r", "2day", "2moro", "4u", "u2", "m8", "k", "kk",
            "y", "n", "a1", "k9", "h8", "d8", "g8", "n8", "r8", "c4", "u4", "f1", "1st", "2nd",
            "3rd", "4th", "5pm", "10am", "a4", "mp3",
        ];

        fn taken_codes() -> impl Strategy<Value = Vec<String>> {
            (0usize..80, any::<u64>()).prop_map(|(n, seed)| {
                let mut taken: Vec<String> = Vec::new();
                for i in 0..n {
                    let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
                    let pick = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(i as u64);
                    taken.push(new_code(&refs, pick).expect("capacity"));
                }
                taken
            })
        }

        proptest! {
            // Each case builds up to 80 codes: fewer cases keep it quick.
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn codes_are_unique_by_spelling_and_by_keys(taken in taken_codes()) {
                let mut spellings = std::collections::HashSet::new();
                let mut keyed = std::collections::HashSet::new();
                for code in &taken {
                    prop_assert!(spellings.insert(code.clone()), "{code} twice");
                    prop_assert!(keyed.insert(keys(code)), "{code}: keys taken");
                    prop_assert!(looks_like_code(code));
                    prop_assert!(code.chars().any(|c| c.is_ascii_alphabetic()));
                    prop_assert!(code.chars().any(|c| c.is_ascii_digit()));
                    prop_assert!(code.chars().all(|c| LETTERS.contains(c) || DIGITS.contains(c)));
                }
            }

            #[test]
            fn a_new_code_is_free_and_leaves_the_others_as_they_are(
                taken in taken_codes(),
                pick in any::<u64>(),
            ) {
                let before = taken.clone();
                let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
                let code = new_code(&refs, pick).expect("capacity");
                prop_assert!(!taken.contains(&code));
                prop_assert_eq!(&before, &taken);
                // Deterministic in what it is given: stable across calls.
                prop_assert_eq!(new_code(&refs, pick), Some(code.clone()));
                // Read back from a reply, in any case and form.
                let lower = format!("{} thanks", code.to_lowercase());
                let bracketed = format!("[{code}] thanks");
                for reply in [lower, bracketed] {
                    let parsed = parse_reply(&reply);
                    prop_assert_eq!(parsed, Reply::Coded { code: code.clone(), text: "thanks" });
                }
                // Keyed on a keypad, it names itself among the others.
                let mut all = refs.clone();
                all.push(&code);
                prop_assert_eq!(exact_keys(&keys(&code), &all), Some(all.len() - 1));
            }

            #[test]
            fn no_word_or_common_spelling_is_taken_for_a_code(
                word in "[A-Za-z]{1,12}",
                common in proptest::sample::select(COMMON),
                rest in "[ a-z0-9,.!?]{0,30}",
            ) {
                for body in [format!("{word} {rest}"), word.to_string(), format!("{common} {rest}")] {
                    prop_assert_eq!(parse_reply(&body), Reply::Uncoded { text: &body });
                }
            }

            #[test]
            fn no_generated_code_is_a_common_spelling(taken in taken_codes()) {
                for code in &taken {
                    prop_assert!(!COMMON.iter().any(|c| c.eq_ignore_ascii_case(code)), "{code}");
                }
            }

            #[test]
            fn parsing_never_panics(body in "\\PC{0,40}") {
                let _ = parse_reply(&body);
            }
        }
    }
}
