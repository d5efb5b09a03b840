//! BGP passwords (TCP-MD5, RFC 2385) from the secrets directory.
//!
//! Without Kubernetes a Secret is a directory of files, the layout the
//! kubelet uses when it mounts one: a BGPPeer's `password.secretKeyRef`
//! `{name, key}` (or BGPConfiguration `nodeMeshPassword`) is the file
//! `<secrets dir>/<name>/<key>`, its whole content the password, less one
//! trailing newline (what `echo pw > file` adds; Kubernetes files have
//! none). A missing, unreadable or empty file holds the peer back (no
//! session without the password the user asked for) unless the reference
//! says `optional: true`, which Kubernetes reads as "no secret is fine":
//! then the session runs without MD5.
//!
//! The daemon reads the files at each converge and looks at them again
//! every second, so a changed file re-keys the session.

use std::path::{Path, PathBuf};

use brindle_model::bgp::SecretKeySelector;

/// The file a reference names.
pub fn secret_path(dir: &Path, reference: &SecretKeySelector) -> PathBuf {
    dir.join(&reference.name).join(&reference.key)
}

/// Why a password could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("password secret {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("password secret {path} is empty")]
    Empty { path: String },
}

/// What a reference resolves to now: `Ok(Some(password))`, `Ok(None)` for
/// an optional secret that is absent, or why the peer must wait.
pub fn read_password(
    dir: &Path,
    reference: &SecretKeySelector,
) -> Result<Option<String>, SecretError> {
    let path = secret_path(dir, reference);
    let shown = path.display().to_string();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            if text.is_empty() {
                Err(SecretError::Empty { path: shown })
            } else {
                Ok(Some(text))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && reference.optional == Some(true) => {
            Ok(None)
        }
        Err(e) => Err(SecretError::Unreadable {
            path: shown,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str, key: &str, optional: Option<bool>) -> SecretKeySelector {
        SecretKeySelector {
            name: name.into(),
            key: key.into(),
            optional,
        }
    }

    #[test]
    fn reads_the_kubernetes_layout_less_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tor")).unwrap();
        std::fs::write(dir.path().join("tor/password"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("tor/exact"), "two\n\n").unwrap();
        assert_eq!(
            read_password(dir.path(), &reference("tor", "password", None)),
            Ok(Some("s3cret".into()))
        );
        assert_eq!(
            read_password(dir.path(), &reference("tor", "exact", None)),
            Ok(Some("two\n".into()))
        );
    }

    #[test]
    fn missing_holds_the_peer_back_unless_optional() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_password(dir.path(), &reference("tor", "password", None));
        assert!(
            matches!(&missing, Err(SecretError::Unreadable { path, .. }) if path.ends_with("tor/password")),
            "{missing:?}"
        );
        assert_eq!(
            read_password(dir.path(), &reference("tor", "password", Some(true))),
            Ok(None)
        );
        std::fs::create_dir(dir.path().join("tor")).unwrap();
        std::fs::write(dir.path().join("tor/password"), "\n").unwrap();
        assert!(matches!(
            read_password(dir.path(), &reference("tor", "password", Some(true))),
            Err(SecretError::Empty { .. })
        ));
    }
}
