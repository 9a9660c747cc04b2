//! The process's subscription to a Redis store's change channel: notices
//! published by the writing scripts reach this process's watchers. On a
//! cluster any node will do — a `PUBLISH` reaches every node's subscribers.
//!
//! While the subscription is lost (a restart, a network failure, a frozen
//! server that no longer answers `PING`), cached copies live by their TTLs
//! — a near cache may serve them while the store is down; every new
//! subscription tells the watchers [`Change::Missed`], so what changed in
//! between is refetched.

use std::time::Duration;

use futures_util::StreamExt;

use super::tls;
use crate::store::{Announcer, Change};

/// How often the subscription proves it is alive.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Subscribes to `channel` on the first of `urls` that answers, for as
/// long as the task runs, forwarding notices to `announcer`.
pub(super) async fn run(
    urls: Vec<String>,
    roots: tls::Roots,
    channel: String,
    announcer: Announcer,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        for url in &urls {
            if subscribe(url, &roots, &channel, &announcer).await {
                backoff = Duration::from_millis(50);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One subscription, until it is lost; whether it was established.
async fn subscribe(url: &str, roots: &tls::Roots, channel: &str, announcer: &Announcer) -> bool {
    let connected = async {
        let mut pubsub = roots.client(url)?.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let Ok(Ok(pubsub)) = tokio::time::timeout(PING_EVERY * 2, connected).await else {
        return false;
    };
    // Whatever changed before this subscription is unknown here.
    announcer.notify(Change::Missed);
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => {
                    if let Ok(key) = message.get_payload::<String>() {
                        announcer.notify(Change::Key(key));
                    }
                }
                None => break,
            },
            _ = ping.tick() => {
                let answered = tokio::time::timeout(PING_EVERY, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    break;
                }
            }
        }
    }
    tracing::warn!(url, "change subscription lost: resubscribing");
    true
}
