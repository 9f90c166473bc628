//! The partner side of the partner API's request signature (seed 003), computed from the seed's
//! recipe independently of the server's check: what a partner's client sends.

use base64::Engine;
use hmac::{KeyInit, Mac};
use md5::Digest;

/// Base64(HMAC-SHA1(secret, VERB\nMD5\nContent-Type\nDate\nURI)), where MD5 is the hex MD5 of
/// the body, empty for an empty body.
pub fn sign(
    secret: &str,
    method: &str,
    body: &str,
    content_type: &str,
    date: &str,
    uri: &str,
) -> String {
    let md5 = if body.is_empty() {
        String::new()
    } else {
        hex::encode(md5::Md5::digest(body.as_bytes()))
    };
    let string_to_sign = format!("{method}\n{md5}\n{content_type}\n{date}\n{uri}");
    // HMAC takes a key of any length.
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}
