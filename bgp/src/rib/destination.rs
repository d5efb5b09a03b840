//! One prefix's paths as the RIB stores them: best first, then the rest of
//! the multipath set, then the others, inline when there is only one; and
//! the snapshot of the multipath set that tells whether an operation changed
//! it.

use std::sync::Arc;

use super::PathAttrs;

#[derive(Debug, Clone)]
pub(super) struct Path {
    pub(super) source: u32,
    /// Kept for a peer in graceful restart until it announces it again.
    pub(super) stale: bool,
    pub(super) attrs: Arc<PathAttrs>,
}

/// All paths for one prefix: best first, then the rest of the multipath
/// set, then the others. Most prefixes have exactly one path, selected; that
/// case is stored inline, without a heap allocation.
#[derive(Debug)]
pub(super) enum Destination {
    /// A single path, which is the best route.
    One(Path),
    Many(Box<ManyPaths>),
}

#[derive(Debug, Default)]
pub(super) struct ManyPaths {
    /// Length of the multipath set at the front of `paths` (0: no best).
    pub(super) multipath: u8,
    pub(super) paths: Vec<Path>,
}

impl Destination {
    pub(super) fn empty() -> Self {
        Destination::Many(Box::default())
    }

    pub(super) fn paths(&self) -> &[Path] {
        match self {
            Destination::One(p) => std::slice::from_ref(p),
            Destination::Many(m) => &m.paths,
        }
    }

    pub(super) fn paths_mut(&mut self) -> &mut [Path] {
        match self {
            Destination::One(p) => std::slice::from_mut(p),
            Destination::Many(m) => &mut m.paths,
        }
    }

    pub(super) fn multipath(&self) -> usize {
        match self {
            Destination::One(_) => 1,
            Destination::Many(m) => usize::from(m.multipath).min(m.paths.len()),
        }
    }

    /// The paths, for modification; put them back with [`Self::store`].
    pub(super) fn take_paths(&mut self) -> Vec<Path> {
        match self {
            Destination::One(p) => vec![p.clone()],
            Destination::Many(m) => std::mem::take(&mut m.paths),
        }
    }

    pub(super) fn store(&mut self, mut paths: Vec<Path>, multipath: usize) {
        *self = if paths.len() == 1 && multipath == 1 {
            match paths.pop() {
                Some(p) => Destination::One(p),
                None => Destination::empty(),
            }
        } else {
            paths.shrink_to_fit();
            Destination::Many(Box::new(ManyPaths {
                multipath: u8::try_from(multipath).unwrap_or(u8::MAX),
                paths,
            }))
        };
    }
}

/// The multipath set of a destination, best first, to detect changes.
/// The best path apart, so the common single-path case allocates nothing.
#[derive(PartialEq)]
pub(super) struct Snapshot {
    pub(super) first: Option<(u32, ByPtr)>,
    pub(super) rest: Vec<(u32, ByPtr)>,
}

impl Snapshot {
    pub(super) fn of(dest: &Destination) -> Self {
        let set = &dest.paths()[..dest.multipath()];
        let entry = |p: &Path| (p.source, ByPtr(Arc::clone(&p.attrs)));
        Self {
            first: set.first().map(entry),
            rest: set.iter().skip(1).map(entry).collect(),
        }
    }
}

/// Interned attributes compare by identity.
pub(super) struct ByPtr(pub(super) Arc<PathAttrs>);

impl PartialEq for ByPtr {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
