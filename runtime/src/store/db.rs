use std::path::Path;
use std::sync::Arc;

use redb::{Database, TableDefinition};

use crate::error::{Error, Result};

/// Image id → JSON [`super::image::ImageRecord`].
pub(crate) const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Image name (`repo:tag` or `repo@digest`) → image id.
pub(crate) const IMAGE_NAMES: TableDefinition<&str, &str> = TableDefinition::new("image_names");
/// Sandbox id → JSON [`crate::sandbox::SandboxRecord`].
pub(crate) const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");
/// Container id → JSON [`crate::container::ContainerRecord`].
pub(crate) const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

pub(crate) fn store_err(e: impl Into<redb::Error>) -> Error {
    Error::Store(e.into().to_string())
}

/// The opened database. Cloning the `Arc` around it is how components share it.
pub struct Db {
    pub(crate) db: Arc<Database>,
}

impl Db {
    /// Open (or create) the database file; fails clearly if another process holds it.
    pub fn open(path: &Path) -> Result<Db> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                Error::Store(format!("{} is in use by another process", path.display()))
            }
            other => Error::Store(format!("opening {}: {other}", path.display())),
        })?;
        // Create every table up front so read transactions never see a missing table.
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(IMAGES).map_err(store_err)?;
        txn.open_table(IMAGE_NAMES).map_err(store_err)?;
        txn.open_table(SANDBOXES).map_err(store_err)?;
        txn.open_table(CONTAINERS).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(Db { db: Arc::new(db) })
    }

    /// The database itself, for crates below the runtime (`network` keeps its IPAM tables
    /// in it) so that every record lives in one ACID store.
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }
}
