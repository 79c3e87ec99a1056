//! The upload cache across instances: `upload:<sha256 of the content>` holds the uploaded
//! file's URL, with the cache's entry lifetime (`CACHE_TTL_SECS`, else a day, since upstream
//! URLs do not live forever). Reads are awaited (a miss costs the upload anyway); writes are
//! queued. A Redis failure is a miss, never an upload failure.

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::media::cache::RemoteCache;

const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

pub struct SharedUploads(pub Arc<Shared>);

#[async_trait::async_trait]
impl RemoteCache for SharedUploads {
    async fn get(&self, key: &str) -> Option<String> {
        let s = &self.0;
        let mut conn = s.conn();
        s.call(
            "upload_cache",
            redis::cmd("GET")
                .arg(s.key(&format!("upload:{key}")))
                .query_async::<Option<String>>(&mut conn),
        )
        .await
        .flatten()
    }

    fn put(&self, key: &str, url: &str, ttl: Option<Duration>) {
        let s = &self.0;
        let mut c = redis::cmd("SET");
        c.arg(s.key(&format!("upload:{key}")))
            .arg(url)
            .arg("PX")
            .arg(ttl.unwrap_or(DEFAULT_TTL).as_millis().max(1) as u64);
        s.queue(vec![c]);
    }
}
