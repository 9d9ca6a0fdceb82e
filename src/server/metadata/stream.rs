//! The producer side of Arsenal's sio-stream protocol (§3): `stream-data` events with acks, at
//! most [`WINDOW`] unacknowledged, a 5 s ack timer per event, `stream-end`, `stream-error`, and
//! `stream-hangup` from the consumer.
//!
//! Memory stays bounded whatever the client does: the producer reads the store only when a window
//! slot is free, so a client that stops acking holds at most `WINDOW` batches, and its stream is
//! dropped (cursor and snapshot released) when the first ack times out. A hangup or a disconnect
//! stops the producer at the next step; acks for data already sent are then not expected (§3.5).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use socketioxide::extract::SocketRef;
use socketioxide::AckError;
use tokio::sync::{mpsc, watch, Semaphore};

use super::metrics::Metrics;
use super::service::ItemStream;

/// `streamMaxPendingAck` of the reference.
pub const WINDOW: usize = 4;
/// `streamAckTimeoutMs` of the reference (also socketioxide's ack timeout, set in `mod.rs`).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Items per `stream-data`: the first event is small so the first items arrive fast, later ones
/// grow so long listings cost few round trips.
const FIRST_BATCH: usize = 16;
const MAX_BATCH: usize = 512;

pub async fn produce(
    s: SocketRef,
    id: &str,
    mut items: ItemStream,
    mut cancel: watch::Receiver<bool>,
    metrics: &Metrics,
) {
    let _open = metrics.stream_opened();
    let window = Arc::new(Semaphore::new(WINDOW));
    let (timed_out_tx, mut timed_out) = mpsc::channel::<()>(WINDOW);
    let mut batch = FIRST_BATCH;
    loop {
        let permit = tokio::select! {
            biased;
            _ = cancel.changed() => return,
            _ = timed_out.recv() => {
                metrics.stream_timeout();
                // The reference's text (§3.4, A.6).
                let _ = s.emit("stream-error", &json!({
                    "streamId": id,
                    "error": {
                        "message": "Callback function \"anonymous\" timed out.",
                        "code": "ETIMEDOUT",
                        "info": format!("stream timeout: did not receive ack after {}ms", ACK_TIMEOUT.as_millis()),
                    },
                }));
                return;
            }
            p = window.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        if *cancel.borrow() {
            return;
        }
        let data = match items.next_items(batch).await {
            Ok(d) => d,
            Err(e) => {
                // The reference sends nothing here and leaves the consumer hanging; say it.
                tracing::warn!(stream = id, error = %e, "metadata stream source failed");
                let _ = s.emit(
                    "stream-error",
                    &json!({"streamId": id, "error": e.to_wire()}),
                );
                return;
            }
        };
        if *cancel.borrow() {
            return;
        }
        if data.is_empty() {
            // Acked by the client, but nothing waits on it: the end is final either way.
            let _ = s.emit_with_ack::<_, Value>("stream-end", &json!({"streamId": id}));
            return;
        }
        metrics.stream_items(data.len());
        let ack = match s
            .emit_with_ack::<_, Value>("stream-data", &json!({"streamId": id, "data": data}))
        {
            Ok(a) => a,
            Err(e) => {
                // Socket closed or its send buffer full: the client is gone or not reading.
                tracing::debug!(stream = id, error = %e, "metadata stream stopped: cannot send");
                return;
            }
        };
        let timed_out_tx = timed_out_tx.clone();
        tokio::spawn(async move {
            match ack.await {
                Ok(_) => drop(permit),
                Err(AckError::Timeout) => {
                    let _ = timed_out_tx.try_send(());
                }
                // Disconnected: the disconnect handler hangs the stream up. Keep the permit so
                // nothing more is produced.
                Err(_) => {}
            }
        });
        batch = (batch * 2).min(MAX_BATCH);
    }
}
