//! The per-host lock every ADD and DEL holds (as Calico's plugin takes
//! one), so concurrent calls for one container cannot both allocate; a
//! delegated IPAM plugin is told its caller holds it.

use std::path::PathBuf;
use std::time::Duration;

use brindle_datastore::lockfile::{lock_exclusive, open_private_file, LockGuard};

use super::errors::internal;
use super::spec::{CniError, ErrorCode, NetConf, DEFAULT_IPAM_LOCK_FILE};

/// How long ADD and DEL wait for the per-host lock (50 ADDs at once take
/// about a second in all) before answering "try again later".
const HOST_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Set in a delegated IPAM plugin's environment: its caller holds the lock.
pub(super) const LOCK_HELD_ENV: &str = "BRINDLE_CNI_LOCK_HELD";

pub(super) fn host_lock(conf: &NetConf) -> Result<LockGuard, CniError> {
    let path = PathBuf::from(
        conf.ipam_lock_file
            .as_deref()
            .unwrap_or(DEFAULT_IPAM_LOCK_FILE),
    );
    let file = open_private_file(&path)
        .map_err(|e| internal(&format!("the per-host CNI lock {}", path.display()), e))?;
    lock_exclusive(&file, &path, HOST_LOCK_TIMEOUT)
        .map_err(|e| CniError::new(ErrorCode::TryAgainLater, e.to_string()))
}
