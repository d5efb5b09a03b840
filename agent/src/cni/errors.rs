//! How datastore, resource-store and IPAM errors become CNI error codes:
//! what may pass is "try again later", bad configuration is "invalid
//! configuration", the rest is internal.

use brindle_datastore::ipam::IpamError;
use brindle_datastore::resources::ResourceError;
use brindle_datastore::Datastore;

use super::spec::{CniError, ErrorCode, NetConf};

/// Datastore trouble that may pass (a lost race, an unreachable etcd, a
/// busy SQLite file) is "try again later"; a bad URL is bad configuration.
pub(super) fn store_error_code(e: &brindle_datastore::Error) -> ErrorCode {
    use brindle_datastore::Error as E;
    match e {
        E::InvalidUrl { .. } => ErrorCode::InvalidConfig,
        E::Conflict { .. } | E::Etcd { .. } | E::Io { .. } | E::Sqlite { .. } | E::Lock { .. } => {
            ErrorCode::TryAgainLater
        }
        _ => ErrorCode::Internal,
    }
}

pub(super) fn store_error(what: &str, e: brindle_datastore::Error) -> CniError {
    CniError::new(store_error_code(&e), format!("{what}: {e}"))
}

pub(super) fn resource_error(what: &str, e: ResourceError) -> CniError {
    let code = match &e {
        ResourceError::Datastore(inner) => store_error_code(inner),
        ResourceError::Invalid(_) => ErrorCode::InvalidConfig,
        ResourceError::Refused(_) | ResourceError::Contended => ErrorCode::TryAgainLater,
        _ => ErrorCode::Internal,
    };
    CniError::new(code, format!("{what}: {e}"))
}

pub(super) fn ipam_error(what: &str, e: IpamError) -> CniError {
    let code = match &e {
        IpamError::Store(inner) => store_error_code(inner),
        IpamError::TooManyConflicts { .. } => ErrorCode::TryAgainLater,
        IpamError::NotInPool(_) | IpamError::Invalid(_) | IpamError::NoPool { .. } => {
            ErrorCode::InvalidConfig
        }
        _ => ErrorCode::Internal,
    };
    CniError::new(code, format!("{what}: {e}"))
}

pub(super) async fn open_store(conf: &NetConf) -> Result<Datastore, CniError> {
    Datastore::open(conf.datastore.as_deref())
        .await
        .map_err(|e| store_error("opening the datastore", e))
}

pub(super) fn internal(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(ErrorCode::Internal, format!("{what}: {e}"))
}
