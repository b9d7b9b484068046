//! The safety rails on every message, as pure decisions: opt-out keywords
//! (STOP / START), the intercept rules evaluated before every relay, and
//! loop protection. [`super::accept`] gathers the facts from the store
//! inside the inbound transaction and carries out the verdict.
//!
//! # When a rule cannot be evaluated: closed
//! The facts are read in the same transaction that stores the message. If
//! reading them fails (the database is unreadable, a row is corrupt), the
//! transaction fails as a whole: nothing is relayed, nothing is recorded,
//! and the message stays on the SIM, to be read again (at the next start or
//! re-plug of the modem, `AT+CMGL=4`). A rule that cannot be checked never
//! lets a message through, and never loses it either.

use time::Duration;

use crate::config::{Config, Hubs, Intercept, LoopProtection, OptOut};
use crate::masking::allocation::PoolLimits;
use crate::masking::policy::OutOfSessionPolicy;
use crate::store::RecentMessage;

/// Everything the relay decides by, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub out_of_session: OutOfSessionPolicy,
    pub opt_out: OptOut,
    pub intercept: Intercept,
    pub loop_protection: LoopProtection,
    pub limits: PoolLimits,
    /// The lifetime of a session a front desk opens (`[sessions]
    /// default_ttl_seconds`).
    pub front_desk_ttl: Option<Duration>,
    /// How hubs' messages look (`[hubs]`).
    pub hubs: Hubs,
    /// The Twilio facade is on (`[twilio] account_sid`): a relay on a
    /// number of a service with an intercept callback is held for it.
    pub twilio_intercept: bool,
    /// The same for a stranger's message and the out-of-session callback
    /// (off when the callback has been asked and the policy decides).
    pub twilio_out_of_session: bool,
}

impl Rules {
    pub fn from_config(config: &Config) -> Self {
        Self {
            out_of_session: config.out_of_session.clone(),
            opt_out: config.opt_out.clone(),
            intercept: config.intercept.clone(),
            loop_protection: config.loop_protection.clone(),
            hubs: config.hubs.clone(),
            limits: config.pool_limits(),
            twilio_intercept: config.twilio.account_sid.is_some(),
            twilio_out_of_session: config.twilio.account_sid.is_some(),
            front_desk_ttl: (config.sessions.default_ttl_seconds > 0).then(|| {
                Duration::seconds(
                    i64::try_from(config.sessions.default_ttl_seconds).unwrap_or(i64::MAX),
                )
            }),
        }
    }

    /// The defaults with `policy` for strangers.
    pub fn with_policy(policy: OutOfSessionPolicy) -> Self {
        Self {
            out_of_session: policy,
            ..Self::default()
        }
    }
}

/// An opt-out keyword, with the configured spelling that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyword {
    Stop(String),
    Start(String),
}

/// Whether `body` is an opt-out or opt-in keyword: the whole message,
/// trimmed, compared without regard to case.
pub fn keyword(body: &str, settings: &OptOut) -> Option<Keyword> {
    let said = body.trim().to_lowercase();
    let matches = |list: &[String]| {
        list.iter()
            .find(|k| k.trim().to_lowercase() == said)
            .cloned()
    };
    matches(&settings.stop_keywords)
        .map(Keyword::Stop)
        .or_else(|| matches(&settings.start_keywords).map(Keyword::Start))
}

/// The rule that stopped a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    BlockList,
    OptOut,
    Keyword,
    SessionLimit,
    ParticipantLimit,
    RecipientBudget,
    Loop,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::BlockList => "block_list",
            Rule::OptOut => "opt_out",
            Rule::Keyword => "keyword",
            Rule::SessionLimit => "session_limit",
            Rule::ParticipantLimit => "participant_limit",
            Rule::RecipientBudget => "recipient_budget",
            Rule::Loop => "loop",
        }
    }
}

/// What the store knows about a message about to be relayed.
#[derive(Debug, Clone, Default)]
pub struct RelayFacts {
    pub sender_blocked: bool,
    pub recipient_blocked: bool,
    pub recipient_opted_out: bool,
    /// Messages the session relayed before this one.
    pub session_messages: u32,
    /// Messages relayed for the sender in the last 24 hours.
    pub sender_messages_today: u32,
    /// The proxy's distinct recipients this month (counted only when a
    /// limit applies and the recipient is new; 0 otherwise), and whether
    /// the recipient is one already.
    pub recipients_this_month: u32,
    pub recipient_known: bool,
    pub recipients_limit: Option<u32>,
    /// The session's messages of the last hour, both directions.
    pub recent: Vec<RecentMessage>,
    /// Which participant sends this one.
    pub from_position: u8,
    /// When the sender's SMSC took this one (TP-SCTS), when known.
    pub sent_ms: Option<i64>,
}

/// The verdict on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Relay,
    Block { rule: Rule, reason: String },
}

/// Evaluates the intercept rules and loop protection, in order, for
/// `body` at `now_ms`; the first rule that objects decides.
pub fn intercept(
    body: &str,
    facts: &RelayFacts,
    rules: &Intercept,
    loops: &LoopProtection,
    now_ms: i64,
) -> Verdict {
    let block = |rule, reason: String| Verdict::Block { rule, reason };
    if facts.sender_blocked || facts.recipient_blocked {
        let who = if facts.sender_blocked {
            "the sender"
        } else {
            "the recipient"
        };
        return block(Rule::BlockList, format!("{who} is on the block list"));
    }
    if facts.recipient_opted_out {
        return block(Rule::OptOut, "the recipient opted out (sent STOP)".into());
    }
    let lower = body.to_lowercase();
    if let Some(word) = rules
        .block_keywords
        .iter()
        .find(|k| lower.contains(&k.trim().to_lowercase()))
    {
        return block(
            Rule::Keyword,
            format!("the message contains the blocked keyword {:?}", word.trim()),
        );
    }
    let limit = rules.max_messages_per_session;
    if limit > 0 && facts.session_messages >= limit {
        return block(
            Rule::SessionLimit,
            format!("the session relayed its limit of {limit} messages"),
        );
    }
    let limit = rules.max_messages_per_participant_per_day;
    if limit > 0 && facts.sender_messages_today >= limit {
        return block(
            Rule::ParticipantLimit,
            format!("the sender reached the limit of {limit} messages per 24 hours"),
        );
    }
    if let Some(limit) = facts.recipients_limit
        && !facts.recipient_known
        && facts.recipients_this_month >= limit
    {
        return block(
            Rule::RecipientBudget,
            format!("the proxy sent to its limit of {limit} distinct numbers this month"),
        );
    }
    if let Some(reason) = loop_reason(
        &facts.recent,
        body,
        facts.from_position,
        facts.sent_ms,
        loops,
        now_ms,
    ) {
        return block(Rule::Loop, reason);
    }
    Verdict::Relay
}

/// Why the session looks like two machines answering each other, if it
/// does. `recent` is the session's messages that arrived in the last hour;
/// `body` comes from the participant at `from_position`, its sender's SMSC
/// took it at `sent_ms` (when known) and it reaches us at `now_ms`.
///
/// A loop takes two: both sides must take part. A one-sided burst (a
/// backlog delivered after downtime, a phone splitting a long text, a
/// person sending several texts in a row) is not a loop; the intercept
/// limits are for that. Two signs count:
/// - more than `max_similar_per_hour` near-identical messages within an
///   hour, from both sides (short texts such as "ok" are not compared:
///   people repeat them, machines write sentences);
/// - more than `max_burst` turns (the sender changes) within
///   `burst_seconds`: answers faster than people read and type.
///
/// # Whose clock
/// Both signs are about when the messages were *written*, not when they
/// reached us: after a modem is replugged or the daemon was down, a
/// conversation that waited on the SIM or in the network for minutes
/// arrives within a second or two, and by arrival it would look like
/// machines answering each other. So each message is placed at the time
/// the sender's SMSC took it (TP-SCTS, TS 23.040 §9.2.3.11, which the
/// SMSC stamps on receipt and which travels in the DELIVER), and at its
/// arrival only when that is not known (rows from before the SMSC time was
/// kept). The windows are anchored on the newest message's time, never on
/// our clock: an SMSC whose clock is minutes or hours off from ours moves
/// all its messages alike, and they are compared with each other.
///
/// The two sides' messages are usually stamped by two SMSCs (each sender's
/// own network). Networks keep their clocks on time, but a few stamp a
/// wrong timezone, which moves one side by hours. A stamp later than the
/// message's arrival (more than [`SMSC_AHEAD_TOLERANCE_MS`]) cannot be
/// right, so such a message is placed at its arrival instead: a genuine
/// loop is prompt, so its arrival is as good as its SMSC time. A clock
/// that runs behind cannot be told from a message that waited; such a side
/// is compared as stamped.
pub fn loop_reason(
    recent: &[RecentMessage],
    body: &str,
    from_position: u8,
    sent_ms: Option<i64>,
    settings: &LoopProtection,
    now_ms: i64,
) -> Option<String> {
    // (time, sender, body), in the order they arrived; this one last.
    let mut timeline: Vec<(i64, u8, Option<&str>)> = recent
        .iter()
        .map(|m| {
            (
                written_at(m.sent_ms, m.created_ms),
                m.from_position,
                m.body.as_deref(),
            )
        })
        .collect();
    timeline.push((written_at(sent_ms, now_ms), from_position, Some(body)));
    // Stable: messages stamped in the same second stay in arrival order.
    timeline.sort_by_key(|(at, _, _)| *at);
    let newest = timeline.last().map_or(now_ms, |(at, _, _)| *at);
    let others = |window_ms: i64| {
        timeline
            .iter()
            .filter(move |(at, _, _)| *at > newest - window_ms)
    };
    let max = settings.max_similar_per_hour;
    let this = fingerprint(body);
    if max > 0 && this.chars().count() >= MIN_COMPARED_LETTERS {
        // This message is in the timeline too: it counts once.
        let similar: Vec<u8> = others(3_600_000)
            .filter(|(_, _, text)| text.map(fingerprint).as_ref() == Some(&this))
            .map(|(_, from, _)| *from)
            .collect();
        let both_sides = similar.iter().any(|from| *from != from_position);
        let within = similar.len();
        if both_sides && within > usize::try_from(max).unwrap_or(usize::MAX) {
            return Some(format!(
                "{within} near-identical messages within an hour, from both sides (at most {max})"
            ));
        }
    }
    let max = settings.max_burst;
    if max > 0 {
        let window_ms = i64::from(settings.burst_seconds) * 1000;
        let positions: Vec<u8> = others(window_ms).map(|(_, from, _)| *from).collect();
        let turns = positions.windows(2).filter(|w| w[0] != w[1]).count();
        if turns > usize::try_from(max).unwrap_or(usize::MAX) {
            return Some(format!(
                "{turns} replies back and forth within {} seconds, faster than people \
                 type (at most {max})",
                settings.burst_seconds
            ));
        }
    }
    None
}

/// How far an SMSC's stamp may be later than the message's arrival here
/// and still be believed (clocks a few minutes apart); later than that,
/// the SMSC's clock or timezone is wrong.
pub const SMSC_AHEAD_TOLERANCE_MS: i64 = 15 * 60_000;

/// Where loop protection places a message: when its sender's SMSC took it,
/// unless unknown or impossibly late; else when it arrived.
fn written_at(sent_ms: Option<i64>, arrived_ms: i64) -> i64 {
    match sent_ms {
        Some(sent) if sent <= arrived_ms.saturating_add(SMSC_AHEAD_TOLERANCE_MS) => sent,
        _ => arrived_ms,
    }
}

/// Texts shorter than this (in letters) are not compared for loops.
const MIN_COMPARED_LETTERS: usize = 10;

/// A message as loop protection compares it: case, spacing, digits and
/// punctuation aside, so that "Auto-reply #41" and "auto reply #42" match.
pub fn fingerprint(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages at (ms, sender position, text).
    fn recent(at: &[(i64, u8, &str)]) -> Vec<RecentMessage> {
        at.iter()
            .map(|(ms, from, body)| RecentMessage {
                created_ms: *ms,
                sent_ms: None,
                from_position: *from,
                body: Some((*body).to_string()),
            })
            .collect()
    }

    /// One message as the store gives it: arrived at `arrived`, stamped
    /// `sent` by its sender's SMSC.
    fn stamped(arrived: i64, sent: i64, from: u8, body: &str) -> RecentMessage {
        RecentMessage {
            created_ms: arrived,
            sent_ms: Some(sent),
            from_position: from,
            body: Some(body.to_string()),
        }
    }

    /// Feeds `messages` to [`loop_reason`] one after another, as the relay
    /// meets them (each judged against the ones before it), and returns
    /// the first reason given, with the message's index.
    fn first_loop(
        messages: &[RecentMessage],
        settings: &LoopProtection,
    ) -> Option<(usize, String)> {
        messages.iter().enumerate().find_map(|(i, m)| {
            let body = m.body.as_deref().unwrap_or_default();
            loop_reason(
                &messages[..i],
                body,
                m.from_position,
                m.sent_ms,
                settings,
                m.created_ms,
            )
            .map(|reason| (i, reason))
        })
    }

    #[test]
    fn a_backlog_read_at_once_is_judged_by_when_it_was_written() {
        let settings = LoopProtection::default();
        // Our clock: a modem replugged at 10:00:00 gives up its backlog,
        // a two-sided conversation written over the 6 minutes before,
        // within one second. The SMSC's clock is 3 minutes behind ours.
        let replug = 1_800_000_000_000;
        let smsc = replug - 180_000;
        let lines = [
            "are you on the train yet",
            "just got on, it's packed",
            "which carriage are you in",
            "the fourth one, near the doors",
            "ok I'm coming through",
            "wait, the doors are closing",
            "made it, see you in a minute",
            "found a seat by the window",
            "I can see you now",
            "waving at you",
            "haha hi",
            "what a morning",
            "coffee later?",
            "definitely, my treat",
        ];
        let backlog: Vec<RecentMessage> = lines
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let i = i64::try_from(i).unwrap();
                let written = smsc - 360_000 + i * 25_000;
                let from = u8::try_from(i % 2).unwrap();
                stamped(replug + i * 60, written, from, text)
            })
            .collect();
        // By arrival, 13 turns within a second: stopped as a loop.
        let by_arrival: Vec<RecentMessage> = backlog
            .iter()
            .map(|m| RecentMessage {
                sent_ms: None,
                ..m.clone()
            })
            .collect();
        let (at, reason) = first_loop(&by_arrival, &settings).expect("a loop by arrival");
        assert!(reason.contains("replies back and forth"), "{at}: {reason}");
        // By the SMSC's stamps, a conversation at people's pace.
        assert_eq!(first_loop(&backlog, &settings), None);
        // Read in another order (two storage areas, a resend): the same.
        let mut shuffled = backlog.clone();
        shuffled.reverse();
        shuffled.rotate_left(5);
        assert_eq!(first_loop(&shuffled, &settings), None);

        // The same shape, written seconds apart, is two machines: still a
        // loop, with the SMSC's clock hours off from ours and whether it
        // arrives at once or as it is written.
        let smsc = replug - 3 * 3_600_000;
        let machines: Vec<RecentMessage> = lines
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let i = i64::try_from(i).unwrap();
                let from = u8::try_from(i % 2).unwrap();
                stamped(replug + i * 1_000, smsc + i * 1_000, from, text)
            })
            .collect();
        let (at, reason) = first_loop(&machines, &settings).expect("a loop");
        assert!(
            reason.contains("9 replies back and forth within 10 seconds"),
            "{reason}"
        );
        assert_eq!(at, 9);
        let bunched: Vec<RecentMessage> = machines
            .iter()
            .enumerate()
            .map(|(i, m)| RecentMessage {
                created_ms: replug + i64::try_from(i).unwrap() * 50,
                ..m.clone()
            })
            .collect();
        assert_eq!(first_loop(&bunched, &settings).map(|(at, _)| at), Some(9));
    }

    #[test]
    fn near_identical_messages_are_counted_within_an_hour_of_smsc_time() {
        let settings = LoopProtection {
            max_burst: 0,
            ..LoopProtection::default()
        };
        let arrived = 1_800_000_000_000;
        let written = |spacing: i64| -> Vec<RecentMessage> {
            (0..8)
                .map(|i: i64| {
                    let from = u8::try_from(i % 2).unwrap();
                    let text = format!("Out of office until Monday, ref {i}");
                    stamped(
                        arrived + i * 100,
                        arrived - 8 * spacing + i * spacing,
                        from,
                        &text,
                    )
                })
                .collect()
        };
        // Two autoresponders' notes written 40 minutes apart over five
        // hours (a night's backlog): at most two in any hour.
        assert_eq!(first_loop(&written(40 * 60_000), &settings), None);
        // A minute apart: the sixth one is more than five within an hour.
        let (at, reason) = first_loop(&written(60_000), &settings).expect("a loop");
        assert_eq!(at, 5);
        assert!(reason.contains("6 near-identical"), "{reason}");
    }

    #[test]
    fn a_stamp_later_than_the_arrival_is_not_believed() {
        let settings = LoopProtection::default();
        let start = 1_800_000_000_000;
        // Side 1's network stamps its local time as UTC, two hours ahead:
        // its messages are placed when they arrived. Two machines answering
        // each other every second are still a loop.
        let machines: Vec<RecentMessage> = (0..12)
            .map(|i: i64| {
                let from = u8::try_from(i % 2).unwrap();
                let at = start + i * 1_000;
                let stamp = if from == 1 {
                    at + 2 * 3_600_000
                } else {
                    at - 400
                };
                stamped(at, stamp, from, &format!("message {i}"))
            })
            .collect();
        assert_eq!(first_loop(&machines, &settings).map(|(at, _)| at), Some(9));
        // A few minutes ahead is a clock a little fast: believed.
        assert_eq!(written_at(Some(start + 60_000), start), start + 60_000);
        assert_eq!(written_at(Some(start + 3_600_000), start), start);
        assert_eq!(written_at(None, start), start);
    }

    #[test]
    fn keywords_match_the_whole_trimmed_message_in_any_case() {
        let settings = OptOut {
            stop_keywords: vec!["STOP".into(), "ARRET".into(), "BAJA".into()],
            ..OptOut::default()
        };
        for said in ["STOP", "stop", "  Stop \n", "arret", "Baja"] {
            assert!(
                matches!(keyword(said, &settings), Some(Keyword::Stop(_))),
                "{said:?}"
            );
        }
        for said in ["please stop", "STOPP", "", "stop!"] {
            assert_eq!(keyword(said, &settings), None, "{said:?}");
        }
        assert_eq!(
            keyword(" start", &settings),
            Some(Keyword::Start("START".into()))
        );
    }

    #[test]
    fn the_first_rule_that_objects_decides() {
        let rules = Intercept {
            max_messages_per_session: 3,
            max_messages_per_participant_per_day: 10,
            block_keywords: vec!["Crypto".into()],
            forget_after_days: None,
        };
        let loops = LoopProtection::default();
        let verdict =
            |facts: &RelayFacts, body: &str| match intercept(body, facts, &rules, &loops, 0) {
                Verdict::Relay => "relay",
                Verdict::Block { rule, .. } => rule.as_str(),
            };
        let fine = RelayFacts::default();
        assert_eq!(verdict(&fine, "hello"), "relay");
        assert_eq!(verdict(&fine, "buy CRYPTO now"), "keyword");
        let blocked = RelayFacts {
            sender_blocked: true,
            session_messages: 99,
            ..RelayFacts::default()
        };
        assert_eq!(verdict(&blocked, "hello"), "block_list");
        let opted_out = RelayFacts {
            recipient_opted_out: true,
            ..RelayFacts::default()
        };
        assert_eq!(verdict(&opted_out, "hello"), "opt_out");
        let chatty = RelayFacts {
            session_messages: 3,
            ..RelayFacts::default()
        };
        assert_eq!(verdict(&chatty, "hello"), "session_limit");
        let busy = RelayFacts {
            sender_messages_today: 10,
            ..RelayFacts::default()
        };
        assert_eq!(verdict(&busy, "hello"), "participant_limit");
        let full = RelayFacts {
            recipients_this_month: 100,
            recipients_limit: Some(100),
            ..RelayFacts::default()
        };
        assert_eq!(verdict(&full, "hello"), "recipient_budget");
        let known = RelayFacts {
            recipient_known: true,
            ..full
        };
        assert_eq!(verdict(&known, "hello"), "relay");
    }

    #[test]
    fn near_identical_messages_from_both_sides_within_an_hour_are_a_loop() {
        let settings = LoopProtection {
            max_similar_per_hour: 3,
            max_burst: 0,
            burst_seconds: 10,
        };
        let hour = 3_600_000;
        let bounces = recent(&[
            (0, 0, "Auto-reply: I'm driving #1"),
            (300_000, 1, "auto reply: i'm DRIVING #2"),
            (600_000, 0, "Auto-reply: I'm driving #3"),
        ]);
        let now = 1_200_000;
        let next = "Auto-reply: I'm driving #4";
        assert!(loop_reason(&bounces[..2], next, 1, None, &settings, now).is_none());
        let reason = loop_reason(&bounces, next, 1, None, &settings, now).unwrap();
        assert!(reason.contains("4 near-identical"), "{reason}");
        assert!(
            loop_reason(
                &bounces,
                "ok see you at the station",
                1,
                None,
                &settings,
                now
            )
            .is_none()
        );
        // An hour later the old ones no longer count.
        assert!(loop_reason(&bounces, next, 1, None, &settings, hour + 700_000).is_none());
        // One side repeating itself is not a loop (a backlog, a person).
        let one_sided = recent(&[
            (0, 0, "burst of news"),
            (1, 0, "burst of news"),
            (2, 0, "burst of news"),
        ]);
        assert!(loop_reason(&one_sided, "burst of news", 0, None, &settings, 3).is_none());
        // Short texts are not compared: people say "ok" a lot.
        let oks = recent(&[(0, 0, "ok"), (1, 1, "ok"), (2, 0, "ok")]);
        assert!(loop_reason(&oks, "OK", 1, None, &settings, 3).is_none());
    }

    #[test]
    fn answers_faster_than_people_type_are_a_loop() {
        let settings = LoopProtection {
            max_similar_per_hour: 0,
            max_burst: 2,
            burst_seconds: 10,
        };
        let fast = recent(&[(1_000, 0, "a"), (2_000, 1, "b"), (3_000, 0, "c")]);
        let reason = loop_reason(&fast, "d", 1, None, &settings, 4_000).unwrap();
        assert!(
            reason.contains("3 replies back and forth within 10 seconds"),
            "{reason}"
        );
        assert!(loop_reason(&fast, "d", 1, None, &settings, 12_500).is_none());
        assert!(loop_reason(&fast[..2], "d", 0, None, &settings, 4_000).is_none());
        // A one-sided burst has no turns.
        let burst = recent(&[
            (1_000, 0, "a"),
            (1_100, 0, "b"),
            (1_200, 0, "c"),
            (1_300, 0, "d"),
        ]);
        assert!(loop_reason(&burst, "e", 0, None, &settings, 1_400).is_none());
    }

    #[test]
    fn fingerprints_ignore_case_digits_and_punctuation() {
        assert_eq!(
            fingerprint("Mail delivery FAILED (#550)"),
            fingerprint("mail delivery failed 551")
        );
        assert_ne!(fingerprint("yes"), fingerprint("no"));
    }
}
