//! StartContainer: the init made at create is released into `execve`; nothing else is
//! left to do, which is why a start costs one round trip to the shim.

use super::{ContainerState, Containers};
use crate::error::{Error, Result};
use crate::shim_client::PodShim;

impl Containers {
    pub async fn start(&self, id: &str) -> Result<()> {
        let record = self.get(id)?;
        let _guard = self.locks.lock(&record.id).await;
        let mut record = self.get(&record.id)?;
        let span = tracing::info_span!("container", pod = %record.pod_id, container = %record.id);
        let _e = span.enter();
        if record.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}, not created",
                record.id, record.state
            )));
        }
        let shim = PodShim::new(&record.pod_dir);
        let started_at = crate::clock::now_nanos();
        match shim.start_container(&record.id).await {
            Ok(()) => {
                record.state = ContainerState::Running;
                record.started_at = started_at;
                self.db.put_container(&record)?;
                self.ledger.events.publish(
                    &record.id,
                    &record.pod_id,
                    crate::events::ContainerEventKind::Started,
                );
                self.watch(&record);
                tracing::info!("container started");
                Ok(())
            }
            Err(e) => {
                // The init exits 127 when its execve fails; record why it never ran.
                let _ = shim
                    .wait(&record.id, std::time::Duration::from_secs(2))
                    .await;
                let mut record = self.get(&record.id)?;
                if record.state != ContainerState::Exited {
                    record.state = ContainerState::Exited;
                    record.exit_code = 128;
                    record.finished_at = crate::clock::now_nanos();
                }
                record.reason = "StartError".into();
                record.message = crate::error::chain(&e);
                self.db.put_container(&record)?;
                Err(e.into())
            }
        }
    }
}
