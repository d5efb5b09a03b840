//! Golden files for the config renderers. Run with
//! `BRINDLE_UPDATE_GOLDEN=1` to rewrite them after an intended change, then
//! review the diff.

use std::net::IpAddr;
use std::path::PathBuf;

use brindle_testbed::{bird_config, frr_config, gobgp_config, BgpConfig, Neighbor, Route};

fn speaker() -> BgpConfig {
    BgpConfig {
        listen_port: 1179,
        ..BgpConfig::new("10.0.1.1".parse().unwrap(), 65001)
    }
    .with_neighbor(Neighbor {
        ttl_security: Some(1),
        ..Neighbor::new("10.0.1.2".parse::<IpAddr>().unwrap(), 65002)
    })
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

/// Everything else the generator renders: a route reflector with a client,
/// graceful restart, routes with attributes, a 2-octet-only BIRD that
/// prepends.
fn reflector() -> BgpConfig {
    let mut config = BgpConfig::new("10.0.1.1".parse().unwrap(), 65001)
        .with_neighbor(Neighbor {
            rr_client: true,
            ..Neighbor::new("10.0.1.2".parse().unwrap(), 65001)
        })
        .neighbor("10.0.1.3".parse().unwrap(), 4_200_000_000)
        .route(Route {
            med: Some(5),
            local_pref: Some(150),
            communities: vec![(65020, 7)],
            large_communities: vec![(65020, 3, 4)],
            ..Route::plain("10.20.0.0/24")
        })
        .originate("10.21.0.0/24");
    config.graceful_restart = Some(30);
    config.cluster_id = Some("10.0.1.100".parse().unwrap());
    config.as4 = false;
    config.prepend = vec![65010];
    config
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

#[test]
fn reflector_configs_match_golden() {
    check("reflector-bird.conf", &bird_config(&reflector()));
    check("reflector-frr.conf", &frr_config(&reflector()));
    check("reflector-gobgp.toml", &gobgp_config(&reflector()));
    let route = &reflector().originate[0];
    assert_eq!(
        route.gobgp_add_args().join(" "),
        "global rib add 10.20.0.0/24 origin igp med 5 local-pref 150 community 65020:7 \
         large-community 65020:3:4 -a ipv4"
    );
}

/// A neighbor with BFD (BIRD and FRR only: GoBGP has none).
fn with_bfd() -> BgpConfig {
    BgpConfig::new("10.0.1.1".parse().unwrap(), 65001).with_neighbor(Neighbor {
        bfd: true,
        ..Neighbor::new("10.0.1.2".parse().unwrap(), 65002)
    })
}

#[test]
fn bfd_configs_match_golden() {
    check("bfd-bird.conf", &bird_config(&with_bfd()));
    check("bfd-frr.conf", &frr_config(&with_bfd()));
    let gobgp = std::panic::catch_unwind(|| gobgp_config(&with_bfd()));
    assert!(gobgp.is_err(), "GoBGP must refuse a BFD neighbor");
}

/// The rendered configs are not just stable but accepted by the daemons'
/// own parsers (`bird -p`, `bgpd -C`, `gobgpd -d`).
#[test]
fn rendered_configs_parse_in_the_real_daemons() {
    for config in [speaker(), reflector()] {
        parses_in_the_real_daemons(&config);
    }
    let config = with_bfd();
    let dir = tempfile::tempdir().unwrap();
    let bird = dir.path().join("bird.conf");
    std::fs::write(&bird, bird_config(&config)).unwrap();
    let frr = dir.path().join("bgpd.conf");
    std::fs::write(&frr, frr_config(&config)).unwrap();
    check_argv(&["bird", "-p", "-c", bird.to_str().unwrap()]);
    check_argv(&frr_check_argv(frr.to_str().unwrap()));
    let bfdd = dir.path().join("bfdd.conf");
    std::fs::write(&bfdd, brindle_testbed::FRR_BFDD_CONFIG).unwrap();
    let mut argv = frr_check_argv(bfdd.to_str().unwrap());
    argv[0] = "/usr/lib/frr/bfdd";
    check_argv(&argv);
}

fn frr_check_argv(path: &str) -> [&str; 10] {
    [
        "/usr/lib/frr/bgpd",
        "-C",
        "-f",
        path,
        "-u",
        "root",
        "-g",
        "frrvty",
        "--log",
        "stdout",
    ]
}

fn check_argv(argv: &[&str]) {
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

fn parses_in_the_real_daemons(config: &BgpConfig) {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let bird = write("bird.conf", bird_config(config));
    let frr = write("bgpd.conf", frr_config(config));
    let gobgp = write("gobgpd.toml", gobgp_config(config));
    check_argv(&["bird", "-p", "-c", &bird]);
    check_argv(&frr_check_argv(&frr));
    check_argv(&["gobgpd", "-d", "-f", &gobgp]);
}
