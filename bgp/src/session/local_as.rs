//! Per-peer local AS (`PeerConfig::local_asn`): the RIB builds exports with
//! the speaker's AS; towards a peer we present another AS to, the AS_PATH
//! is fixed up here, as BIRD's per-protocol `local as` would have built it.
//! Pure; never panics.

use crate::packet::{AsPath, AsSegmentType, PathAttributes};

/// The attributes to send instead of `attributes`, or `None` when they are
/// right as they are.
///
/// * The RIB saw an eBGP peer (`remote_asn != speaker_asn`) and prepended
///   the speaker's AS: replace it with `local_asn`, or remove it when the
///   session is really iBGP (`remote_asn == local_asn`).
/// * The RIB saw an iBGP peer (`remote_asn == speaker_asn`) but the session
///   is eBGP: prepend `local_asn`.
pub(crate) fn apply_local_as(
    attributes: &PathAttributes,
    speaker_asn: u32,
    local_asn: u32,
    remote_asn: u32,
) -> Option<PathAttributes> {
    if local_asn == speaker_asn {
        return None;
    }
    let mut out = attributes.clone();
    let path = out.as_path.get_or_insert_with(AsPath::default);
    if remote_asn != speaker_asn {
        let first = path.segments.first_mut()?;
        if first.kind != AsSegmentType::Sequence || first.asns.first() != Some(&speaker_asn) {
            return None;
        }
        if remote_asn == local_asn {
            first.asns.remove(0);
            if first.asns.is_empty() {
                path.segments.remove(0);
            }
        } else {
            first.asns[0] = local_asn;
        }
    } else {
        path.prepend(local_asn);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_path(asns: &[u32]) -> PathAttributes {
        PathAttributes {
            as_path: Some(AsPath::from_sequence(asns.iter().copied())),
            ..Default::default()
        }
    }

    #[test]
    fn same_as_changes_nothing() {
        assert_eq!(
            apply_local_as(&with_path(&[64512]), 64512, 64512, 65000),
            None
        );
    }

    #[test]
    fn ebgp_replaces_the_prepended_speaker_as() {
        let out = apply_local_as(&with_path(&[64512, 65010]), 64512, 64999, 65000).unwrap();
        assert_eq!(out.as_path, Some(AsPath::from_sequence([64999, 65010])));
    }

    #[test]
    fn ibgp_through_the_override_removes_it() {
        let out = apply_local_as(&with_path(&[64512]), 64512, 65000, 65000).unwrap();
        assert_eq!(out.as_path, Some(AsPath::default()));
        let out = apply_local_as(&with_path(&[64512, 65010]), 64512, 65000, 65000).unwrap();
        assert_eq!(out.as_path, Some(AsPath::from_sequence([65010])));
    }

    #[test]
    fn ebgp_the_rib_took_for_ibgp_prepends() {
        let out = apply_local_as(&with_path(&[]), 64512, 64999, 64512).unwrap();
        assert_eq!(out.as_path, Some(AsPath::from_sequence([64999])));
    }

    #[test]
    fn path_not_built_by_us_is_left_alone() {
        assert_eq!(
            apply_local_as(&with_path(&[65010]), 64512, 64999, 65000),
            None
        );
    }
}
