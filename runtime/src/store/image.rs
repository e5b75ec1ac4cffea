//! Image records and the names that point at them.

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::db::{store_err, Db, IMAGES, IMAGE_NAMES};
use crate::error::{Error, Result};
use crate::image::manifest::ImageConfigFile;

/// A pulled image. Its id is the config digest; its names live in their own table too, so a
/// name can move between images in one transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Bytes in the registry: config plus compressed layers.
    pub size: u64,
    /// The platform manifest (not the index) the layers came from.
    pub manifest_digest: String,
    pub layers: Vec<LayerRecord>,
    pub config: ImageConfigFile,
    pub pinned: bool,
    /// Unix nanoseconds of the pull that first stored it.
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub size: u64,
}

impl ImageRecord {
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.repo_tags.iter().chain(self.repo_digests.iter())
    }
}

fn decode(id: &str, bytes: &[u8]) -> Result<ImageRecord> {
    serde_json::from_slice(bytes).map_err(|e| Error::Store(format!("image record {id}: {e}")))
}

fn encode(r: &ImageRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(r).map_err(|e| Error::Store(format!("encoding image {}: {e}", r.id)))
}

fn is_tag(name: &str) -> bool {
    !name.contains('@')
}

impl Db {
    /// Store an image and point `names` at it, in one transaction. A name that pointed at another
    /// image moves; an image left with no names is deleted. Returns the ids of deleted images.
    pub fn put_image(&self, mut record: ImageRecord, names: &[String]) -> Result<Vec<String>> {
        let txn = self.db.begin_write().map_err(store_err)?;
        let mut dropped = Vec::new();
        {
            let mut images = txn.open_table(IMAGES).map_err(store_err)?;
            let mut index = txn.open_table(IMAGE_NAMES).map_err(store_err)?;
            if let Some(existing) = images.get(record.id.as_str()).map_err(store_err)? {
                let existing = decode(&record.id, existing.value())?;
                record.created_at = existing.created_at;
                record.pinned |= existing.pinned;
                record.repo_tags = existing.repo_tags;
                record.repo_digests = existing.repo_digests;
            }
            for name in names {
                let previous = index
                    .get(name.as_str())
                    .map_err(store_err)?
                    .map(|v| v.value().to_string());
                if let Some(prev) = previous.filter(|p| *p != record.id) {
                    let old = images
                        .get(prev.as_str())
                        .map_err(store_err)?
                        .map(|v| decode(&prev, v.value()))
                        .transpose()?;
                    if let Some(mut old) = old {
                        old.repo_tags.retain(|n| n != name);
                        old.repo_digests.retain(|n| n != name);
                        if old.names().next().is_none() {
                            images.remove(prev.as_str()).map_err(store_err)?;
                            dropped.push(prev);
                        } else {
                            images
                                .insert(prev.as_str(), encode(&old)?.as_slice())
                                .map_err(store_err)?;
                        }
                    }
                }
                index
                    .insert(name.as_str(), record.id.as_str())
                    .map_err(store_err)?;
                let list = if is_tag(name) {
                    &mut record.repo_tags
                } else {
                    &mut record.repo_digests
                };
                if !list.contains(name) {
                    list.push(name.clone());
                }
            }
            images
                .insert(record.id.as_str(), encode(&record)?.as_slice())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        Ok(dropped)
    }

    pub fn get_image(&self, id: &str) -> Result<Option<ImageRecord>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let images = txn.open_table(IMAGES).map_err(store_err)?;
        let found = images.get(id).map_err(store_err)?;
        found.map(|v| decode(id, v.value())).transpose()
    }

    pub fn image_id_by_name(&self, name: &str) -> Result<Option<String>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let index = txn.open_table(IMAGE_NAMES).map_err(store_err)?;
        let found = index.get(name).map_err(store_err)?;
        Ok(found.map(|v| v.value().to_string()))
    }

    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let images = txn.open_table(IMAGES).map_err(store_err)?;
        let mut out = Vec::with_capacity(images.len().map_err(store_err)? as usize);
        for entry in images.iter().map_err(store_err)? {
            let (k, v) = entry.map_err(store_err)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Delete an image and every name pointing at it. Returns false when it was not there.
    pub fn remove_image(&self, id: &str) -> Result<bool> {
        let txn = self.db.begin_write().map_err(store_err)?;
        let removed = {
            let mut images = txn.open_table(IMAGES).map_err(store_err)?;
            let mut index = txn.open_table(IMAGE_NAMES).map_err(store_err)?;
            let record = images
                .remove(id)
                .map_err(store_err)?
                .map(|v| decode(id, v.value()))
                .transpose()?;
            if let Some(record) = &record {
                for name in record.names() {
                    let points_here = index
                        .get(name.as_str())
                        .map_err(store_err)?
                        .is_some_and(|v| v.value() == id);
                    if points_here {
                        index.remove(name.as_str()).map_err(store_err)?;
                    }
                }
            }
            record.is_some()
        };
        txn.commit().map_err(store_err)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 1,
            manifest_digest: "m".into(),
            layers: vec![],
            config: ImageConfigFile::default(),
            pinned: false,
            created_at: 0,
        }
    }

    #[test]
    fn names_move_and_orphans_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("meta.db")).unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(db
            .put_image(record("a"), &names(&["r:1", "r:2", "r@d1"]))
            .unwrap()
            .is_empty());
        let a = db.get_image("a").unwrap().unwrap();
        assert_eq!(a.repo_tags, ["r:1", "r:2"]);
        assert_eq!(a.repo_digests, ["r@d1"]);
        // r:1 moves to b; a keeps r:2.
        assert!(db
            .put_image(record("b"), &names(&["r:1"]))
            .unwrap()
            .is_empty());
        assert_eq!(db.image_id_by_name("r:1").unwrap().as_deref(), Some("b"));
        assert_eq!(db.get_image("a").unwrap().unwrap().repo_tags, ["r:2"]);
        // Moving a's last names away deletes a.
        let dropped = db.put_image(record("b"), &names(&["r:2", "r@d1"])).unwrap();
        assert_eq!(dropped, ["a"]);
        assert!(db.get_image("a").unwrap().is_none());
        assert_eq!(db.list_images().unwrap().len(), 1);
        // Reopen: still there.
        drop(db);
        let db = Db::open(&dir.path().join("meta.db")).unwrap();
        let b = db.get_image("b").unwrap().unwrap();
        assert_eq!(b.repo_tags, ["r:1", "r:2"]);
        assert!(db.remove_image("b").unwrap());
        assert!(!db.remove_image("b").unwrap());
        assert!(db.image_id_by_name("r:1").unwrap().is_none());
    }

    #[test]
    fn second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let _db = Db::open(&path).unwrap();
        let err = Db::open(&path).err().unwrap().to_string();
        assert!(err.contains("in use"), "{err}");
    }
}
