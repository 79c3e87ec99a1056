//! What the simulator remembers about uploads and generated media: issued STS credentials,
//! stored objects, video tasks and a log of media completions, all bounded so a long demo
//! or benchmark cannot grow the sim without limit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::state::LOG_LIMIT;

/// Oldest entries are dropped past these.
const MAX_ISSUED: usize = 1000;
const MAX_OBJECTS: usize = 200;
const MAX_OBJECT_BYTES: usize = 256 << 20;
const MAX_TASKS: usize = 1000;
pub const DEFAULT_TASK_POLLS: u64 = 3;

/// One STS grant: the temporary key pair and the single object it may write.
#[derive(Debug, Clone)]
pub struct Issued {
    pub email: String,
    pub access_key_id: String,
    pub secret: String,
    pub token: String,
    pub bucket: String,
    pub file_path: String,
    pub region: String,
}

#[derive(Debug, Clone)]
pub struct StoredObject {
    pub bytes: Bytes,
    pub content_type: String,
}

#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub email: String,
    pub bucket: String,
    pub key: String,
    pub size: usize,
    pub content_type: String,
    /// `v4` or `v1`.
    pub auth: &'static str,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFate {
    Succeed,
    Fail,
    Never,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub email: String,
    pub polls: u64,
    pub fate: TaskFate,
    pub video_url: String,
}

/// The answer to one poll of `GET /api/v1/tasks/status/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    Pending,
    Running,
    Success(String),
    Failed,
}

impl TaskStatus {
    pub fn name(&self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Success(_) => "success",
            TaskStatus::Failed => "failed",
        }
    }
}

/// A t2i / image_edit / t2v completion, as the tests want to see it.
#[derive(Debug, Clone)]
pub struct GenerationRecord {
    pub email: String,
    pub chat_id: String,
    /// The chat_type the request asked for.
    pub requested: String,
    /// The mode actually served (image_edit without an image becomes t2i).
    pub served: String,
    pub size: Option<String>,
    /// Every media URL the request referenced (`files[].url`, image/video content parts).
    pub files: Vec<String>,
    /// Which of `files` are objects stored by this sim's OSS.
    pub known_uploads: Vec<bool>,
    /// A `data:` URI was found in the request body: media was sent inline, not uploaded.
    pub inline_data: bool,
    pub result_url: Option<String>,
    pub task_id: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    issued: HashMap<String, Issued>,
    issued_order: VecDeque<String>,
    objects: HashMap<String, StoredObject>,
    object_order: VecDeque<String>,
    object_bytes: usize,
    uploads: VecDeque<UploadRecord>,
    tasks: HashMap<String, Task>,
    task_order: VecDeque<String>,
    generations: VecDeque<GenerationRecord>,
}

#[derive(Debug)]
pub struct MediaState {
    inner: Mutex<Inner>,
    pub sts_v1: AtomicU64,
    pub sts_v2: AtomicU64,
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub oss_rejected: AtomicU64,
    pub task_polls_served: AtomicU64,
    pub cdn_gets: AtomicU64,
    task_polls: AtomicU64,
}

impl Default for MediaState {
    fn default() -> Self {
        MediaState {
            inner: Mutex::default(),
            sts_v1: AtomicU64::new(0),
            sts_v2: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            upload_bytes: AtomicU64::new(0),
            oss_rejected: AtomicU64::new(0),
            task_polls_served: AtomicU64::new(0),
            cdn_gets: AtomicU64::new(0),
            task_polls: AtomicU64::new(DEFAULT_TASK_POLLS),
        }
    }
}

fn object_key(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

fn push_capped<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= LOG_LIMIT {
        q.pop_front();
    }
    q.push_back(item);
}

impl MediaState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bump(c: &AtomicU64, by: u64) {
        c.fetch_add(by, Ordering::Relaxed);
    }

    pub fn task_polls(&self) -> u64 {
        self.task_polls.load(Ordering::Relaxed)
    }

    pub fn set_task_polls(&self, n: u64) {
        self.task_polls.store(n, Ordering::Relaxed);
    }

    pub fn issue(&self, grant: Issued) {
        let mut g = self.lock();
        if g.issued_order.len() >= MAX_ISSUED {
            if let Some(old) = g.issued_order.pop_front() {
                g.issued.remove(&old);
            }
        }
        g.issued_order.push_back(grant.token.clone());
        g.issued.insert(grant.token.clone(), grant);
    }

    pub fn grant(&self, token: &str) -> Option<Issued> {
        self.lock().issued.get(token).cloned()
    }

    pub fn store(&self, bucket: &str, key: &str, obj: StoredObject, record: UploadRecord) {
        let mut g = self.lock();
        let k = object_key(bucket, key);
        g.object_bytes += obj.bytes.len();
        if let Some(old) = g.objects.insert(k.clone(), obj) {
            g.object_bytes -= old.bytes.len();
        } else {
            g.object_order.push_back(k);
        }
        while g.object_order.len() > MAX_OBJECTS || g.object_bytes > MAX_OBJECT_BYTES {
            let Some(old) = g.object_order.pop_front() else {
                break;
            };
            if let Some(o) = g.objects.remove(&old) {
                g.object_bytes -= o.bytes.len();
            }
        }
        push_capped(&mut g.uploads, record);
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        self.lock().objects.get(&object_key(bucket, key)).cloned()
    }

    /// True when `path` (`<bucket>/<key>`) names a stored object.
    pub fn has_object_path(&self, path: &str) -> bool {
        self.lock().objects.contains_key(path)
    }

    pub fn add_task(&self, id: &str, task: Task) {
        let mut g = self.lock();
        if g.task_order.len() >= MAX_TASKS {
            if let Some(old) = g.task_order.pop_front() {
                g.tasks.remove(&old);
            }
        }
        g.task_order.push_back(id.to_string());
        g.tasks.insert(id.to_string(), task);
    }

    /// Counts one poll of the task and returns its status, after applying a fate change
    /// injected for this poll. `None` if the task is unknown or someone else's.
    pub fn poll_task(&self, id: &str, email: &str, fate: Option<TaskFate>) -> Option<TaskStatus> {
        let k = self.task_polls();
        let mut g = self.lock();
        let t = g.tasks.get_mut(id).filter(|t| t.email == email)?;
        if let Some(f) = fate {
            t.fate = f;
        }
        t.polls += 1;
        let n = t.polls;
        Some(match t.fate {
            TaskFate::Never if n > 1 => TaskStatus::Running,
            _ if n < k && n == 1 => TaskStatus::Pending,
            _ if n < k => TaskStatus::Running,
            TaskFate::Succeed => TaskStatus::Success(t.video_url.clone()),
            TaskFate::Fail => TaskStatus::Failed,
            TaskFate::Never => TaskStatus::Pending,
        })
    }

    pub fn record_generation(&self, r: GenerationRecord) {
        push_capped(&mut self.lock().generations, r);
    }

    pub fn clear(&self) {
        *self.lock() = Inner::default();
        for c in [
            &self.sts_v1,
            &self.sts_v2,
            &self.uploads,
            &self.upload_bytes,
            &self.oss_rejected,
            &self.task_polls_served,
            &self.cdn_gets,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.set_task_polls(DEFAULT_TASK_POLLS);
    }

    pub fn to_json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = self.lock();
        let uploads: Vec<Value> = g
            .uploads
            .iter()
            .map(|u| {
                json!({"email": u.email, "bucket": u.bucket, "key": u.key, "size": u.size,
                       "content_type": u.content_type, "auth": u.auth, "sha256": u.sha256})
            })
            .collect();
        let tasks: Vec<Value> = g
            .task_order
            .iter()
            .filter_map(|id| g.tasks.get(id).map(|t| (id, t)))
            .map(|(id, t)| {
                let fate = match t.fate {
                    TaskFate::Succeed => "succeed",
                    TaskFate::Fail => "fail",
                    TaskFate::Never => "never",
                };
                json!({"task_id": id, "email": t.email, "polls": t.polls, "fate": fate,
                       "video_url": t.video_url})
            })
            .collect();
        let generations: Vec<Value> = g
            .generations
            .iter()
            .map(|r| {
                json!({"email": r.email, "chat_id": r.chat_id, "requested": r.requested,
                       "chat_type": r.served, "size": r.size, "files": r.files,
                       "known_uploads": r.known_uploads, "inline_data": r.inline_data,
                       "result_url": r.result_url, "task_id": r.task_id})
            })
            .collect();
        json!({
            "sts_v1": get(&self.sts_v1), "sts_v2": get(&self.sts_v2),
            "sts_issued": g.issued.len(),
            "uploads": get(&self.uploads), "upload_bytes": get(&self.upload_bytes),
            "oss_rejected": get(&self.oss_rejected), "objects": g.objects.len(),
            "uploads_log": uploads,
            "task_polls": self.task_polls(), "task_polls_served": get(&self.task_polls_served),
            "tasks": tasks,
            "cdn_gets": get(&self.cdn_gets),
            "generations": generations,
            "last_generation": generations.last(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(fate: TaskFate) -> Task {
        Task {
            email: "a@x".into(),
            polls: 0,
            fate,
            video_url: "http://v".into(),
        }
    }

    fn polls(st: &MediaState, id: &str, n: usize) -> Vec<&'static str> {
        (0..n)
            .map(|_| st.poll_task(id, "a@x", None).unwrap().name())
            .collect()
    }

    #[test]
    fn task_progression() {
        let st = MediaState::default();
        st.set_task_polls(3);
        st.add_task("t1", task(TaskFate::Succeed));
        st.add_task("t2", task(TaskFate::Fail));
        st.add_task("t3", task(TaskFate::Never));
        assert_eq!(
            polls(&st, "t1", 4),
            ["pending", "running", "success", "success"]
        );
        assert_eq!(polls(&st, "t2", 3), ["pending", "running", "failed"]);
        assert_eq!(
            polls(&st, "t3", 5),
            ["pending", "running", "running", "running", "running"]
        );
        assert!(st.poll_task("t1", "b@x", None).is_none());
        assert!(st.poll_task("nope", "a@x", None).is_none());
        st.set_task_polls(1);
        st.add_task("t4", task(TaskFate::Succeed));
        assert_eq!(
            st.poll_task("t4", "a@x", None),
            Some(TaskStatus::Success("http://v".into()))
        );
        // A fate injected at poll time sticks.
        st.add_task("t5", task(TaskFate::Succeed));
        assert_eq!(
            st.poll_task("t5", "a@x", Some(TaskFate::Fail)),
            Some(TaskStatus::Failed)
        );
        assert_eq!(st.poll_task("t5", "a@x", None), Some(TaskStatus::Failed));
    }

    #[test]
    fn objects_are_bounded() {
        let st = MediaState::default();
        for i in 0..MAX_OBJECTS + 5 {
            let rec = UploadRecord {
                email: "a@x".into(),
                bucket: "b".into(),
                key: format!("k{i}"),
                size: 1,
                content_type: "image/png".into(),
                auth: "v4",
                sha256: String::new(),
            };
            let obj = StoredObject {
                bytes: Bytes::from_static(b"x"),
                content_type: "image/png".into(),
            };
            st.store("b", &format!("k{i}"), obj, rec);
        }
        assert!(st.object("b", "k0").is_none());
        assert!(st.object("b", &format!("k{}", MAX_OBJECTS + 4)).is_some());
        assert!(st.has_object_path(&format!("b/k{}", MAX_OBJECTS + 4)));
        st.clear();
        assert_eq!(st.to_json()["objects"], 0);
    }
}
