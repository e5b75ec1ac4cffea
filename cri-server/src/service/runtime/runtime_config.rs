use crate::config::CgroupDriver;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Tells kubelet which cgroup driver to use so both agree on cgroup paths.
    pub(crate) async fn runtime_config(
        &self,
        _req: proto::RuntimeConfigRequest,
    ) -> Result<proto::RuntimeConfigResponse, CriError> {
        let driver = match self.config().cgroup_driver {
            CgroupDriver::Cgroupfs => proto::CgroupDriver::Cgroupfs,
        };
        Ok(proto::RuntimeConfigResponse {
            linux: Some(proto::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        })
    }
}
