//! Stripe's request encoding: `application/x-www-form-urlencoded`, with bracketed keys for
//! nested values (`metadata[donation_id]=don_1`, `payment_method_data[card][number]=4242…`).
//! The pairs are kept flat, in the order sent; nesting is read by key prefix.

/// Decoded form parameters, in the order they were sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

/// How many parameters one request may carry; Stripe refuses far fewer than this anyway.
const PARAMS_MAX: usize = 1_000;

impl Params {
    /// Decodes a form body (or a query string). Answers the reason a body cannot be read.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
        let mut pairs = Vec::new();
        for part in text.split('&').filter(|part| !part.is_empty()) {
            if pairs.len() == PARAMS_MAX {
                return Err(format!("more than {PARAMS_MAX} parameters"));
            }
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((percent_decode(key)?, percent_decode(value)?));
        }
        Ok(Self { pairs })
    }

    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The last value sent for `key` (Stripe keeps the last of repeated keys).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `(inner key, value)` for every `prefix[inner key]=value`, e.g. metadata entries.
    pub(crate) fn bracketed<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.pairs.iter().filter_map(move |(key, value)| {
            let inner = key
                .strip_prefix(prefix)?
                .strip_prefix('[')?
                .strip_suffix(']')?;
            Some((inner, value.as_str()))
        })
    }

    /// The first key that is neither in `allowed` nor starts with one of `allowed_prefixes`.
    pub(crate) fn unknown(&self, allowed: &[&str], allowed_prefixes: &[&str]) -> Option<&str> {
        self.pairs.iter().map(|(key, _)| key.as_str()).find(|key| {
            !allowed.contains(key) && !allowed_prefixes.iter().any(|p| key.starts_with(p))
        })
    }

    /// The parameters as a set, for comparing two requests made with one idempotency key:
    /// the order of the fields does not make them different requests.
    pub(crate) fn fingerprint(&self) -> Vec<(String, String)> {
        let mut pairs = self.pairs.clone();
        pairs.sort();
        pairs
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| format!("invalid percent-encoding in {text:?}"))?;
                decoded.push(hex);
                index += 2;
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8(decoded).map_err(|_| format!("invalid UTF-8 in {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_brackets_plus_and_percent_escapes() {
        let params = Params::parse(
            b"amount=5000&metadata%5Bdonation_id%5D=don_1&description=a+b%26c&metadata[x]=",
        )
        .unwrap();
        assert_eq!(params.get("amount"), Some("5000"));
        assert_eq!(params.get("description"), Some("a b&c"));
        let metadata: Vec<_> = params.bracketed("metadata").collect();
        assert_eq!(metadata, vec![("donation_id", "don_1"), ("x", "")]);
    }

    #[test]
    fn refuses_broken_escapes() {
        assert!(Params::parse(b"amount=%4").is_err());
        assert!(Params::parse(b"amount=%zz").is_err());
        assert!(Params::parse(b"amount=%ff").is_err());
    }

    #[test]
    fn fingerprint_ignores_field_order() {
        let a = Params::parse(b"amount=1&currency=eur").unwrap();
        let b = Params::parse(b"currency=eur&amount=1").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }
}
