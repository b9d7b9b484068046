//! What waits to be published: a bounded queue between the appliance and
//! the broker, so that a broker that is down or slow costs memory up to a
//! bound and never a wait anywhere else.
//!
//! State is retained and refreshed: a newer state replaces the one queued
//! for its topic, and when the queue is full the oldest state goes first
//! (the next refresh, or the snapshot sent on reconnecting, restores it).
//! Events are kept in order and dropped only when nothing but events is
//! left, oldest first, each one counted
//! (`simmask_mqtt_events_dropped_total`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// How the queue treats a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retained state (availability, discovery, a SIM's state): the newest
    /// per topic is all that matters.
    State,
    /// An event or a command's result: each one counts.
    Event,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub class: Class,
}

impl Message {
    /// Retained state.
    pub fn state(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            retain: true,
            class: Class::State,
        }
    }

    /// An event (not retained).
    pub fn event(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            retain: false,
            class: Class::Event,
        }
    }
}

/// The queue itself, without locking.
#[derive(Debug)]
pub struct Queue {
    messages: VecDeque<Message>,
    capacity: usize,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Self {
            messages: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues `message`; answers how many events were dropped for room.
    pub fn push(&mut self, message: Message) -> u64 {
        if message.class == Class::State
            && let Some(queued) = self
                .messages
                .iter_mut()
                .find(|m| m.class == Class::State && m.topic == message.topic)
        {
            *queued = message;
            return 0;
        }
        let dropped = self.make_room(1);
        self.messages.push_back(message);
        dropped
    }

    /// Puts back, first and in their order, messages a broken connection
    /// did not deliver; a state already queued anew for its topic wins over
    /// its older self. Answers how many events were dropped for room.
    pub fn requeue(&mut self, messages: Vec<Message>) -> u64 {
        let mut dropped = 0;
        for message in messages.into_iter().rev() {
            if message.class == Class::State
                && self
                    .messages
                    .iter()
                    .any(|m| m.class == Class::State && m.topic == message.topic)
            {
                continue;
            }
            if self.messages.len() >= self.capacity {
                if message.class == Class::Event
                    && !self.messages.iter().any(|m| m.class == Class::State)
                {
                    // Older than everything queued: it is the one to go.
                    dropped += 1;
                    continue;
                }
                dropped += self.make_room(1);
            }
            self.messages.push_front(message);
        }
        dropped
    }

    pub fn pop(&mut self) -> Option<Message> {
        self.messages.pop_front()
    }

    /// Frees `needed` places: the oldest states first, then the oldest
    /// events. Answers how many events went.
    fn make_room(&mut self, needed: usize) -> u64 {
        let mut dropped = 0;
        while self.messages.len() + needed > self.capacity {
            match self.messages.iter().position(|m| m.class == Class::State) {
                Some(at) => {
                    self.messages.remove(at);
                }
                None => {
                    self.messages.pop_front();
                    dropped += 1;
                }
            }
        }
        dropped
    }
}

/// The queue shared by the producers (state, events, commands' results)
/// and the one consumer that hands messages to the connection.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    /// Events dropped since start.
    dropped: AtomicU64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        // Shown as 0 from the start rather than absent.
        crate::metrics::mqtt_events_dropped(0);
        Self {
            queue: Mutex::new(Queue::new(capacity)),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `message` without waiting.
    pub fn push(&self, message: Message) {
        let dropped = self.lock().push(message);
        self.dropped(dropped);
        self.ready.notify_one();
    }

    /// Puts back what a broken connection did not deliver.
    pub fn requeue(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let dropped = self.lock().requeue(messages);
        self.dropped(dropped);
        self.ready.notify_one();
    }

    /// Counts events lost before they reached the queue (the publisher fell
    /// behind the event bus).
    pub fn dropped(&self, events: u64) {
        if events > 0 {
            tracing::debug!(events, "mqtt: events dropped");
            self.dropped.fetch_add(events, Ordering::Relaxed);
            crate::metrics::mqtt_events_dropped(events);
        }
    }

    /// Events dropped since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().messages.is_empty()
    }

    /// The next message, waiting for one.
    pub async fn next(&self) -> Message {
        loop {
            let ready = self.ready.notified();
            if let Some(message) = self.lock().pop() {
                return message;
            }
            ready.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(queue: &mut Queue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = queue.pop() {
            out.push(format!(
                "{}={}",
                m.topic,
                String::from_utf8_lossy(&m.payload)
            ));
        }
        out
    }

    #[test]
    fn a_newer_state_replaces_the_queued_one_in_place() {
        let mut queue = Queue::new(10);
        queue.push(Message::state("a", "1"));
        queue.push(Message::event("e", "x"));
        queue.push(Message::state("a", "2"));
        assert_eq!(topics(&mut queue), ["a=2", "e=x"]);
    }

    #[test]
    fn when_full_the_oldest_state_goes_first_then_the_oldest_event() {
        let mut queue = Queue::new(3);
        assert_eq!(queue.push(Message::event("e1", "")), 0);
        assert_eq!(queue.push(Message::state("s1", "")), 0);
        assert_eq!(queue.push(Message::state("s2", "")), 0);
        // Full: s1 (the oldest state) makes room, not the older event.
        assert_eq!(queue.push(Message::event("e2", "")), 0);
        assert_eq!(queue.push(Message::event("e3", "")), 0);
        // Only events left: the oldest goes, and is counted.
        assert_eq!(queue.push(Message::event("e4", "")), 1);
        assert_eq!(topics(&mut queue), ["e2=", "e3=", "e4="]);
    }

    #[test]
    fn undelivered_messages_go_back_first_in_order() {
        let mut queue = Queue::new(4);
        queue.push(Message::event("new", ""));
        queue.push(Message::state("s", "fresh"));
        let dropped = queue.requeue(vec![
            Message::event("old1", ""),
            Message::state("s", "stale"),
            Message::event("old2", ""),
        ]);
        assert_eq!(dropped, 0);
        assert_eq!(topics(&mut queue), ["old1=", "old2=", "new=", "s=fresh"]);
        // Beyond the bound the requeued events are the oldest of all.
        let mut queue = Queue::new(2);
        queue.push(Message::event("new1", ""));
        queue.push(Message::event("new2", ""));
        assert_eq!(queue.requeue(vec![Message::event("old", "")]), 1);
        assert_eq!(topics(&mut queue), ["new1=", "new2="]);
    }

    #[tokio::test]
    async fn the_consumer_waits_for_a_message() {
        let outbox = std::sync::Arc::new(Outbox::new(8));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.next().await }
        });
        tokio::task::yield_now().await;
        outbox.push(Message::event("t", "p"));
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.topic, "t");
        assert!(outbox.is_empty());
    }
}
