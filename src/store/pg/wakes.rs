//! Outbox wake-ups across the fleet: a trigger on `outbox` NOTIFYs
//! `simmask_outbox` with the SIM's ICCID whenever a message becomes due for
//! it (queued, or released earlier), and each appliance LISTENs and wakes
//! its worker for that SIM when it holds it. A notification lost across a
//! reconnection costs only latency: the idle worker looks again anyway.

use futures::StreamExt;
use tokio::sync::mpsc;

use super::PgStore;

const CHANNEL: &str = "simmask_outbox";

impl PgStore {
    /// The ICCIDs whose outbox has something new, as announced; ends when
    /// the receiver is dropped.
    pub(in crate::store) fn follow_outbox_wakes(&self) -> mpsc::Receiver<String> {
        let (send, receive) = mpsc::channel(256);
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let (client, mut connection) = match store
                    .inner
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::debug!(%error, "fleet: cannot listen for outbox wake-ups; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                            () = send.closed() => return,
                        }
                        continue;
                    }
                };
                let (notified, mut notifications) = mpsc::channel::<String>(256);
                let pump = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let tokio_postgres::AsyncMessage::Notification(note) = message {
                            let _ = notified.try_send(note.payload().to_string());
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_err()
                {
                    pump.abort();
                    continue;
                }
                loop {
                    tokio::select! {
                        note = notifications.recv() => match note {
                            Some(iccid) => {
                                if send.send(iccid).await.is_err() {
                                    pump.abort();
                                    return;
                                }
                            }
                            // The connection ended: listen again.
                            None => break,
                        },
                        () = send.closed() => { pump.abort(); return; }
                    }
                }
                pump.abort();
                drop(client);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
        receive
    }
}
