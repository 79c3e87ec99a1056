//! Chat cleanup: chats the gateway creates upstream are deleted after use, in the background,
//! with retries, whatever ended the request (a drop guard covers early returns and client
//! disconnects). Sweep mode instead deletes each account's chats beyond the first page now and
//! then; `off` keeps everything.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use super::Identity;
use crate::config::ChatCleanup;
use crate::gateway::Gateway;
use crate::qwen::api;
use crate::qwen::headers::Credentials;

pub struct Job {
    pub identity: Arc<Identity>,
    pub chat_id: String,
}

/// The sending side, held by the gateway.
pub struct ChatCleaner {
    tx: Option<mpsc::UnboundedSender<Job>>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
}

/// Deletes its chat when dropped.
pub struct CleanupGuard<'a> {
    cleaner: &'a ChatCleaner,
    job: Option<Job>,
}

impl Drop for CleanupGuard<'_> {
    fn drop(&mut self) {
        if let (Some(tx), Some(job)) = (&self.cleaner.tx, self.job.take()) {
            let _ = tx.send(job);
        }
    }
}

impl ChatCleaner {
    pub fn new(mode: ChatCleanup) -> Self {
        if mode != ChatCleanup::AfterUse {
            return ChatCleaner {
                tx: None,
                rx: Mutex::new(None),
            };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        ChatCleaner {
            tx: Some(tx),
            rx: Mutex::new(Some(rx)),
        }
    }

    pub fn guard(&self, identity: Arc<Identity>, chat_id: String) -> CleanupGuard<'_> {
        CleanupGuard {
            cleaner: self,
            job: Some(Job { identity, chat_id }),
        }
    }

    fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<Job>> {
        self.rx.lock().expect("cleaner lock").take()
    }
}

const ATTEMPTS: u32 = 3;

async fn delete_with_retries(gw: &Gateway, job: &Job) {
    for attempt in 0..ATTEMPTS {
        let Some(token) = job.identity.token() else {
            return;
        };
        let creds = Credentials {
            token: &token,
            cookie: job.identity.cookie(),
        };
        match api::delete_chat(&gw.upstream, &creds, &job.chat_id).await {
            Ok(()) => return,
            Err(f) => {
                log::debug!(
                    "{}: deleting a chat failed ({}), attempt {}",
                    job.identity.label,
                    f.class.as_str(),
                    attempt + 1
                );
                tokio::time::sleep(Duration::from_millis(300 << attempt)).await;
            }
        }
    }
    log::warn!(
        "{}: gave up deleting a chat after {ATTEMPTS} attempts",
        job.identity.label
    );
}

async fn sweep(gw: &Gateway) {
    for id in gw.pool.all().iter() {
        let Some(token) = id.token() else { continue };
        let creds = Credentials {
            token: &token,
            cookie: id.cookie(),
        };
        // Page 1 stays: those are the account's recent chats, possibly a person's own.
        match api::list_chats(&gw.upstream, &creds, 2).await {
            Ok(ids) => {
                for chat_id in ids {
                    let job = Job {
                        identity: id.clone(),
                        chat_id,
                    };
                    delete_with_retries(gw, &job).await;
                }
            }
            Err(f) => log::warn!("{}: listing chats failed: {}", id.label, f.class.as_str()),
        }
    }
}

pub struct CleanupService {
    pub gw: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for CleanupService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        match self.gw.settings.chat_cleanup {
            ChatCleanup::Off => {}
            ChatCleanup::AfterUse => {
                let Some(mut rx) = self.gw.cleaner.take_receiver() else {
                    return;
                };
                // Bounded so a burst of endings cannot open unbounded upstream connections.
                let permits = Arc::new(tokio::sync::Semaphore::new(16));
                loop {
                    let job = tokio::select! {
                        j = rx.recv() => j,
                        _ = shutdown.changed() => return,
                    };
                    let Some(job) = job else { return };
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let gw = self.gw.clone();
                    tokio::spawn(async move {
                        delete_with_retries(&gw, &job).await;
                        drop(permit);
                    });
                }
            }
            ChatCleanup::Sweep => {
                let mut tick = tokio::time::interval(self.gw.settings.chat_sweep_interval);
                loop {
                    tokio::select! {
                        _ = tick.tick() => sweep(&self.gw).await,
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
}
