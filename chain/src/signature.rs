//! EIP-191 `personal_sign` signatures: parsing the 65-byte form wallets produce and checking
//! that a message was signed by a given address.

use alloy::primitives::Signature;
use ampflow_types::WalletAddress;
use subtle::ConstantTimeEq;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a signature is 0x followed by 130 hexadecimal characters (65 bytes)")]
    Malformed,
    #[error("the signature's recovery byte v must be 0, 1, 27 or 28")]
    BadRecoveryByte,
    #[error("no public key can be recovered from this signature")]
    Unrecoverable,
    #[error(
        "the signature's s value is in the upper half of the curve order; wallets produce the lower-half (EIP-2) form"
    )]
    Malleable,
}

/// Longest signature accepted for a contract wallet (EIP-1271 signatures can be multi-owner
/// concatenations, longer than 65 bytes).
pub const SIGNATURE_BYTES_MAX: usize = 4096;

/// Raw signature bytes from `0x`-hex, of any length up to [`SIGNATURE_BYTES_MAX`], for
/// contract wallets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureBytes(pub Vec<u8>);

impl SignatureBytes {
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let hex_part = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        if hex_part.is_empty()
            || !hex_part.len().is_multiple_of(2)
            || hex_part.len() > 2 * SIGNATURE_BYTES_MAX
        {
            return Err(SignatureError::Malformed);
        }
        hex::decode(hex_part)
            .map(Self)
            .map_err(|_| SignatureError::Malformed)
    }

    /// The bytes as an EOA signature, when they have that form (a high-s one never has: see
    /// [`is_high_s`](Self::is_high_s)).
    pub fn as_wallet_signature(&self) -> Option<WalletSignature> {
        let signature = self.as_ecdsa()?;
        (!is_high_s(&signature)).then_some(WalletSignature(signature))
    }

    /// Whether these are 65 ECDSA bytes whose s is in the upper half of the curve order: the
    /// malleable twin of a valid signature, which no standard wallet produces (EIP-2). Such a
    /// signature is refused rather than given to the chain as a contract wallet's.
    pub fn is_high_s(&self) -> bool {
        self.as_ecdsa()
            .is_some_and(|signature| is_high_s(&signature))
    }

    fn as_ecdsa(&self) -> Option<Signature> {
        let bytes: &[u8; 65] = self.0.as_slice().try_into().ok()?;
        if !matches!(bytes[64], 0 | 1 | 27 | 28) {
            return None;
        }
        Signature::from_raw_array(bytes).ok()
    }
}

impl From<WalletSignature> for SignatureBytes {
    fn from(signature: WalletSignature) -> Self {
        Self(signature.0.as_bytes().to_vec())
    }
}

/// A parsed 65-byte `r ‖ s ‖ v` signature, with v given as 0/1 or 27/28.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletSignature(Signature);

impl WalletSignature {
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let hex_part = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        if hex_part.len() != 130 {
            return Err(SignatureError::Malformed);
        }
        let mut bytes = [0u8; 65];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| SignatureError::Malformed)?;
        if !matches!(bytes[64], 0 | 1 | 27 | 28) {
            return Err(SignatureError::BadRecoveryByte);
        }
        let signature =
            Signature::from_raw_array(&bytes).map_err(|_| SignatureError::BadRecoveryByte)?;
        if is_high_s(&signature) {
            return Err(SignatureError::Malleable);
        }
        Ok(Self(signature))
    }

    /// The address whose key produced this signature over `message`, hashed the EIP-191 way
    /// (`"\x19Ethereum Signed Message:\n" ‖ len ‖ message`).
    pub fn recover_personal_sign(&self, message: &str) -> Result<WalletAddress, SignatureError> {
        self.0
            .recover_address_from_msg(message.as_bytes())
            .map(WalletAddress::from_alloy)
            .map_err(|_| SignatureError::Unrecoverable)
    }

    /// True when `signer` signed `message`. The comparison of the recovered address runs in
    /// constant time.
    pub fn is_personal_sign_by(&self, message: &str, signer: &WalletAddress) -> bool {
        match self.recover_personal_sign(message) {
            Ok(recovered) => bool::from(
                recovered
                    .as_alloy()
                    .as_slice()
                    .ct_eq(signer.as_alloy().as_slice()),
            ),
            Err(_) => false,
        }
    }
}

/// Whether `s` is above half the secp256k1 order (`normalize_s` only answers for those).
fn is_high_s(signature: &Signature) -> bool {
    signature.normalize_s().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The by-message example from the identity service's API reference is a real signature.
    const SEED_ADDRESS: &str = "0xef678007d18427e6022059dbc264f27507cd1ffc";
    const SEED_MESSAGE: &str = "Please sign this message to verify your wallet ownership, unique ID: 8b9ec2dd-626f-4444-9ae7-b4142e6e99e5, nonce: 721558130";
    const SEED_SIGNATURE: &str = "0xcbc232b66251488cc345d2ffa09b832d072863d61052d92bc285f8734249c98b4cc33fb4c1265567a5757a45b55458d30b04788e85bca8402baeeece8f4920b01b";

    #[test]
    fn seed_by_message_vector_recovers_the_seed_address() {
        let signature = WalletSignature::parse(SEED_SIGNATURE).unwrap();
        let recovered = signature.recover_personal_sign(SEED_MESSAGE).unwrap();
        assert_eq!(recovered.to_string(), SEED_ADDRESS);
        let signer = WalletAddress::parse(SEED_ADDRESS).unwrap();
        assert!(signature.is_personal_sign_by(SEED_MESSAGE, &signer));
    }

    #[test]
    fn seed_vector_fails_for_another_message_or_address() {
        let signature = WalletSignature::parse(SEED_SIGNATURE).unwrap();
        let signer = WalletAddress::parse(SEED_ADDRESS).unwrap();
        assert!(
            !signature
                .is_personal_sign_by(&SEED_MESSAGE.replace("721558130", "721558131"), &signer)
        );
        let other = WalletAddress::parse("0x0000000000000000000000000000000000000001").unwrap();
        assert!(!signature.is_personal_sign_by(SEED_MESSAGE, &other));
    }

    #[test]
    fn recovery_byte_may_be_zero_one_or_twenty_seven_twenty_eight() {
        let signer = WalletAddress::parse(SEED_ADDRESS).unwrap();
        // The seed signature ends in 0x1b (27); the same signature with v = 0 must verify too.
        let zero_based = format!("{}00", &SEED_SIGNATURE[..SEED_SIGNATURE.len() - 2]);
        let signature = WalletSignature::parse(&zero_based).unwrap();
        assert!(signature.is_personal_sign_by(SEED_MESSAGE, &signer));
        for bad_v in ["02", "1d", "25", "ff"] {
            let text = format!("{}{bad_v}", &SEED_SIGNATURE[..SEED_SIGNATURE.len() - 2]);
            assert_eq!(
                WalletSignature::parse(&text),
                Err(SignatureError::BadRecoveryByte)
            );
        }
    }

    /// (r, n − s, v ^ 1) recovers the same key: the malleable twin of a valid signature.
    #[test]
    fn the_high_s_twin_of_a_valid_signature_is_refused() {
        let signature = WalletSignature::parse(SEED_SIGNATURE).unwrap().0;
        let order = alloy::primitives::U256::from_be_bytes(alloy::primitives::hex!(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
        ));
        let twin = Signature::new(signature.r(), order - signature.s(), !signature.v());
        assert_eq!(
            twin.recover_address_from_msg(SEED_MESSAGE).unwrap(),
            signature.recover_address_from_msg(SEED_MESSAGE).unwrap()
        );
        let text = format!("0x{}", hex::encode(twin.as_bytes()));
        assert_eq!(
            WalletSignature::parse(&text),
            Err(SignatureError::Malleable)
        );
        let bytes = SignatureBytes::parse(&text).unwrap();
        assert!(bytes.is_high_s());
        assert!(bytes.as_wallet_signature().is_none());
        assert!(!SignatureBytes::parse(SEED_SIGNATURE).unwrap().is_high_s());
    }

    #[test]
    fn malformed_signatures_are_rejected() {
        for bad in [
            "",
            "0x",
            "0x1234",
            &SEED_SIGNATURE[..SEED_SIGNATURE.len() - 2],
            &format!("{SEED_SIGNATURE}00"),
            &SEED_SIGNATURE.replace('c', "g"),
        ] {
            assert_eq!(
                WalletSignature::parse(bad),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }
}

#[cfg(test)]
mod bytes_tests {
    use super::*;

    #[test]
    fn contract_wallet_signatures_may_have_any_length() {
        assert_eq!(SignatureBytes::parse("0x0102").unwrap().0, vec![1, 2]);
        let long = format!("0x{}", "ab".repeat(130));
        assert_eq!(SignatureBytes::parse(&long).unwrap().0.len(), 130);
        for bad in [
            "",
            "0x",
            "0x123",
            "0xzz",
            &format!("0x{}", "00".repeat(SIGNATURE_BYTES_MAX + 1)),
        ] {
            assert_eq!(
                SignatureBytes::parse(bad),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sixty_five_bytes_with_a_good_v_are_also_an_eoa_signature() {
        let eoa = "0xcbc232b66251488cc345d2ffa09b832d072863d61052d92bc285f8734249c98b4cc33fb4c1265567a5757a45b55458d30b04788e85bca8402baeeece8f4920b01b";
        let bytes = SignatureBytes::parse(eoa).unwrap();
        assert_eq!(
            bytes.as_wallet_signature(),
            Some(WalletSignature::parse(eoa).unwrap())
        );
        assert_eq!(
            SignatureBytes::from(WalletSignature::parse(eoa).unwrap()).as_wallet_signature(),
            bytes.as_wallet_signature()
        );
        let bad_v = format!("{}05", &eoa[..eoa.len() - 2]);
        assert!(
            SignatureBytes::parse(&bad_v)
                .unwrap()
                .as_wallet_signature()
                .is_none()
        );
    }
}
