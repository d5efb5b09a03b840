//! The typed resource store every writer goes through, against the embedded
//! store and a real etcd: identity metadata, validation, create-if-absent,
//! read-modify-write without lost updates, and IPAM's default pool created
//! once however many nodes start together.

#[path = "ipam_common.rs"]
mod common;

use brindle_datastore::ipam::Ipam;
use brindle_datastore::resources::{ResourceError, ResourceStore, POOLS_GUARD_KEY};
use brindle_datastore::Datastore;
use brindle_model::resource::Kind;
use brindle_model::{parse_one, Resource};

macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let store = super::common::embedded().await;
                super::$scenario(store.ds.clone()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                let store = super::common::etcd().await;
                super::$scenario(store.ds.clone()).await;
            }
        }
    )*};
}

on_both_stores!(
    apply_and_create_keep_identity_and_validate,
    modify_loses_no_update,
    default_pool_is_created_once,
);

fn profile(name: &str) -> Resource {
    parse_one(&format!(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: {name}\nspec: {{}}\n"
    ))
    .unwrap()
}

async fn apply_and_create_keep_identity_and_validate(ds: Datastore) {
    let store = ResourceStore::new(ds.clone());
    let first = store.apply(profile("blue")).await.unwrap();
    let uid = first.metadata().uid.clone().expect("a uid on create");
    assert!(first.metadata().creation_timestamp.is_some());
    assert!(first.metadata().resource_version.is_some());
    // Applied again (a repeated CNI ADD, a node restart): same identity.
    let again = store.apply(profile("blue")).await.unwrap();
    assert_eq!(again.metadata().uid.as_deref(), Some(uid.as_str()));
    // Create of what exists is None, not an error, and changes nothing.
    assert!(store.create(profile("blue")).await.unwrap().is_none());
    assert!(store.create(profile("red")).await.unwrap().is_some());
    // Invalid input is refused by field, nothing written.
    let bad = parse_one(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: bad\nspec:\n  cidr: 10.0.0.0/8\n",
    )
    .map(|mut r| {
        if let Resource::IPPool(p) = &mut r {
            p.spec.cidr = "not-a-cidr".into();
        }
        r
    })
    .unwrap();
    let err = store.apply(bad).await.unwrap_err();
    assert!(matches!(err, ResourceError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("spec.cidr"), "{err}");
    assert!(store
        .get(Kind::IPPool, None, "bad")
        .await
        .unwrap()
        .is_none());
    // An owner removes its resource whatever it holds.
    ds.put("/brindle/resources/v3/profiles/garbled", "{not json")
        .await
        .unwrap();
    assert!(store.remove(Kind::Profile, None, "garbled").await.unwrap());
    assert!(!store.remove(Kind::Profile, None, "garbled").await.unwrap());
}

async fn modify_loses_no_update(ds: Datastore) {
    // Eight writers each add their own label to one resource at once.
    let writers = (0..8).map(|i| {
        let store = ResourceStore::new(ds.clone());
        tokio::spawn(async move {
            store
                .modify(
                    Kind::Profile,
                    None,
                    "shared",
                    || profile("shared"),
                    move |r| {
                        r.metadata_mut()
                            .labels
                            .insert(format!("writer-{i}"), "yes".into());
                    },
                )
                .await
                .unwrap()
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    let stored = ResourceStore::new(ds)
        .get(Kind::Profile, None, "shared")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.metadata().labels.len(), 8, "{:?}", stored.metadata());
    assert!(stored.metadata().uid.is_some());
}

async fn default_pool_is_created_once(ds: Datastore) {
    let starts = (0..8).map(|_| {
        let ipam = Ipam::new(ds.clone());
        tokio::spawn(async move {
            ipam.ensure_default_pool("10.244.0.0/16".parse().unwrap())
                .await
                .unwrap()
        })
    });
    let mut created = 0;
    for s in starts {
        created += usize::from(s.await.unwrap());
    }
    assert_eq!(created, 1, "one of eight starting nodes creates the pool");
    let pools = ResourceStore::new(ds.clone())
        .list(Kind::IPPool, None)
        .await
        .unwrap();
    assert_eq!(pools.len(), 1);
    assert!(pools[0].metadata().uid.is_some(), "written with identity");
    assert!(
        ds.get(POOLS_GUARD_KEY).await.unwrap().is_some(),
        "the pools guard was bumped, as brindlectl's pool writes do"
    );
}
