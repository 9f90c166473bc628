//! Signed checkpoints in the C2SP formats, so existing transparency-log tools read them:
//!
//! - <https://c2sp.org/tlog-checkpoint>: the body is `<origin>\n<tree size>\n<base64 root>\n`;
//! - <https://c2sp.org/signed-note>: the note is the body, an empty line, then one line per
//!   signature, `— <key name> <base64(key id || signature)>\n` (U+2014, a space, the name, a
//!   space), with Ed25519 signatures over the body's bytes;
//! - key id: the first 4 bytes of `SHA-256(key name || 0x0A || 0x01 || public key)`;
//! - verifier key: `<name>+<8 hex digits of key id>+<base64(0x01 || public key)>`; private key:
//!   `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>` (golang.org/x/mod/sumdb/note).
//!
//! Ed25519 is aws-lc-rs's; nothing here does its own cryptography.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature algorithm byte of Ed25519 in key ids and keys.
const ALG_ED25519: u8 = 0x01;
/// Signature lines read from one note at most.
const SIGNATURES_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the key name must be non-empty, without spaces or '+'")]
    BadName,
    #[error("the key is not in the `{0}` format")]
    BadKey(&'static str),
    #[error("the key's id does not match its name and public key")]
    KeyIdMismatch,
    #[error("the note is malformed: {0}")]
    Malformed(&'static str),
    #[error("the note carries no signature by {0}")]
    NotSigned(String),
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
    #[error("the checkpoint body is malformed: {0}")]
    BadCheckpoint(&'static str),
    #[error("the system's random source failed")]
    Random,
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::BadName);
    }
    Ok(())
}

/// The 4-byte key id of an Ed25519 key, as a big-endian number.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0x0a, ALG_ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Signs notes with an Ed25519 key. Its `Debug` never shows the key.
pub struct NoteSigner {
    name: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
    verifier: NoteVerifier,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("verifier", &self.verifier.vkey())
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::BadKey("Ed25519 seed"))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::BadKey("Ed25519 public key"))?;
        let verifier = NoteVerifier {
            name: name.to_string(),
            key_id: key_id(name, &public),
            public,
        };
        Ok(Self {
            name: name.to_string(),
            seed,
            pair,
            verifier,
        })
    }

    /// A new random key.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| NoteError::Random)?;
        Self::from_seed(name, seed)
    }

    /// Reads `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        const FORMAT: &str = "PRIVATE+KEY+<name>+<hex id>+<base64 key>";
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey(FORMAT))?;
        // The key's base64 may hold '+': it is everything after the second separator.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey(FORMAT));
        };
        let id = parse_key_id(id).ok_or(NoteError::BadKey(FORMAT))?;
        let bytes = BASE64.decode(key).map_err(|_| NoteError::BadKey(FORMAT))?;
        let Some((&ALG_ED25519, Ok(seed))) = bytes
            .split_first()
            .map(|(alg, rest)| (alg, <[u8; 32]>::try_from(rest)))
        else {
            return Err(NoteError::BadKey(FORMAT));
        };
        let signer = Self::from_seed(name, seed)?;
        if signer.verifier.key_id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// The key in the format [`NoteSigner::parse`] reads. A secret.
    pub fn private_key_text(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.verifier.key_id,
            BASE64.encode(key)
        )
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// The signed note: `body` (which must end with a newline), an empty line and this key's
    /// signature line.
    pub fn sign(&self, body: &str) -> Result<String, NoteError> {
        if !body.ends_with('\n') || body.contains("\n\n") || body.starts_with('\n') {
            return Err(NoteError::Malformed(
                "a body is non-empty lines, each ending with a newline",
            ));
        }
        let signature = self.pair.sign(body.as_bytes());
        let mut blob = self.verifier.key_id.to_be_bytes().to_vec();
        blob.extend_from_slice(signature.as_ref());
        Ok(format!(
            "{body}\n\u{2014} {} {}\n",
            self.name,
            BASE64.encode(blob)
        ))
    }
}

fn parse_key_id(hex_text: &str) -> Option<u32> {
    if hex_text.len() != 8 || !hex_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex_text, 16).ok()
}

/// Checks notes signed by one Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    public: [u8; 32],
}

impl NoteVerifier {
    /// Reads `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        const FORMAT: &str = "<name>+<hex id>+<base64 key>";
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey(FORMAT));
        };
        check_name(name)?;
        let id = parse_key_id(id).ok_or(NoteError::BadKey(FORMAT))?;
        let bytes = BASE64.decode(key).map_err(|_| NoteError::BadKey(FORMAT))?;
        let Some((&ALG_ED25519, Ok(public))) = bytes
            .split_first()
            .map(|(alg, rest)| (alg, <[u8; 32]>::try_from(rest)))
        else {
            return Err(NoteError::BadKey(FORMAT));
        };
        if key_id(name, &public) != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(Self {
            name: name.to_string(),
            key_id: id,
            public,
        })
    }

    /// `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn vkey(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.public);
        format!("{}+{:08x}+{}", self.name, self.key_id, BASE64.encode(key))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// Checks that `note` carries a valid signature by this key; answers the signed body.
    /// Signatures by other keys are ignored, as the signed-note spec says.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no empty line before the signatures"))?;
        let (body, signatures) = (&note[..split + 1], &note[split + 2..]);
        if !signatures.ends_with('\n') {
            return Err(NoteError::Malformed("the note must end with a newline"));
        }
        let mut found = false;
        for line in signatures.lines().take(SIGNATURES_MAX) {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or(NoteError::Malformed("a signature line starts with \"— \""))?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "a signature line is `— <name> <base64>`",
            ))?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if name != self.name || blob.len() < 4 || blob[..4] != self.key_id.to_be_bytes() {
                continue;
            }
            found = true;
            let key = UnparsedPublicKey::new(&ED25519, &self.public);
            if key.verify(body.as_bytes(), &blob[4..]).is_ok() {
                return Ok(body);
            }
        }
        Err(if found {
            NoteError::BadSignature(self.name.clone())
        } else {
            NoteError::NotSigned(self.name.clone())
        })
    }
}

/// A tlog checkpoint body: the log's origin, its size and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBody {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
}

impl CheckpointBody {
    /// `<origin>\n<tree size>\n<base64 root hash>\n`.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root_hash)
        )
    }

    /// Reads a body; extension lines after the third are allowed and ignored.
    pub fn parse(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::BadCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .filter(|s| s.len() == 1 || !s.starts_with('0'))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(NoteError::BadCheckpoint("the size is not a decimal number"))?;
        let root = lines
            .next()
            .and_then(|r| BASE64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or(NoteError::BadCheckpoint("the root is not a base64 SHA-256"))?;
        Ok(Self {
            origin: origin.to_string(),
            tree_size: size,
            root_hash: root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("example.org/ledger", [7u8; 32]).unwrap()
    }

    fn body() -> CheckpointBody {
        CheckpointBody {
            origin: "example.org/ledger".into(),
            tree_size: 12,
            root_hash: [0xab; 32],
        }
    }

    #[test]
    fn a_note_has_the_c2sp_layout_and_an_independently_computed_signature() {
        let signer = signer();
        let text = body().text();
        assert_eq!(
            text,
            format!("example.org/ledger\n12\n{}\n", BASE64.encode([0xab; 32]))
        );
        let note = signer.sign(&text).unwrap();
        let (head, signature_line) = note.split_once("\n\n").unwrap();
        assert_eq!(format!("{head}\n"), text);
        let blob = signature_line
            .strip_prefix("\u{2014} example.org/ledger ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .map(|b64| BASE64.decode(b64).unwrap())
            .unwrap();
        assert_eq!(blob.len(), 4 + 64);

        // The key id and signature, recomputed from their definitions.
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let mut id_input = b"example.org/ledger\n\x01".to_vec();
        id_input.extend_from_slice(&public);
        assert_eq!(blob[..4], Sha256::digest(&id_input)[..4]);
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(text.as_bytes(), &blob[4..])
            .unwrap();

        let verifier = signer.verifier();
        assert_eq!(verifier.verify(&note).unwrap(), text);
        let mut vkey_key = vec![1u8];
        vkey_key.extend_from_slice(&public);
        assert_eq!(
            verifier.vkey(),
            format!(
                "example.org/ledger+{}+{}",
                hex::encode(&blob[..4]),
                BASE64.encode(vkey_key)
            )
        );
        assert_eq!(&NoteVerifier::parse(&verifier.vkey()).unwrap(), verifier);
        assert_eq!(CheckpointBody::parse(&text).unwrap(), body());
    }

    #[test]
    fn a_changed_note_or_another_key_is_refused() {
        let signer = signer();
        let note = signer.sign(&body().text()).unwrap();
        let verifier = signer.verifier();
        let changed = note.replacen("\n12\n", "\n13\n", 1);
        assert_eq!(
            verifier.verify(&changed),
            Err(NoteError::BadSignature("example.org/ledger".into()))
        );
        let other = NoteSigner::from_seed("example.org/ledger", [8u8; 32]).unwrap();
        assert!(matches!(
            other.verifier().verify(&note),
            Err(NoteError::NotSigned(_))
        ));
        assert!(verifier.verify("no signatures").is_err());
        // A second signature by an unknown key is ignored.
        let cosigned = format!(
            "{note}\u{2014} witness.example {}\n",
            BASE64.encode([0u8; 68])
        );
        assert!(verifier.verify(&cosigned).is_ok());
    }

    #[test]
    fn keys_round_trip_in_the_note_formats() {
        let signer = NoteSigner::generate("ampflow-ledger").unwrap();
        let text = signer.private_key_text();
        assert!(text.starts_with("PRIVATE+KEY+ampflow-ledger+"));
        let again = NoteSigner::parse(&text).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        // The base64 after the fourth '+' may itself hold a '+'.
        let secret = text.splitn(5, '+').nth(4).unwrap();
        assert!(secret.len() >= 40, "{secret}");
        assert!(!format!("{signer:?}").contains(secret));
        // A key id that does not match is refused.
        let mut parts: Vec<&str> = text.split('+').collect();
        parts[3] = "00000000";
        assert_eq!(
            NoteSigner::parse(&parts.join("+")).err(),
            Some(NoteError::KeyIdMismatch)
        );
        for bad in [
            "",
            "a+b",
            "bad name+00000000+AQ==",
            "PRIVATE+KEY+x",
            "n+00000000+",
        ] {
            assert!(NoteVerifier::parse(bad).is_err(), "{bad}");
        }
        assert!(NoteSigner::from_seed("has space", [1; 32]).is_err());
    }

    #[test]
    fn checkpoint_bodies_are_strict() {
        for bad in ["", "o\n", "o\n012\nAAAA\n", "o\nx\nAAAA\n", "o\n1\nAAAA\n"] {
            assert!(CheckpointBody::parse(bad).is_err(), "{bad:?}");
        }
    }
}
