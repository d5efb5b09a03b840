//! Running the real `brindlectl` binary against a real store: an embedded
//! SQLite file in a private temp dir, or a real etcd started by the testbed.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brindle_model::{parse_documents, Resource};

/// A store the binary is pointed at; removed on drop (also on panic).
pub enum Store {
    Embedded(tempfile::TempDir),
    Etcd(brindle_testbed::Etcd),
}

impl Store {
    /// An empty embedded store (created: readers refuse a missing file).
    pub fn embedded() -> Store {
        let store = Store::missing_embedded();
        let url = store.url();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(brindle_datastore::Datastore::open(Some(&url)))
            .expect("create the embedded store");
        store
    }

    /// An embedded store URL whose file does not exist yet.
    pub fn missing_embedded() -> Store {
        Store::Embedded(
            tempfile::Builder::new()
                .prefix(&format!("brindlectl-test-{}-", std::process::id()))
                .tempdir()
                .expect("temp dir"),
        )
    }

    pub fn etcd() -> Store {
        Store::Etcd(brindle_testbed::Etcd::start().expect("start etcd"))
    }

    pub fn url(&self) -> String {
        match self {
            Store::Embedded(dir) => format!("file://{}/store.db", dir.path().display()),
            Store::Etcd(etcd) => {
                format!("etcd://{}", etcd.client_url().trim_start_matches("http://"))
            }
        }
    }

    /// Runs `brindlectl --datastore URL args...`.
    pub fn run(&self, args: &[&str]) -> Outcome {
        run_with(Some(&self.url()), args, None)
    }

    /// Same, with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Outcome {
        run_with(Some(&self.url()), args, Some(input))
    }

    /// Runs and insists on success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.code, 0,
            "brindlectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Every resource of every kind in the store, via `get KIND -A -o yaml`.
    pub fn everything(&self) -> Vec<Resource> {
        let mut all = Vec::new();
        for kind in brindle_model::Kind::ALL {
            let yaml = self.ok(&["get", kind.plural(), "-A", "-o", "yaml"]);
            all.extend(parse_documents(&yaml).expect("get -o yaml reads back"));
        }
        all
    }
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_with(url: Option<&str>, args: &[&str], stdin: Option<&str>) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brindlectl"));
    cmd.env_remove("BRINDLE_DATASTORE")
        .env_remove("BRINDLE_LOG");
    if let Some(url) = url {
        cmd.arg("--datastore").arg(url);
    }
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn brindlectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for brindlectl");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Files in `dir` with one of `extensions`, sorted.
pub fn files_in(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    files.sort();
    files
}

/// The resource without what the store adds (resourceVersion, uid,
/// creationTimestamp), for comparing with what was applied.
pub fn without_store_metadata(mut r: Resource) -> Resource {
    let meta = r.metadata_mut();
    meta.resource_version = None;
    meta.uid = None;
    meta.creation_timestamp = None;
    meta.generation = None;
    r
}

pub const POOL_A: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.50.0.0/16
";

/// `POOL_A` with another name and CIDR.
pub fn pool(name: &str, cidr: &str) -> String {
    POOL_A.replace("pool-a", name).replace("10.50.0.0/16", cidr)
}

/// Writes `text` to a file in a temp dir; returns both (keep the dir alive).
pub fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("brindlectl-input-{}-", std::process::id()))
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write input");
    (dir, path.display().to_string())
}
