//! The middleware: picks the caller's tier for the matched route, adds the card-testing rules on
//! `POST /donations`, asks the limiter, and answers 429 (or 403 for an auto-blocked IP) or
//! passes the request on, adding the `X-RateLimit-*` headers to whatever answers.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::card;
use super::{AutoBlock, Check, Headline, Identifier, Limit, RateLimitConfig, Rule, Tier, Verdict};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The route label of a request no route matched (one label for every unknown path).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// What kind of endpoint a route is, for choosing the tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    DonationCreate,
    LedgerView,
    LedgerExport,
    Widget,
    Settings,
    Password,
    General,
}

fn category(method: &Method, route: &str) -> Category {
    match (method.as_str(), route) {
        ("POST", "/donations") => Category::DonationCreate,
        (_, "/public/organisations/{id}/ledger/export") => Category::LedgerExport,
        (_, r)
            if r.starts_with("/public/organisations/{id}/ledger")
                || r.starts_with("/public/checkpoints")
                || r.starts_with("/public/ledger/") =>
        {
            Category::LedgerView
        }
        (_, r) if r.starts_with("/nonprofit-json/") => Category::Widget,
        ("PUT", "/user") | ("PATCH", "/auth/security-settings") => Category::Settings,
        ("POST", "/auth/password") => Category::Password,
        _ => Category::General,
    }
}

/// The tiers that apply: (tier name, tier).
fn tiers(
    config: &super::Tiers,
    category: Category,
    method: &Method,
    who: &Identifier,
) -> Vec<(&'static str, Tier)> {
    use Category::*;
    let one = |name, tier: &Tier| vec![(name, *tier)];
    match (who, category) {
        (_, LedgerExport) => one("ledger_export", &config.ledger_export),
        (Identifier::Ip(_), DonationCreate) => {
            one("donation_initiation", &config.donation_initiation)
        }
        (Identifier::Ip(_), LedgerView) => one("ledger_view", &config.ledger_view),
        (Identifier::Ip(_), Widget) => vec![
            ("widget_burst", config.widget_burst),
            ("widget", config.widget),
        ],
        (Identifier::Ip(_), _) => one("public", &config.public),
        (Identifier::User(_), DonationCreate) => {
            one("donation_creation", &config.donation_creation)
        }
        (Identifier::User(_), Settings) => one("settings", &config.settings),
        (Identifier::User(_), Password) => one("password", &config.password),
        (Identifier::User(_), _) => one("dashboard", &config.dashboard),
        (Identifier::ApiKey(_), _) if matches!(*method, Method::GET | Method::HEAD) => {
            one("api_read", &config.api_read)
        }
        (Identifier::ApiKey(_), _) => one("api_write", &config.api_write),
    }
}

fn limit(tier: &Tier) -> Limit {
    Limit {
        limit: tier.limit,
        window_ms: tier.window_secs.saturating_mul(1000),
        fixed: tier.fixed,
    }
}

/// The request's rules: each tier that applies, keyed by the tier and the caller (never by
/// the method or the path, so made-up methods and paths all count against one budget). An
/// identified caller (user, wallet, key) is also counted by its IP under the same tiers, at
/// `identities_per_ip` times the limit, so fresh identities from one address do not multiply
/// its budget.
fn rules(
    config: &RateLimitConfig,
    category: Category,
    method: &Method,
    who: &Identifier,
    ip: std::net::IpAddr,
    prefix: &str,
) -> Vec<Rule> {
    let tiers = tiers(&config.tiers, category, method, who);
    let by_ip = !matches!(who, Identifier::Ip(_));
    let mut rules = Vec::with_capacity(tiers.len() * if by_ip { 2 } else { 1 });
    for (name, tier) in &tiers {
        rules.push(Rule {
            key: format!("{prefix}:{}:{name}:{}", who.key_part(), tier.window_secs),
            limit: limit(tier),
            reason: "tier",
        });
    }
    if by_ip {
        for (name, tier) in &tiers {
            let mut shared = limit(tier);
            shared.limit = shared.limit.saturating_mul(config.identities_per_ip);
            rules.push(Rule {
                // Not the anonymous key of the address (`ip:{ip}:{name}`): a tier that also
                // counts anonymous callers (`ledger_export`) would otherwise see identified
                // traffic spend the anonymous budget, and one key would carry two limits
                // (a lease of the larger counts against the smaller at once).
                key: format!("{prefix}:ip:{ip}:identified:{name}:{}", tier.window_secs),
                limit: shared,
                reason: "ip",
            });
        }
    }
    rules
}

/// The edge rule for text and bodies ([`crate::edge`]), once the limiter has counted the
/// request (so requests it refuses count too), then the route. One layer for both: a layer
/// costs a boxed future per request.
async fn onward(state: &AppState, request: Request, next: Next) -> Response {
    match crate::edge::check(state, &request) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Who the request is counted as, and its address as every IP-keyed limit counts it (IPv6 by
/// its /64). A credential the limiter verified is handed to the endpoint's extractor through
/// the request's extensions, so it is read once per request.
async fn identify(state: &AppState, request: &mut Request) -> (Identifier, std::net::IpAddr) {
    let context =
        crate::auth::extract::RequestContext::from(request.extensions(), request.headers(), state);
    let ip = crate::net::ip_key(context.ip);
    let (who, verified) = super::identifier::identify(state, request.headers(), &context, ip).await;
    match verified {
        Some(super::identifier::Verified::Session(session)) => {
            request.extensions_mut().insert(session);
        }
        Some(super::identifier::Verified::Key(key)) => {
            request.extensions_mut().insert(key);
        }
        Some(super::identifier::Verified::Wallet(wallet)) => {
            request.extensions_mut().insert(wallet);
        }
        None => {}
    }
    (who, ip)
}

/// The route template the request is counted under; `None` when limits are off or the route
/// is exempt.
fn limited_route(config: &RateLimitConfig, request: &Request) -> Option<String> {
    if !config.enabled {
        return None;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    if route.as_deref().is_some_and(|r| config.is_exempt(r)) {
        return None;
    }
    Some(route.unwrap_or_else(|| UNMATCHED_ROUTE.to_string()))
}

/// The rate-limit layer: counts the request against every rule that applies to it (its tier
/// by caller and by address, the card-testing limits on `POST /donations`, auto-block) and
/// answers 429 or 403 when one refuses.
pub async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let config = &state.settings().rate_limit;
    let Some(route) = limited_route(config, &request) else {
        return onward(&state, request, next).await;
    };
    let (who, ip) = identify(&state, &mut request).await;
    let method = request.method().clone();
    let prefix = format!("{}ratelimit", config.key_prefix);

    let mut rules = rules(
        config,
        category(&method, &route),
        &method,
        &who,
        ip,
        &prefix,
    );
    let request = if method == Method::POST && route == "/donations" && config.card_testing.enabled
    {
        let authenticated = !matches!(who, Identifier::Ip(_));
        match card_rules(&state, request, &prefix, ip, authenticated).await {
            Ok((request, card_rules)) => {
                rules.extend(card_rules);
                request
            }
            Err(error) => return error.into_response(),
        }
    } else {
        request
    };
    let (verdict, _) = state
        .rate_limiter()
        .check(&Check {
            rules: &rules,
            auto_block: auto_block(config, &prefix, ip),
        })
        .await;

    let kind = who.kind();
    metrics::counter!("ratelimit_checked_total", "endpoint" => route.clone(), "identifier_type" => kind)
        .increment(1);
    let refused = |reason: &'static str| count_refusal(&route, kind, reason);
    match verdict {
        Verdict::Allowed { binding } => {
            let mut response = onward(&state, request, next).await;
            if let Some(headline) = binding {
                set_headers(&mut response, headline);
            }
            response
        }
        Verdict::Limited {
            reason,
            limit,
            reset_ms,
            retry_after_ms,
        } => {
            refused(reason);
            if reason != "tier" {
                tracing::info!(%ip, reason, "donation refused by the card-testing defence");
            }
            limited(limit, reset_ms, retry_after_ms)
        }
        Verdict::Blocked { retry_after_ms } => {
            refused("auto_block");
            blocked(rules.first(), retry_after_ms)
        }
    }
}

fn count_refusal(route: &str, kind: &'static str, reason: &'static str) {
    metrics::counter!(
        "ratelimit_blocked_total",
        "endpoint" => route.to_string(),
        "identifier_type" => kind,
        "reason" => reason
    )
    .increment(1);
}

/// The auto-block keys and limits of the client's address, when auto-blocking is on.
fn auto_block(config: &RateLimitConfig, prefix: &str, ip: std::net::IpAddr) -> Option<AutoBlock> {
    config.auto_block.enabled.then(|| AutoBlock {
        block_key: format!("{prefix}:block:{ip}"),
        count_key: format!("{prefix}:blocks:{ip}"),
        blocks_max: config.auto_block.blocks_max,
        window_ms: config.auto_block.window_secs.saturating_mul(1000),
        duration_ms: config.auto_block.duration_secs.saturating_mul(1000),
    })
}

/// 429 `rate_limit_exceeded`, with `Retry-After` and the refusing rule's headers.
fn limited(limit: u64, reset_ms: u64, retry_after_ms: u64) -> Response {
    let secs = retry_after_ms.div_ceil(1000).max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimitExceeded,
        format!("Too many requests. Retry after {secs} seconds."),
    )
    .retry_after(secs)
    .into_response();
    set_headers(
        &mut response,
        Headline {
            limit,
            remaining: 0,
            reset_ms,
        },
    );
    response
}

/// 403 `ip_blocked`, with `Retry-After` and the request's tier at nothing left until the block
/// ends.
fn blocked(tier: Option<&Rule>, retry_after_ms: u64) -> Response {
    let secs = retry_after_ms.div_ceil(1000).max(1);
    let mut response = ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::IpBlocked,
        format!(
            "this address is blocked for {secs} more seconds after repeated rate-limit violations"
        ),
    )
    .retry_after(secs)
    .into_response();
    if let Some(rule) = tier {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        set_headers(
            &mut response,
            Headline {
                limit: rule.limit.limit,
                remaining: 0,
                reset_ms: now_ms + retry_after_ms,
            },
        );
    }
    response
}

/// The card-testing rules: the client IP's always; the platform-wide, payer-fingerprint and
/// disposable-domain ones only for a request that passed authentication and whose body is a
/// valid donation (so anonymous or malformed requests cannot spend the global budget or a
/// donor's fingerprint). Reads the body (within `http.body_limit_bytes`) and puts the same
/// bytes back for the handler.
async fn card_rules(
    state: &AppState,
    request: Request,
    prefix: &str,
    ip: std::net::IpAddr,
    authenticated: bool,
) -> Result<(Request, Vec<Rule>), ApiError> {
    let card = &state.settings().rate_limit.card_testing;
    let endpoint = "POST:/donations";
    let rule = |who: String, tier: &Tier, reason: &'static str| Rule {
        key: format!("{prefix}:{who}:{endpoint}:{}", tier.window_secs),
        limit: limit(tier),
        reason,
    };
    let mut rules = vec![rule(format!("card_ip:{ip}"), &card.per_ip, "card_ip")];
    if !authenticated {
        return Ok((request, rules));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.settings().http.body_limit_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::RequestTooLarge,
                "the request body is too large or could not be read",
            )
        })?;
    let email = crate::routes::donations::validated_donor_email(&bytes);
    let request = Request::from_parts(parts, Body::from(bytes));
    let Some(email) = email else {
        return Ok((request, rules));
    };
    let signals = card::signals(&email, &card.extra_disposable_domains);
    rules.push(rule("global".into(), &card.global, "global"));
    if let Some(fingerprint) = signals.fingerprint {
        rules.push(rule(
            format!("card:{fingerprint}"),
            &card.per_fingerprint,
            "card_fingerprint",
        ));
    }
    if let Some(domain) = signals.disposable_domain {
        rules.push(rule(
            format!("email_domain:{domain}"),
            &card.per_disposable_domain,
            "email_domain",
        ));
    }
    Ok((request, rules))
}

fn set_headers(response: &mut Response, headline: Headline) {
    let headers = response.headers_mut();
    headers.insert(X_RATELIMIT_LIMIT.clone(), HeaderValue::from(headline.limit));
    headers.insert(
        X_RATELIMIT_REMAINING.clone(),
        HeaderValue::from(headline.remaining),
    );
    headers.insert(
        X_RATELIMIT_RESET.clone(),
        HeaderValue::from(headline.reset_ms.div_ceil(1000)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_the_seeds_tiers() {
        let config = super::super::Tiers::default();
        let ip = Identifier::Ip([192, 0, 2, 1].into());
        let user = Identifier::User("0xabc".into());
        let key = Identifier::ApiKey("key_1".into());
        let names = |m: Method, route: &str, who: &Identifier| -> Vec<&'static str> {
            tiers(&config, category(&m, route), &m, who)
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(
            names(Method::POST, "/donations", &ip),
            ["donation_initiation"]
        );
        assert_eq!(
            names(Method::POST, "/donations", &user),
            ["donation_creation"]
        );
        assert_eq!(names(Method::GET, "/donations", &user), ["dashboard"]);
        assert_eq!(
            names(Method::GET, "/public/organisations/{id}/ledger", &ip),
            ["ledger_view"]
        );
        assert_eq!(
            names(
                Method::GET,
                "/public/organisations/{id}/ledger/export",
                &user
            ),
            ["ledger_export"]
        );
        assert_eq!(
            names(
                Method::GET,
                "/nonprofit-json/{publisher_campaign_guid}",
                &ip
            ),
            ["widget_burst", "widget"]
        );
        assert_eq!(names(Method::GET, "/public/organisations", &ip), ["public"]);
        assert_eq!(names(Method::PUT, "/user", &user), ["settings"]);
        assert_eq!(names(Method::GET, "/donations", &key), ["api_read"]);
        assert_eq!(names(Method::POST, "/donations", &key), ["api_write"]);
    }

    #[test]
    fn keys_are_the_tier_and_the_caller_never_the_method() {
        let config = RateLimitConfig::default();
        let ip: std::net::IpAddr = [192, 0, 2, 1].into();
        let keys = |method: &str, route: &str, who: &Identifier| -> Vec<String> {
            let method: Method = method.parse().unwrap();
            rules(&config, category(&method, route), &method, who, ip, "rl")
                .into_iter()
                .map(|r| r.key)
                .collect()
        };
        let anonymous = Identifier::Ip(ip);
        let made_up = keys("FROB", "/public/organisations", &anonymous);
        assert_eq!(made_up, ["rl:ip:192.0.2.1:public:60"]);
        assert_eq!(keys("GET", "/public/organisations", &anonymous), made_up);
        assert_eq!(
            keys("BREW", "/public/organisations/{id}", &anonymous),
            made_up
        );
        // An identified caller is also counted by its address, at identities_per_ip × limit.
        let wallet = Identifier::User("0xabc".into());
        let both = rules(&config, Category::General, &Method::GET, &wallet, ip, "rl");
        let keys: Vec<_> = both.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rl:user:0xabc:dashboard:60",
                "rl:ip:192.0.2.1:identified:dashboard:60"
            ]
        );
        assert_eq!(both[1].limit.limit, 5 * both[0].limit.limit);
        assert_eq!(both[1].reason, "ip");
        // A tier that counts both: the address's identified callers and its anonymous ones
        // are counted apart, each key under one limit.
        let export = |who: &Identifier| -> Vec<String> {
            rules(&config, Category::LedgerExport, &Method::GET, who, ip, "rl")
                .into_iter()
                .map(|r| r.key)
                .collect()
        };
        assert_eq!(export(&anonymous), ["rl:ip:192.0.2.1:ledger_export:3600"]);
        assert_eq!(
            export(&wallet),
            [
                "rl:user:0xabc:ledger_export:3600",
                "rl:ip:192.0.2.1:identified:ledger_export:3600"
            ]
        );
    }
}
