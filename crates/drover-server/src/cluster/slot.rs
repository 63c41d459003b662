//! `DriverSlot`: the driver of the current term, if this server leads. Handlers hold the slot
//! and reach whichever driver leads now; between terms (a standby) they get `DriverError`.

use std::sync::{Arc, RwLock};

use drover_core::{Coordinator, Input, Reply, RequestId, WorkerSummary};

use crate::driver::{Answer, DriverError, DriverHandle};

#[derive(Clone, Default)]
pub struct DriverSlot(Arc<RwLock<Option<DriverHandle>>>);

impl DriverSlot {
    /// The leading driver's handle; `DriverError` on a standby.
    pub fn current(&self) -> Result<DriverHandle, DriverError> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(DriverError::Gone)
    }

    pub(super) fn set(&self, handle: Option<DriverHandle>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = handle;
    }

    pub async fn request(
        &self,
        make: impl FnOnce(RequestId) -> Input,
    ) -> Result<Reply, DriverError> {
        self.current()?.request(make).await
    }

    pub async fn request_committed(
        &self,
        make: impl FnOnce(RequestId) -> Input,
    ) -> Result<Answer, DriverError> {
        self.current()?.request_committed(make).await
    }

    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Coordinator) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        self.current()?.query(f).await
    }

    pub async fn workers(&self) -> Result<Vec<WorkerSummary>, DriverError> {
        self.current()?.workers().await
    }
}
