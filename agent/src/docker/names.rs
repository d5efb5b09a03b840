//! Docker network ids and their names, remembered on disk.
//!
//! The plugin protocol names a network by id only, and a network's *name*
//! is its Brindle network (the endpoints' profile). dockerd's API tells the
//! name, but not always when the driver needs it: while dockerd restores
//! its containers after a restart it calls `CreateEndpoint` for every
//! `--restart` container *before* it serves its API, so a driver that asked
//! then would wait for dockerd while dockerd waits for the driver. The
//! names are therefore learned while the API answers (after
//! `CreateNetwork`, at start-up, at `CreateEndpoint`) and kept in
//! `<state dir>/networks.json`, which survives both a brindle-docker and a
//! dockerd restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where the names are kept unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/brindle/docker";

#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}: {error}")]
pub struct NamesError {
    path: String,
    what: &'static str,
    error: String,
}

/// Network id → name, in memory and in `networks.json`.
#[derive(Debug)]
pub struct NetworkNames {
    path: PathBuf,
    names: Mutex<BTreeMap<String, String>>,
}

impl NetworkNames {
    /// Reads `<dir>/networks.json` (none yet: no names), creating `dir`.
    pub fn open(dir: &Path) -> Result<Self, NamesError> {
        let path = dir.join("networks.json");
        let error = |what, error: &dyn std::fmt::Display| NamesError {
            path: path.display().to_string(),
            what,
            error: error.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| error("creating the directory", &e))?;
        let names = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error("decoding", &e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(error("reading", &e)),
        };
        Ok(Self {
            path,
            names: Mutex::new(names),
        })
    }

    pub fn get(&self, id: &str) -> Option<String> {
        self.lock().get(id).cloned()
    }

    /// Records `id`'s name (written through when it is new).
    pub fn insert(&self, id: &str, name: &str) -> Result<(), NamesError> {
        let mut names = self.lock();
        if names.get(id).map(String::as_str) == Some(name) {
            return Ok(());
        }
        names.insert(id.to_owned(), name.to_owned());
        self.save(&names)
    }

    /// Forgets a deleted network.
    pub fn remove(&self, id: &str) -> Result<(), NamesError> {
        let mut names = self.lock();
        if names.remove(id).is_none() {
            return Ok(());
        }
        self.save(&names)
    }

    /// Replaces every name with dockerd's list of this driver's networks.
    pub fn replace_all(&self, current: BTreeMap<String, String>) -> Result<(), NamesError> {
        let mut names = self.lock();
        if *names == current {
            return Ok(());
        }
        *names = current;
        self.save(&names)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding it cannot leave the map half-changed.
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a temporary file and renames it over the old one: a crash
    /// leaves the old or the new list, never half of one.
    fn save(&self, names: &BTreeMap<String, String>) -> Result<(), NamesError> {
        let error = |what, error: std::io::Error| NamesError {
            path: self.path.display().to_string(),
            what,
            error: error.to_string(),
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(names).unwrap_or_default();
        let mut file = std::fs::File::create(&tmp).map_err(|e| error("creating", e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| error("writing", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| error("renaming", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_a_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let names = NetworkNames::open(dir.path()).unwrap();
        assert_eq!(names.get("n1"), None);
        names.insert("n1", "red").unwrap();
        names.insert("n2", "blue").unwrap();
        names.remove("n2").unwrap();
        let again = NetworkNames::open(dir.path()).unwrap();
        assert_eq!(again.get("n1").as_deref(), Some("red"));
        assert_eq!(again.get("n2"), None);
        again
            .replace_all(BTreeMap::from([("n3".into(), "green".into())]))
            .unwrap();
        let third = NetworkNames::open(dir.path()).unwrap();
        assert_eq!(third.get("n1"), None);
        assert_eq!(third.get("n3").as_deref(), Some("green"));
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("networks.json"), b"{not json").unwrap();
        let e = NetworkNames::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("networks.json") && e.contains("decoding"), "{e}");
    }
}
