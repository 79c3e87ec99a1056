//! Chats created through `/api/v2/chats/new`: ownership, listing, detail and deletion.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::answer::SEARCH_INFO_JSON;

/// One completed exchange, kept so that the chat detail looks like the web client's.
#[derive(Debug, Clone)]
pub struct Turn {
    pub user_msg_id: String,
    pub response_id: String,
    pub prompt: String,
    pub answer: String,
    pub reasoning: String,
    pub search: bool,
    pub model: String,
    pub timestamp: i64,
}

#[derive(Debug, Clone)]
pub struct Chat {
    pub id: String,
    pub owner: String,
    pub title: String,
    pub chat_type: String,
    pub model: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Orders chats updated within the same second.
    seq: u64,
    pub turns: Vec<Turn>,
}

/// A chat keeps only its latest turns; benchmark chats that are never deleted stay small.
const MAX_TURNS: usize = 20;
pub const PAGE_SIZE: usize = 60;

#[derive(Debug, Default)]
pub struct ChatStore {
    chats: Mutex<HashMap<String, Chat>>,
    seq: AtomicU64,
}

pub enum Lookup {
    Found,
    Missing,
    NotOwner,
}

impl ChatStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Chat>> {
        self.chats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn create(
        &self,
        owner: &str,
        title: &str,
        chat_type: &str,
        model: &str,
        now: i64,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let chat = Chat {
            id: id.clone(),
            owner: owner.to_string(),
            title: title.to_string(),
            chat_type: chat_type.to_string(),
            model: model.to_string(),
            created_at: now,
            updated_at: now,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            turns: Vec::new(),
        };
        self.lock().insert(id.clone(), chat);
        id
    }

    pub fn check(&self, id: &str, owner: &str) -> Lookup {
        match self.lock().get(id) {
            None => Lookup::Missing,
            Some(c) if c.owner == owner => Lookup::Found,
            Some(_) => Lookup::NotOwner,
        }
    }

    pub fn add_turn(&self, id: &str, turn: Turn) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.lock().get_mut(id) {
            c.updated_at = turn.timestamp;
            c.seq = seq;
            if c.turns.len() >= MAX_TURNS {
                c.turns.remove(0);
            }
            c.turns.push(turn);
        }
    }

    /// Removes the chat if it exists and is owned by `owner`.
    pub fn delete(&self, id: &str, owner: &str) -> bool {
        let mut chats = self.lock();
        match chats.get(id) {
            Some(c) if c.owner == owner => chats.remove(id).is_some(),
            _ => false,
        }
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn live_count(&self) -> usize {
        self.lock().len()
    }

    pub fn live_ids(&self) -> Vec<String> {
        let chats = self.lock();
        let mut v: Vec<(&u64, &String)> = chats.values().map(|c| (&c.seq, &c.id)).collect();
        v.sort();
        v.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Newest first; `skip`/`take` implement both `?page=N` and `?limit=N`.
    pub fn list(&self, owner: &str, skip: usize, take: usize) -> Value {
        let chats = self.lock();
        let mut mine: Vec<&Chat> = chats.values().filter(|c| c.owner == owner).collect();
        mine.sort_by_key(|c| std::cmp::Reverse(c.seq));
        Value::Array(
            mine.into_iter()
                .skip(skip)
                .take(take)
                .map(|c| {
                    json!({
                        "id": c.id, "title": c.title, "chat_type": c.chat_type,
                        "created_at": c.created_at, "updated_at": c.updated_at,
                        "models": [c.model], "pinned": false, "archived": false,
                        "project_id": null, "folder_id": null,
                    })
                })
                .collect(),
        )
    }

    pub fn detail(&self, id: &str, owner: &str) -> Option<Value> {
        let chats = self.lock();
        let c = chats.get(id).filter(|c| c.owner == owner)?;
        Some(detail_json(c))
    }
}

/// Open WebUI layout (§8.4): a `history.messages` map plus a `messages` array.
fn detail_json(c: &Chat) -> Value {
    let mut map = serde_json::Map::new();
    let mut list = Vec::with_capacity(c.turns.len() * 2);
    let mut parent: Value = Value::Null;
    for t in &c.turns {
        let user = json!({
            "id": t.user_msg_id, "parentId": parent, "childrenIds": [t.response_id],
            "role": "user", "content": t.prompt, "timestamp": t.timestamp,
            "models": [t.model], "chat_type": c.chat_type,
        });
        let mut content_list = Vec::new();
        if t.search {
            let info: Value = serde_json::from_str(SEARCH_INFO_JSON).unwrap_or(Value::Null);
            content_list.push(json!({"phase": "web_search", "status": "finished",
                "content": "", "extra": {"web_search_info": info}}));
        }
        if !t.reasoning.is_empty() {
            content_list.push(json!({"phase": "thinking_summary", "status": "finished",
                "content": t.reasoning}));
        }
        content_list.push(json!({"phase": "answer", "status": "finished", "content": t.answer}));
        let assistant = json!({
            "id": t.response_id, "response_id": t.response_id, "parentId": t.user_msg_id,
            "childrenIds": [], "role": "assistant", "content": t.answer,
            "reasoning_content": t.reasoning, "model": t.model, "modelName": t.model,
            "timestamp": t.timestamp, "done": true, "content_list": content_list,
        });
        map.insert(t.user_msg_id.clone(), user.clone());
        map.insert(t.response_id.clone(), assistant.clone());
        list.push(user);
        list.push(assistant);
        parent = Value::String(t.response_id.clone());
    }
    json!({
        "id": c.id, "title": c.title, "chat_type": c.chat_type,
        "created_at": c.created_at, "updated_at": c.updated_at,
        "models": [c.model],
        "chat": {
            "history": {"messages": map, "currentId": parent},
            "messages": list,
            "models": [c.model],
        },
    })
}
