//! Sandbox records: one row per pod, rewritten atomically on every state change.

use redb::ReadableTable;

use super::db::{store_err, Db, SANDBOXES};
use crate::error::{Error, Result};
use crate::sandbox::SandboxRecord;

fn decode(id: &str, bytes: &[u8]) -> Result<SandboxRecord> {
    serde_json::from_slice(bytes).map_err(|e| Error::Store(format!("sandbox record {id}: {e}")))
}

impl Db {
    pub fn put_sandbox(&self, record: &SandboxRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| Error::Store(format!("encoding sandbox {}: {e}", record.id)))?;
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut t = txn.open_table(SANDBOXES).map_err(store_err)?;
            t.insert(record.id.as_str(), bytes.as_slice())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    pub fn list_sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let t = txn.open_table(SANDBOXES).map_err(store_err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(store_err)? {
            let (k, v) = entry.map_err(store_err)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn remove_sandbox(&self, id: &str) -> Result<()> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut t = txn.open_table(SANDBOXES).map_err(store_err)?;
            t.remove(id).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }
}
