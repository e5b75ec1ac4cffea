//! Async locks by key: one holder per key at a time, and the map forgets keys nobody holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}
