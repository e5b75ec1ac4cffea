//! Container records: one row per container, rewritten atomically on every state change.

use redb::ReadableTable;

use super::db::{store_err, Db, CONTAINERS};
use crate::container::ContainerRecord;
use crate::error::{Error, Result};

fn decode(id: &str, bytes: &[u8]) -> Result<ContainerRecord> {
    serde_json::from_slice(bytes).map_err(|e| Error::Store(format!("container record {id}: {e}")))
}

impl Db {
    pub fn put_container(&self, record: &ContainerRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| Error::Store(format!("encoding container {}: {e}", record.id)))?;
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut t = txn.open_table(CONTAINERS).map_err(store_err)?;
            t.insert(record.id.as_str(), bytes.as_slice())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    pub fn get_container(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let t = txn.open_table(CONTAINERS).map_err(store_err)?;
        match t.get(id).map_err(store_err)? {
            Some(v) => decode(id, v.value()).map(Some),
            None => Ok(None),
        }
    }

    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let t = txn.open_table(CONTAINERS).map_err(store_err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(store_err)? {
            let (k, v) = entry.map_err(store_err)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut t = txn.open_table(CONTAINERS).map_err(store_err)?;
            t.remove(id).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }
}
