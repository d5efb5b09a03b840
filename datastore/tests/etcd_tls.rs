//! The etcd backend over TLS with client-certificate authentication
//! (`etcds://…?ca=…&cert=…&key=…`), against a real etcd.
//!
//! `brindle_testbed::Etcd` starts plain-HTTP etcd only, so this test launches
//! etcd itself (through the testbed's `Process`, which kills it on drop) on
//! 127.0.0.1 with free ports, a private temp dir, and certificates it makes
//! with the `openssl` CLI.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brindle_datastore::Datastore;
use brindle_testbed::Process;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_pki(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=brindle-test-ca"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, cn, ext) in [
        (
            "server",
            "etcd",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "client",
            "brindle",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let subj = format!("/CN={cn}");
        let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
        let mut req = vec!["req", "-new", "-subj", &subj];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &req);
        let (pem, extfile) = (format!("{name}.pem"), format!("{name}.ext"));
        openssl(
            dir,
            &[
                "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", &pem, "-extfile", &extfile,
            ],
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let dir = tempfile::Builder::new()
        .prefix(&format!("brindle-ds-tls-{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let d = dir.path();
    make_pki(d);
    let (client_port, peer_port) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut cmd = Command::new("etcd");
    cmd.args([
        "--name=tls".to_string(),
        format!("--data-dir={}", d.join("data").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=tls={peer_url}"),
        format!("--cert-file={}", d.join("server.pem").display()),
        format!("--key-file={}", d.join("server.key").display()),
        format!("--trusted-ca-file={}", d.join("ca.pem").display()),
        "--client-cert-auth".into(),
    ]);
    let etcd = Process::spawn("etcd with TLS", cmd, &d.join("etcd.log")).expect("spawn etcd");

    let pki = |f: &str| d.join(f).display().to_string();
    let url = format!(
        "etcds://127.0.0.1:{client_port}?ca={}&cert={}&key={}&timeout=2",
        pki("ca.pem"),
        pki("client.pem"),
        pki("client.key")
    );
    // Ready = our own client gets an answer (bounded wait, not a timing assertion).
    let mut ds = None;
    for _ in 0..100 {
        match Datastore::open(Some(&url)).await {
            Ok(d) => {
                ds = Some(d);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let ds = ds.unwrap_or_else(|| panic!("etcd with TLS never answered; log:\n{}", etcd.log()));
    assert!(ds.describe().contains("TLS"), "{}", ds.describe());
    let kv = ds.create("/calico/tls", "ok").await.unwrap();
    assert_eq!(ds.get("/calico/tls").await.unwrap().unwrap(), kv);

    // Without a client certificate the server refuses us.
    let no_cert = format!(
        "etcds://127.0.0.1:{client_port}?ca={}&timeout=2",
        pki("ca.pem")
    );
    let err = Datastore::open(Some(&no_cert))
        .await
        .expect_err("no client cert");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{client_port}")),
        "{err}"
    );

    // A missing file is named.
    let missing = format!(
        "etcds://127.0.0.1:{client_port}?ca={}/nope.pem",
        d.display()
    );
    let err = Datastore::open(Some(&missing))
        .await
        .expect_err("missing CA");
    assert!(err.to_string().contains("nope.pem"), "{err}");

    drop(ds);
    drop(etcd); // stop etcd before its data dir goes
}
