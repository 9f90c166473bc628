//! RFC 6962 / RFC 9162 Merkle trees over the ledger's entries: hashing, tree heads, inclusion
//! proofs and their verification. `docs/ledger.md` describes the same tree for anyone who
//! wants to check a proof without this code.
//!
//! - leaf hash: `SHA-256(0x00 || leaf data)`; the leaf data of a ledger entry is the 32 raw
//!   bytes of its `entry_hash` (the hex after `sha256:`, decoded);
//! - interior node: `SHA-256(0x01 || left || right)`;
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two below `n`: the left
//!   subtree holds leaves `[0, k)`, the right one `[k, n)`. The empty tree's head is
//!   `SHA-256("")`.
//!
//! Every node of such a tree is either a *perfect* subtree (`2^level` leaves starting at a
//! multiple of `2^level`, the same in every tree that contains it) or lies on the right edge.
//! The server stores only perfect nodes, addressed by `(level, index)`, and derives everything
//! else from them: [`root`] and [`inclusion_proof`] ask a [`NodeSource`] for the perfect nodes
//! they need, so a caller can first collect the addresses ([`needed_nodes`]), fetch them in one
//! query, then compute.

use sha2::{Digest, Sha256};

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// Deepest level a tree can have: sizes are below 2^63.
pub const LEVELS_MAX: u32 = 63;

/// The hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The head of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The perfect subtree of `2^level` leaves starting at leaf `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

/// Where perfect nodes come from (storage, a map, a vector of leaves).
pub trait NodeSource {
    fn node(&mut self, id: NodeId) -> Hash;
}

impl<F: FnMut(NodeId) -> Hash> NodeSource for F {
    fn node(&mut self, id: NodeId) -> Hash {
        self(id)
    }
}

/// The largest power of two strictly below `n` (`n > 1`).
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// The hash of leaves `[start, end)`, where `start` is a multiple of the largest power of two
/// not above `end - start` (true of every subtree of an RFC 6962 tree).
fn subtree(start: u64, end: u64, source: &mut impl NodeSource) -> Hash {
    let width = end - start;
    if width.is_power_of_two() {
        let level = width.trailing_zeros();
        return source.node(NodeId {
            level,
            index: start >> level,
        });
    }
    let k = split(width);
    let left = subtree(start, start + k, source);
    let right = subtree(start + k, end, source);
    node_hash(&left, &right)
}

/// The tree head over the first `size` leaves.
pub fn root(size: u64, source: &mut impl NodeSource) -> Hash {
    if size == 0 {
        return empty_root();
    }
    subtree(0, size, source)
}

/// The audit path of leaf `index` in the tree of `size` leaves, from the leaf's sibling up
/// (RFC 6962 `PATH`), or `None` when `index >= size`.
pub fn inclusion_proof(index: u64, size: u64, source: &mut impl NodeSource) -> Option<Vec<Hash>> {
    if index >= size {
        return None;
    }
    let mut path = Vec::new();
    // Walk down from the root, remembering each sibling; the path lists them bottom-up.
    let (mut start, mut end) = (0, size);
    while end - start > 1 {
        let k = split(end - start);
        if index < start + k {
            path.push(subtree(start + k, end, source));
            end = start + k;
        } else {
            path.push(subtree(start, start + k, source));
            start += k;
        }
    }
    path.reverse();
    Some(path)
}

/// The perfect nodes [`root`] and [`inclusion_proof`] read for leaf `index` (when given) in a
/// tree of `size` leaves.
pub fn needed_nodes(index: Option<u64>, size: u64) -> Vec<NodeId> {
    let mut ids = Vec::new();
    let mut record = |id: NodeId| {
        ids.push(id);
        [0u8; 32]
    };
    root(size, &mut record);
    if let Some(index) = index {
        inclusion_proof(index, size, &mut record);
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Why an inclusion proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("an audit path of {found} hashes does not fit leaf {index} of a tree of {size}")]
    WrongLength { index: u64, size: u64, found: usize },
    #[error("the audit path leads to {computed}, not to the tree head {expected}")]
    RootMismatch { computed: String, expected: String },
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose head is `root`
/// (RFC 9162, section 2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut hash = *leaf;
    let wrong_length = ProofError::WrongLength {
        index,
        size,
        found: path.len(),
    };
    for sibling in path {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            hash = node_hash(sibling, &hash);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(wrong_length);
    }
    if &hash != root {
        return Err(ProofError::RootMismatch {
            computed: hex::encode(hash),
            expected: hex::encode(root),
        });
    }
    Ok(())
}

/// The right edge of a growing tree: for each level, the perfect node that is still waiting
/// for its right sibling. Appending a leaf completes the perfect nodes above it, which are
/// handed to `emit` (leaf included, at level 0), so a builder stores each node once.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// `pending[level]` is set exactly when bit `level` of `size` is.
    pending: Vec<Option<Hash>>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves, from its perfect nodes
    /// ([`Frontier::needed`] lists which).
    pub fn of(size: u64, source: &mut impl NodeSource) -> Self {
        let mut pending = vec![None; 64];
        for level in 0..64u32 {
            if (size >> level) & 1 == 1 {
                pending[level as usize] = Some(source.node(NodeId {
                    level,
                    index: (size >> level) - 1,
                }));
            }
        }
        Self { size, pending }
    }

    /// The perfect nodes [`Frontier::of`] reads.
    pub fn needed(size: u64) -> Vec<NodeId> {
        (0..64u32)
            .filter(|level| (size >> level) & 1 == 1)
            .map(|level| NodeId {
                level,
                index: (size >> level) - 1,
            })
            .collect()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; `emit` receives every perfect node this completes.
    pub fn push(&mut self, leaf: Hash, mut emit: impl FnMut(NodeId, Hash)) {
        if self.pending.len() < 64 {
            self.pending.resize(64, None);
        }
        let index = self.size;
        emit(NodeId { level: 0, index }, leaf);
        let mut hash = leaf;
        let mut level = 0u32;
        while (index >> level) & 1 == 1 {
            let left = self.pending[level as usize].take().unwrap_or_default();
            hash = node_hash(&left, &hash);
            level += 1;
            emit(
                NodeId {
                    level,
                    index: index >> level,
                },
                hash,
            );
        }
        self.pending[level as usize] = Some(hash);
        self.size += 1;
    }

    /// The tree head of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for hash in self.pending.iter().flatten() {
            acc = Some(match acc {
                None => *hash,
                Some(right) => node_hash(hash, &right),
            });
        }
        acc.unwrap_or_else(empty_root)
    }
}

/// The leaf data of a ledger entry: the raw bytes of its `sha256:<hex>` hash.
pub fn entry_leaf_hash(entry_hash: &str) -> Option<Hash> {
    let hex_part = entry_hash.strip_prefix("sha256:")?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut bytes).ok()?;
    Some(leaf_hash(&bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// RFC 6962 test vectors (certificate-transparency / transparency-dev/merkle): the leaves
    /// and the tree head after each of them.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf index, tree size, audit path) from the same vectors.
    const PROOFS: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    fn leaves(data: &[&str]) -> Vec<Hash> {
        data.iter()
            .map(|d| leaf_hash(&hex::decode(d).unwrap()))
            .collect()
    }

    /// Every perfect node of a tree over `leaves`, built with a [`Frontier`].
    fn nodes(leaves: &[Hash]) -> HashMap<NodeId, Hash> {
        let mut nodes = HashMap::new();
        let mut frontier = Frontier::default();
        for leaf in leaves {
            frontier.push(*leaf, |id, hash| {
                nodes.insert(id, hash);
            });
        }
        nodes
    }

    /// The RFC's recursive definition, straight from the text, as an independent reference.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn tree_heads_match_the_rfc_6962_vectors() {
        let leaves = leaves(&LEAVES);
        let nodes = nodes(&leaves);
        for size in 0..=8u64 {
            let mut source = |id: NodeId| nodes[&id];
            assert_eq!(hex::encode(root(size, &mut source)), ROOTS[size as usize]);
            let mut frontier = Frontier::default();
            for leaf in &leaves[..size as usize] {
                frontier.push(*leaf, |_, _| {});
            }
            assert_eq!(hex::encode(frontier.root()), ROOTS[size as usize]);
        }
    }

    #[test]
    fn inclusion_proofs_match_the_rfc_6962_vectors_and_verify() {
        let leaves = leaves(&LEAVES);
        let nodes = nodes(&leaves);
        for (index, size, expected) in PROOFS {
            let mut source = |id: NodeId| nodes[&id];
            let path = inclusion_proof(index, size, &mut source).unwrap();
            let path_hex: Vec<String> = path.iter().map(hex::encode).collect();
            assert_eq!(path_hex, expected, "leaf {index} of {size}");
            let head: Hash = hex::decode(ROOTS[size as usize])
                .unwrap()
                .try_into()
                .unwrap();
            verify_inclusion(&leaves[index as usize], index, size, &path, &head).unwrap();
        }
    }

    #[test]
    fn every_proof_of_every_size_verifies_and_nothing_else_does() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let nodes = nodes(&leaves);
        for size in 1..=leaves.len() as u64 {
            let head = reference_root(&leaves[..size as usize]);
            let mut source = |id: NodeId| nodes[&id];
            assert_eq!(root(size, &mut source), head, "size {size}");
            for index in 0..size {
                let path = inclusion_proof(index, size, &mut source).unwrap();
                let leaf = &leaves[index as usize];
                verify_inclusion(leaf, index, size, &path, &head).unwrap();
                // A wrong leaf, index, size or path hash is refused.
                let other = leaf_hash(b"not in the tree");
                assert!(verify_inclusion(&other, index, size, &path, &head).is_err());
                if size > 1 {
                    let wrong_index = (index + 1) % size;
                    assert!(verify_inclusion(leaf, wrong_index, size, &path, &head).is_err());
                    let mut bent = path.clone();
                    bent[0][0] ^= 1;
                    assert!(verify_inclusion(leaf, index, size, &bent, &head).is_err());
                }
                // (A wrong size alone may verify: the size is bound by the signed head, and
                // the checkpoint verifier takes it from there.)
                let mut longer = path.clone();
                longer.push(head);
                assert!(verify_inclusion(leaf, index, size, &longer, &head).is_err());
            }
            assert!(inclusion_proof(size, size, &mut source).is_none());
        }
    }

    #[test]
    fn a_frontier_resumes_from_stored_nodes() {
        let leaves: Vec<Hash> = (0..40u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let all = nodes(&leaves);
        for cut in 0..leaves.len() {
            let mut source = |id: NodeId| all[&id];
            let mut frontier = Frontier::of(cut as u64, &mut source);
            assert_eq!(
                Frontier::needed(cut as u64).len(),
                (cut as u64).count_ones() as usize
            );
            let mut emitted = HashMap::new();
            for leaf in &leaves[cut..] {
                frontier.push(*leaf, |id, hash| {
                    emitted.insert(id, hash);
                });
            }
            assert_eq!(frontier.root(), reference_root(&leaves));
            for (id, hash) in emitted {
                assert_eq!(all[&id], hash, "{id:?} after resuming at {cut}");
            }
        }
    }

    #[test]
    fn needed_nodes_are_exactly_the_ones_read() {
        for size in 1..50u64 {
            for index in [0, size / 2, size - 1] {
                let ids = needed_nodes(Some(index), size);
                let mut read = Vec::new();
                let mut source = |id: NodeId| {
                    read.push(id);
                    [0u8; 32]
                };
                root(size, &mut source);
                inclusion_proof(index, size, &mut source);
                read.sort();
                read.dedup();
                assert_eq!(ids, read);
                // A proof reads O(log² n) nodes at most.
                assert!(ids.len() <= 64 * 64);
            }
        }
    }

    #[test]
    fn an_entry_leaf_is_the_raw_entry_hash() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(entry_leaf_hash(&hash), Some(leaf_hash(&[0xab; 32])));
        assert_eq!(entry_leaf_hash("sha256:zz"), None);
        assert_eq!(entry_leaf_hash(&"ab".repeat(32)), None);
    }
}
