//! The signals the card-testing defence reads from a `POST /donations` body.
//!
//! The seed's donation body carries no card data: the card goes from the browser to Stripe
//! (Stripe.js with the PaymentIntent's `client_secret`), never through ampflow. So the
//! "card fingerprint" here is a payer fingerprint: SHA-256 of the normalised `donor_email`
//! (lowercase, `+tag` dropped). A card tester cycling cards through one payer identity hits it;
//! one cycling emails as well is held by the per-IP, disposable-domain and global limits.

use std::collections::HashSet;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// Disposable email domains, one per line (`#` starts a comment). Kept in the repository;
/// `rate_limit.card_testing.extra_disposable_domains` adds more without a rebuild.
const DISPOSABLE_DOMAINS: &str = include_str!("disposable_domains.txt");

static DISPOSABLE: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    DISPOSABLE_DOMAINS
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .collect()
});

/// What the limits key on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DonationSignals {
    /// Hex SHA-256 of the normalised donor email (first 16 bytes).
    pub fingerprint: Option<String>,
    /// The donor's email domain, when it is disposable.
    pub disposable_domain: Option<String>,
}

/// The signals of a donation's (validated) donor email.
pub fn signals(donor_email: &str, extra_disposable: &[String]) -> DonationSignals {
    let email = Some(donor_email.trim().to_ascii_lowercase()).filter(|e| e.contains('@'));
    let Some(email) = email else {
        return DonationSignals {
            fingerprint: None,
            disposable_domain: None,
        };
    };
    let (local, domain) = email.rsplit_once('@').unwrap_or((&email, ""));
    let local = local.split('+').next().unwrap_or(local);
    let digest = Sha256::digest(format!("{local}@{domain}").as_bytes());
    let disposable = is_disposable(domain, extra_disposable).then(|| domain.to_string());
    DonationSignals {
        fingerprint: Some(hex::encode(&digest[..16])),
        disposable_domain: disposable,
    }
}

/// A domain is disposable when it or a parent domain is listed (`x.mailinator.com`).
pub fn is_disposable(domain: &str, extra: &[String]) -> bool {
    let domain = domain.trim_end_matches('.');
    let mut candidate = domain;
    loop {
        if DISPOSABLE.contains(candidate) || extra.iter().any(|d| d.eq_ignore_ascii_case(candidate))
        {
            return true;
        }
        match candidate.split_once('.') {
            Some((_, parent)) if parent.contains('.') => candidate = parent,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_case_and_plus_tags() {
        let a = signals("Jane+1@Example.com", &[]);
        let b = signals(" jane@example.com", &[]);
        assert!(a.fingerprint.is_some());
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.disposable_domain, None);
        let none = signals("not an email", &[]);
        assert_eq!(none.fingerprint, None);
    }

    #[test]
    fn disposable_domains_come_from_the_list_and_the_configuration() {
        assert!(is_disposable("mailinator.com", &[]));
        assert!(is_disposable("eu.mailinator.com", &[]));
        assert!(!is_disposable("example.com", &[]));
        assert!(is_disposable("throwaway.test", &["throwaway.test".into()]));
        let s = signals("x@yopmail.com", &[]);
        assert_eq!(s.disposable_domain.as_deref(), Some("yopmail.com"));
    }
}
