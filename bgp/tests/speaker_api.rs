//! The speaker's API without any peer session: configuration errors,
//! peer registry errors, origination into the Loc-RIB with the subscription
//! replay, and the handle after shutdown. Listens on 127.0.0.1 with an
//! ephemeral port, so it needs neither root nor a namespace.

use std::net::{IpAddr, Ipv4Addr};

use brindle_bgp::packet::{Origin, PathAttributes};
use brindle_bgp::speaker::{
    BestRouteChange, PathAttrs, PeerConfig, PeerState, RouteSource, Speaker, SpeakerConfig,
    SpeakerError,
};

fn config() -> SpeakerConfig {
    let mut c = SpeakerConfig::new(64512, Ipv4Addr::new(192, 0, 2, 1));
    c.listen_addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    c.listen_port = 0;
    c
}

fn attrs() -> PathAttrs {
    PathAttrs {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            ..Default::default()
        },
        next_hop: None,
    }
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let mut c = config();
    c.router_id = Ipv4Addr::UNSPECIFIED;
    assert!(matches!(
        Speaker::start(c).await,
        Err(SpeakerError::InvalidConfig(_))
    ));

    let mut c = config();
    let mut p = PeerConfig::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 65000);
    p.hold_time = 2;
    c.peers.push(p);
    assert!(matches!(
        Speaker::start(c).await,
        Err(SpeakerError::InvalidConfig(_))
    ));

    // 192.0.2.1 (TEST-NET-1) is not an address of this host.
    let mut c = config();
    c.listen_addresses = vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))];
    assert!(matches!(
        Speaker::start(c).await,
        Err(SpeakerError::Listen { .. })
    ));
}

#[tokio::test]
async fn peer_registry() {
    let speaker = Speaker::start(config()).await.unwrap();
    // A passive peer never dials, so nothing leaves this host.
    let address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    let mut p = PeerConfig::new(address, 65000);
    p.passive = true;
    speaker.add_peer(p.clone()).await.unwrap();
    assert!(matches!(
        speaker.add_peer(p.clone()).await,
        Err(SpeakerError::DuplicatePeer(a)) if a == address
    ));
    let peers = speaker.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].config, p);
    assert_ne!(peers[0].state, PeerState::Established);
    assert_eq!(peers[0].prefixes_received, 0);

    let mut changed = p.clone();
    changed.hold_time = 30;
    speaker.update_peer(changed.clone()).await.unwrap();
    assert_eq!(speaker.peers().await.unwrap()[0].config, changed);

    speaker.remove_peer(address).await.unwrap();
    assert!(matches!(
        speaker.remove_peer(address).await,
        Err(SpeakerError::UnknownPeer(_))
    ));
    assert!(matches!(
        speaker.update_peer(p).await,
        Err(SpeakerError::UnknownPeer(_))
    ));
    assert!(speaker.peers().await.unwrap().is_empty());
    speaker.shutdown().await.unwrap();
}

#[tokio::test]
async fn originate_subscribe_and_shutdown() {
    let speaker = Speaker::start(config()).await.unwrap();
    let a = "10.244.1.0/26".parse().unwrap();
    let b = "fd00:10:244::/64".parse().unwrap();
    speaker.originate(a, attrs()).await.unwrap();

    // A subscriber first sees the current Loc-RIB, then changes.
    let mut sub = speaker.subscribe();
    match sub.recv().await {
        Some(BestRouteChange::Best(route)) => {
            assert_eq!(route.prefix, a);
            assert_eq!(route.source, RouteSource::Local);
            assert!(route.next_hops.is_empty());
        }
        other => panic!("expected the replayed route, got {other:?}"),
    }
    speaker.originate(b, attrs()).await.unwrap();
    assert_eq!(sub.recv().await.map(|c| c.prefix()), Some(b));
    speaker.withdraw(a).await.unwrap();
    assert_eq!(sub.recv().await, Some(BestRouteChange::Withdrawn(a)));
    // Withdrawing what is not originated changes nothing.
    speaker.withdraw(a).await.unwrap();

    let routes = speaker.routes().await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].prefix, b);

    let clone = speaker.clone();
    speaker.shutdown().await.unwrap();
    assert_eq!(sub.recv().await, None, "the stream ends with the speaker");
    assert!(matches!(clone.peers().await, Err(SpeakerError::Stopped)));
    assert!(matches!(
        clone.originate(a, attrs()).await,
        Err(SpeakerError::Stopped)
    ));
}

/// The declarative calls: the speaker diffs the whole set it is given.
#[tokio::test]
async fn declarative_peers_and_originations() {
    let speaker = Speaker::start(config()).await.unwrap();
    let peer = |last: u8, asn: u32| {
        let mut p = PeerConfig::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), asn);
        p.passive = true;
        p
    };
    let addresses = |speaker: &Speaker| {
        let speaker = speaker.clone();
        async move {
            speaker
                .peers()
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.config.address, p.config.remote_asn))
                .collect::<Vec<_>>()
        }
    };
    let failed = speaker
        .set_peers(vec![peer(10, 65010), peer(11, 65011)])
        .await
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(addresses(&speaker).await.len(), 2);
    // One changed, one gone, one new, one invalid (reported, others applied).
    let mut bad = peer(13, 65013);
    bad.hold_time = 1;
    let failed = speaker
        .set_peers(vec![peer(10, 65099), peer(12, 65012), bad])
        .await
        .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13)));
    assert!(matches!(failed[0].1, SpeakerError::InvalidConfig(_)));
    let now = addresses(&speaker).await;
    assert_eq!(
        now,
        vec![
            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 65099),
            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12)), 65012),
        ]
    );

    let a: ipnet::IpNet = "10.65.0.0/26".parse().unwrap();
    let b: ipnet::IpNet = "10.65.0.64/26".parse().unwrap();
    let change = speaker.set_originations(vec![a, b], attrs()).await.unwrap();
    assert_eq!(change.originated, vec![a, b]);
    let change = speaker.set_originations(vec![b], attrs()).await.unwrap();
    assert_eq!((change.originated, change.withdrawn), (vec![], vec![a]));
    let routes: Vec<_> = speaker
        .routes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.prefix)
        .collect();
    assert_eq!(routes, vec![b]);
    speaker.shutdown().await.unwrap();
}
