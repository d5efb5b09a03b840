//! AS_PATH and AS4_PATH values (RFC 4271 §4.3, RFC 6793): segments of
//! 32-bit AS numbers, their wire form for 2- and 4-octet sessions, and the
//! AS4_PATH merge and split for 2-octet peers.

use super::*;

/// AS_PATH segment type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsSegmentType {
    /// 1: unordered set.
    Set,
    /// 2: ordered sequence.
    Sequence,
    /// 3: confederation sequence (RFC 5065).
    ConfedSequence,
    /// 4: confederation set (RFC 5065).
    ConfedSet,
}

impl AsSegmentType {
    fn from_wire(value: u8) -> Option<AsSegmentType> {
        match value {
            1 => Some(AsSegmentType::Set),
            2 => Some(AsSegmentType::Sequence),
            3 => Some(AsSegmentType::ConfedSequence),
            4 => Some(AsSegmentType::ConfedSet),
            _ => None,
        }
    }
    fn to_wire(self) -> u8 {
        match self {
            AsSegmentType::Set => 1,
            AsSegmentType::Sequence => 2,
            AsSegmentType::ConfedSequence => 3,
            AsSegmentType::ConfedSet => 4,
        }
    }
    /// Confederation segments do not count toward the path length.
    pub fn is_confed(self) -> bool {
        matches!(
            self,
            AsSegmentType::ConfedSequence | AsSegmentType::ConfedSet
        )
    }
}

/// One AS_PATH segment. Never empty after decoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    /// Segment type.
    pub kind: AsSegmentType,
    /// AS numbers, 32-bit.
    pub asns: Vec<u32>,
}

impl AsSegment {
    /// Contribution to the path length (RFC 4271 §9.1.2.2: a set counts 1,
    /// RFC 5065: confederation segments count 0).
    pub fn path_len(&self) -> usize {
        match self.kind {
            AsSegmentType::Sequence => self.asns.len(),
            AsSegmentType::Set => 1,
            AsSegmentType::ConfedSequence | AsSegmentType::ConfedSet => 0,
        }
    }
}

/// An AS path with 32-bit AS numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    /// Segments, first is the most recently traversed.
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE (empty path if `asns` is empty).
    pub fn from_sequence(asns: impl IntoIterator<Item = u32>) -> AsPath {
        let asns: Vec<u32> = asns.into_iter().collect();
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: AsSegmentType::Sequence,
                asns,
            }],
        }
    }

    /// Length for best-path selection.
    pub fn path_len(&self) -> usize {
        self.segments.iter().map(AsSegment::path_len).sum()
    }

    /// The neighbouring AS: first AS of a leading AS_SEQUENCE.
    pub fn first_asn(&self) -> Option<u32> {
        self.segments
            .iter()
            .find(|s| !s.kind.is_confed())
            .filter(|s| s.kind == AsSegmentType::Sequence)
            .and_then(|s| s.asns.first().copied())
    }

    /// Whether `asn` appears anywhere (loop detection).
    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// How many times `asn` appears (loop detection that allows some,
    /// BIRD's `allow local as N`).
    pub fn count(&self, asn: u32) -> usize {
        self.segments
            .iter()
            .map(|s| s.asns.iter().filter(|a| **a == asn).count())
            .sum()
    }

    /// Prepends `asn` to the leading AS_SEQUENCE (or a new one).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(seg) if seg.kind == AsSegmentType::Sequence && seg.asns.len() < 255 => {
                seg.asns.insert(0, asn)
            }
            _ => self.segments.insert(
                0,
                AsSegment {
                    kind: AsSegmentType::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }

    /// Whether a 2-octet peer needs AS4_PATH: some AS outside the
    /// confederation segments (which AS4_PATH never carries) is above 65535.
    pub(super) fn needs_as4_path(&self) -> bool {
        self.segments
            .iter()
            .filter(|s| !s.kind.is_confed())
            .any(|s| s.asns.iter().any(|&a| a > u32::from(u16::MAX)))
    }

    /// Encodes segments with 2- or 4-octet AS numbers; 2-octet form maps AS
    /// numbers above 65535 to AS_TRANS. Segments longer than 255 are split,
    /// empty ones skipped.
    pub(super) fn encode_value(&self, four_octet: bool, skip_confed: bool, out: &mut Vec<u8>) {
        for seg in &self.segments {
            if skip_confed && seg.kind.is_confed() {
                continue;
            }
            for chunk in seg.asns.chunks(255) {
                out.push(seg.kind.to_wire());
                out.push(chunk.len() as u8);
                for &asn in chunk {
                    if four_octet {
                        out.extend_from_slice(&asn.to_be_bytes());
                    } else {
                        let narrow = u16::try_from(asn).unwrap_or(AS_TRANS as u16);
                        out.extend_from_slice(&narrow.to_be_bytes());
                    }
                }
            }
        }
    }

    /// Decodes an AS_PATH/AS4_PATH value; `None` if malformed per RFC 7606
    /// §7.2 (unknown segment type, zero-length segment, overrun, dangling octet).
    pub(super) fn decode_value(mut value: &[u8], four_octet: bool) -> Option<AsPath> {
        let width = if four_octet { 4 } else { 2 };
        let mut segments = Vec::new();
        while !value.is_empty() {
            let (r, kind) = be_u8::<_, ()>(value).ok()?;
            let (r, count) = be_u8::<_, ()>(r).ok()?;
            let kind = AsSegmentType::from_wire(kind)?;
            if count == 0 {
                return None;
            }
            let (r, raw) = take_bytes(r, usize::from(count) * width).ok()?;
            value = r;
            let asns = raw
                .chunks_exact(width)
                .map(|c| {
                    if four_octet {
                        u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                    } else {
                        u32::from(u16::from_be_bytes([c[0], c[1]]))
                    }
                })
                .collect();
            segments.push(AsSegment { kind, asns });
        }
        Some(AsPath { segments })
    }

    /// RFC 6793 §4.2.3: rebuild the real path from a 2-octet AS_PATH and the
    /// AS4_PATH. If AS4_PATH is longer than AS_PATH it is ignored; otherwise
    /// the leading (AS_PATH − AS4_PATH) ASes of AS_PATH are kept, followed by
    /// AS4_PATH. Confederation segments count 0 and are never taken from
    /// AS4_PATH.
    pub fn merge_as4(&self, as4_path: &AsPath) -> AsPath {
        let as4_segments: Vec<AsSegment> = as4_path
            .segments
            .iter()
            .filter(|s| !s.kind.is_confed())
            .cloned()
            .collect();
        let as4 = AsPath {
            segments: as4_segments,
        };
        let path_len = self.path_len();
        let as4_len = as4.path_len();
        if path_len < as4_len {
            return self.clone();
        }
        let mut keep = path_len - as4_len;
        let mut merged: Vec<AsSegment> = Vec::new();
        for seg in &self.segments {
            if seg.kind.is_confed() {
                merged.push(seg.clone());
                continue;
            }
            if keep == 0 {
                break;
            }
            match seg.kind {
                AsSegmentType::Set => {
                    merged.push(seg.clone());
                    keep -= 1;
                }
                _ => {
                    let take = keep.min(seg.asns.len());
                    merged.push(AsSegment {
                        kind: seg.kind,
                        asns: seg.asns[..take].to_vec(),
                    });
                    keep -= take;
                }
            }
        }
        for seg in as4.segments {
            // A sequence cut by the merge continues in AS4_PATH: rejoin it so
            // the result equals what the 4-octet speaker originally sent.
            match merged.last_mut() {
                Some(last)
                    if last.kind == AsSegmentType::Sequence
                        && seg.kind == AsSegmentType::Sequence
                        && last.asns.len() + seg.asns.len() <= 255 =>
                {
                    last.asns.extend_from_slice(&seg.asns)
                }
                _ => merged.push(seg),
            }
        }
        AsPath { segments: merged }
    }
}
