//! Ed25519 signatures over checkpoints `(seq, hash)`, over range boundaries (the gaps that
//! retention leaves), and over the ranges skipped inside an archive segment (one seal for all of
//! a boundary's skips), and the key file they come from.
//!
//! Events are never signed one by one: writers do not wait for signatures. A checkpoint signs the
//! chain head, which commits to everything before it.

use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::chain::Hash;

const CHECKPOINT_DOMAIN: &[u8] = b"jitgate-checkpoint-v1";
const GAP_DOMAIN: &[u8] = b"jitgate-gap-v1";
const SEAL_DOMAIN: &[u8] = b"jitgate-seal-v1";

/// The short name of a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(&crate::chain::sha256(public.as_bytes())[..8])
}

/// The private key that signs checkpoints.
pub struct Signer {
    key: SigningKey,
    id: String,
}

impl Signer {
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&key.verifying_key());
        Self { key, id }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::new(self.key.verifying_key())
    }

    /// Loads the key at `path`, or creates one there (mode 0600) if there is none. A key file that
    /// others can read is refused: whoever reads it can forge checkpoints.
    pub fn load_or_create(path: &Path) -> Result<Self, AuditError> {
        Ok(Self::from_seed(crate::key_file::load_or_create(
            path,
            "signing key",
        )?))
    }

    /// Writes the key to a new file, readable by its owner only. Never overwrites.
    pub fn write_new(&self, path: &Path) -> std::io::Result<()> {
        crate::key_file::write_new(path, &self.key.to_bytes())
    }

    pub fn sign_checkpoint(&self, seq: i64, hash: Hash, ts_us: i64) -> Checkpoint {
        let signature = self.key.sign(&checkpoint_message(seq, &hash, ts_us));
        Checkpoint {
            seq,
            hash,
            ts_us,
            key_id: self.id.clone(),
            signature: signature.to_bytes(),
        }
    }

    pub fn sign_gap(&self, span: Span) -> Gap {
        let signature = self.key.sign(&gap_message(&span));
        Gap {
            span,
            key_id: self.id.clone(),
            signature: signature.to_bytes(),
        }
    }

    /// Seals the skips inside the archived items of the range boundary `first_seq..=last_seq`,
    /// given the [`SkipDigest`] of all of them in order.
    pub fn sign_seal(&self, first_seq: i64, last_seq: i64, skips: Hash) -> Seal {
        let signature = self.key.sign(&seal_message(first_seq, last_seq, &skips));
        Seal {
            first_seq,
            last_seq,
            skips,
            key_id: self.id.clone(),
            signature: signature.to_bytes(),
        }
    }
}

/// A public key that verifies checkpoints, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: String,
}

impl PublicKey {
    fn new(key: VerifyingKey) -> Self {
        let id = key_id(&key);
        Self { key, id }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    pub fn from_hex(text: &str) -> Result<Self, AuditError> {
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| AuditError::Key(format!("not a hex Ed25519 public key: {text:?}")))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|e| AuditError::Key(format!("not an Ed25519 public key: {e}")))?;
        Ok(Self::new(key))
    }

    /// Reads public keys, one hex key per line (blank lines and `#` comments skipped).
    pub fn read_file(path: &Path) -> Result<Vec<Self>, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Self::from_hex)
            .collect()
    }

    pub fn verifies_checkpoint(&self, cp: &Checkpoint) -> bool {
        let message = checkpoint_message(cp.seq, &cp.hash, cp.ts_us);
        self.key
            .verify(&message, &Signature::from_bytes(&cp.signature))
            .is_ok()
    }

    pub fn verifies_gap(&self, gap: &Gap) -> bool {
        let message = gap_message(&gap.span);
        self.key
            .verify(&message, &Signature::from_bytes(&gap.signature))
            .is_ok()
    }

    pub fn verifies_seal(&self, seal: &Seal) -> bool {
        let message = seal_message(seal.first_seq, seal.last_seq, &seal.skips);
        self.key
            .verify(&message, &Signature::from_bytes(&seal.signature))
            .is_ok()
    }
}

fn checkpoint_message(seq: i64, hash: &Hash, ts_us: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&ts_us.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

fn gap_message(span: &Span) -> Vec<u8> {
    let mut m = Vec::with_capacity(GAP_DOMAIN.len() + 80);
    m.extend_from_slice(GAP_DOMAIN);
    m.extend_from_slice(&span.first_seq.to_be_bytes());
    m.extend_from_slice(&span.last_seq.to_be_bytes());
    m.extend_from_slice(&span.prev_hash);
    m.extend_from_slice(&span.last_hash);
    m
}

fn seal_message(first: i64, last: i64, skips: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(SEAL_DOMAIN.len() + 48);
    m.extend_from_slice(SEAL_DOMAIN);
    m.extend_from_slice(&first.to_be_bytes());
    m.extend_from_slice(&last.to_be_bytes());
    m.extend_from_slice(skips);
    m
}

/// A signed statement that the chain reached `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    #[serde(with = "hex::serde")]
    pub hash: Hash,
    pub ts_us: i64,
    pub key_id: String,
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

/// Events `first_seq..=last_seq` that are not given, and the chain across them: from
/// `prev_hash` (the hash before the first) to `last_hash` (the hash of the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub first_seq: i64,
    pub last_seq: i64,
    #[serde(with = "hex::serde")]
    pub prev_hash: Hash,
    #[serde(with = "hex::serde")]
    pub last_hash: Hash,
}

/// A signed range boundary: the span's events left the live log (deleted, or moved to an
/// archive segment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    #[serde(flatten)]
    pub span: Span,
    pub key_id: String,
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

/// The SHA-256 over a boundary's skips (the spans of events deleted between archived ones), in
/// order, that its [`Seal`] signs. Skips are not signed one by one: a sweep that archives one
/// event in ten would otherwise sign hundreds per batch.
pub struct SkipDigest(ring::digest::Context);

impl Default for SkipDigest {
    fn default() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl SkipDigest {
    pub fn add(&mut self, skip: &Span) {
        self.0.update(&skip.first_seq.to_be_bytes());
        self.0.update(&skip.last_seq.to_be_bytes());
        self.0.update(&skip.prev_hash);
        self.0.update(&skip.last_hash);
    }

    pub fn finish(self) -> Hash {
        crate::chain::into_hash(self.0.finish())
    }
}

/// One signature over every skip among the archived items of the range boundary
/// `first_seq..=last_seq`: removing an archived event and skipping over it instead changes
/// `skips`, and so fails the seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub first_seq: i64,
    pub last_seq: i64,
    /// The [`SkipDigest`] of the boundary's skips.
    #[serde(with = "hex::serde")]
    pub skips: Hash,
    pub key_id: String,
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_with_their_key_only() {
        let a = Signer::generate();
        let b = Signer::generate();
        let cp = a.sign_checkpoint(7, [3; 32], 1);
        assert!(a.public().verifies_checkpoint(&cp));
        assert!(!b.public().verifies_checkpoint(&cp));
        let mut forged = cp.clone();
        forged.seq = 8;
        assert!(!a.public().verifies_checkpoint(&forged));
    }

    #[test]
    fn seals_sign_their_range_and_skips() {
        let a = Signer::generate();
        let seal = a.sign_seal(3, 9, [4; 32]);
        assert!(a.public().verifies_seal(&seal));
        assert!(!Signer::generate().public().verifies_seal(&seal));
        for forged in [
            Seal {
                skips: [5; 32],
                ..seal.clone()
            },
            Seal {
                last_seq: 10,
                ..seal.clone()
            },
        ] {
            assert!(!a.public().verifies_seal(&forged));
        }
    }

    /// Archive segments written before seals hold gaps as flat JSON objects; they must still read.
    #[test]
    fn gaps_keep_their_flat_json_shape() {
        let gap = Signer::generate().sign_gap(Span {
            first_seq: 3,
            last_seq: 9,
            prev_hash: [1; 32],
            last_hash: [2; 32],
        });
        let json = serde_json::to_value(&gap).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "first_seq",
                "key_id",
                "last_hash",
                "last_seq",
                "prev_hash",
                "signature"
            ]
        );
        assert_eq!(serde_json::from_value::<Gap>(json).unwrap(), gap);
    }

    #[test]
    fn key_files_are_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = Signer::load_or_create(&path).unwrap();
        let b = Signer::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Signer::load_or_create(&path).err().unwrap().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn public_keys_round_trip_through_hex() {
        let a = Signer::generate();
        let p = PublicKey::from_hex(&a.public().to_hex()).unwrap();
        assert_eq!(p, a.public());
        assert!(PublicKey::from_hex("zz").is_err());
    }
}
