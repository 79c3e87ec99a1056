//! One upload per content at a time. Requests that carry the same image at the same moment
//! (an agent fanning out one screenshot, parallel turns of one history) would each miss the
//! cache and upload it; instead the first leads and the others wait for it to finish, then
//! read its URL from the cache. If the leader fails or is cancelled the followers upload
//! themselves, at once and in parallel, so a failing leader never queues them one by one
//! (the identity that failed may not be theirs).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

#[derive(Default)]
pub struct Flights {
    /// Uploads in progress by content key; the receiver wakes when its leader is gone.
    running: Mutex<HashMap<String, watch::Receiver<()>>>,
}

pub enum Flight<'a> {
    /// Upload, then remember the URL before dropping this.
    Lead(Lead<'a>),
    /// Another request is uploading the same content: `wait`, then look in the cache again.
    Follow(watch::Receiver<()>),
}

pub struct Lead<'a> {
    flights: &'a Flights,
    key: String,
    /// Dropped after the entry is removed, which wakes the followers.
    _done: watch::Sender<()>,
}

impl Flights {
    pub fn join(&self, key: &str) -> Flight<'_> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = running.get(key) {
            return Flight::Follow(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        let key = key.to_string();
        running.insert(key.clone(), rx);
        Flight::Lead(Lead {
            flights: self,
            key,
            _done: tx,
        })
    }

    #[cfg(test)]
    fn running(&self) -> usize {
        self.running.lock().map_or(0, |r| r.len())
    }
}

/// Returns when the leader finished, failed or was dropped.
pub async fn wait(mut rx: watch::Receiver<()>) {
    // The leader never sends; `changed` returns an error once its sender is dropped.
    while rx.changed().await.is_ok() {}
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut running = self
            .flights
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_wait_for_the_leader_and_the_entry_goes_with_it() {
        let f = Flights::default();
        let Flight::Lead(lead) = f.join("k") else {
            panic!("the first one leads");
        };
        let Flight::Follow(rx) = f.join("k") else {
            panic!("the second one follows");
        };
        assert!(
            matches!(f.join("other"), Flight::Lead(_)),
            "keys are separate"
        );
        assert_eq!(f.running(), 1, "a dropped lead leaves nothing behind");
        let waiter = tokio::spawn(wait(rx));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while the leader runs");
        drop(lead);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken when the leader is gone")
            .unwrap();
        assert_eq!(f.running(), 0);
        assert!(
            matches!(f.join("k"), Flight::Lead(_)),
            "the next one leads again"
        );
    }
}
