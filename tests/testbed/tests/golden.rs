//! Golden files for the config renderers. Run with
//! `BRINDLE_UPDATE_GOLDEN=1` to rewrite them after an intended change, then
//! review the diff.

use std::net::IpAddr;
use std::path::PathBuf;

use brindle_testbed::{bird_config, frr_config, gobgp_config, BgpConfig, Neighbor};

fn speaker() -> BgpConfig {
    BgpConfig {
        listen_port: 1179,
        ..BgpConfig::new("10.0.1.1".parse().unwrap(), 65001)
    }
    .neighbor("10.0.1.2".parse().unwrap(), 65002)
    .with_neighbor(Neighbor {
        port: Some(1790),
        password: Some("s3cret".into()),
        passive: true,
        multihop: true,
        ..Neighbor::new("fd00:2::1".parse::<IpAddr>().unwrap(), 65003)
    })
    .originate("10.10.1.0/24")
    .originate("fd10:1::/64")
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BRINDLE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BRINDLE_UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

#[test]
fn bird_config_matches_golden() {
    check("bird.conf", &bird_config(&speaker()));
}

#[test]
fn frr_config_matches_golden() {
    check("frr.conf", &frr_config(&speaker()));
}

#[test]
fn gobgp_config_matches_golden() {
    check("gobgp.toml", &gobgp_config(&speaker()));
}

/// The rendered configs are not just stable but accepted by the daemons'
/// own parsers (`bird -p`, `bgpd -C`, `gobgpd -d`).
#[test]
fn rendered_configs_parse_in_the_real_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let bird = write("bird.conf", bird_config(&speaker()));
    let frr = write("bgpd.conf", frr_config(&speaker()));
    let gobgp = write("gobgpd.toml", gobgp_config(&speaker()));
    let checks: [&[&str]; 3] = [
        &["bird", "-p", "-c", &bird],
        &[
            "/usr/lib/frr/bgpd",
            "-C",
            "-f",
            &frr,
            "-u",
            "root",
            "-g",
            "frrvty",
            "--log",
            "stdout",
        ],
        &["gobgpd", "-d", "-f", &gobgp],
    ];
    for argv in checks {
        let out = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{argv:?} rejected the config:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
