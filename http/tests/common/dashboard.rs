//! Dashboard helpers: users created through the operator code, logins from a chosen address
//! (`X-Forwarded-For`, trusted in these tests) and user agent, and requests with the session
//! cookie.

use ampflow_http::config::Settings;
use ampflow_storage::{AuditEvent, AuditScope};
use serde_json::Value;

use super::TestApp;

pub const PASSWORD: &str = "correct horse battery staple";
/// Every API key policy.
pub const ALL_POLICIES: [&str; 8] = [
    "audit:read",
    "donations:read",
    "donations:write",
    "keys:admin",
    "ledger:read",
    "organisations:read",
    "organisations:write",
    "tokens:issue",
];
pub const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
pub const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

/// Cheap argon2 (tests hash many passwords), a trusted `X-Forwarded-For`, and no idle timeout
/// (tests move the clock by days; `an_idle_session_ends` turns it on).
pub fn dashboard_settings(settings: &mut Settings) {
    settings.auth.argon2_memory_kib = 64;
    settings.auth.argon2_iterations = 1;
    settings.auth.session_idle_timeout_mins = 0;
    settings.http.trusted_proxies = vec!["127.0.0.1".into()];
}

pub async fn start(backend: ampflow_storage::testdb::Backend) -> Option<TestApp> {
    TestApp::start_with(backend, dashboard_settings).await
}

/// Creates a user with [`PASSWORD`]; answers its id.
pub async fn create_user(app: &TestApp, email: &str) -> String {
    app.app()
        .actors()
        .accounts()
        .create_user(email, Some("Jane User"), PASSWORD.to_string())
        .await
        .expect("create a user")
        .id
}

/// A new user with `email` and `role` (member or admin) in the organisation: its id.
pub async fn create_member(
    app: &TestApp,
    organisation_id: &str,
    email: &str,
    role: &str,
) -> String {
    let id = create_user(app, email).await;
    app.app()
        .actors()
        .organisations()
        .set_member(organisation_id, email, role)
        .await
        .expect("add a member");
    id
}

/// A logged-in client: its cookie value (`<session id>.<secret>`) and address.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub id: String,
    pub ip: String,
}

/// `POST /auth/login` from `ip` with `user_agent`: status, body and the `Set-Cookie` header.
pub async fn try_login(
    app: &TestApp,
    email: &str,
    password: &str,
    ip: &str,
    user_agent: &str,
) -> (u16, Value, Option<String>) {
    let response = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", ip)
        .header("user-agent", user_agent)
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .expect("send login");
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().expect("text").to_string());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, set_cookie)
}

pub async fn login_from(app: &TestApp, email: &str, ip: &str, user_agent: &str) -> Session {
    let (status, body, set_cookie) = try_login(app, email, PASSWORD, ip, user_agent).await;
    assert_eq!(status, 200, "{body}");
    let set_cookie = set_cookie.expect("a Set-Cookie header");
    let value = set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("session="))
        .expect("the session cookie")
        .to_string();
    Session {
        cookie: value,
        id: body["data"]["session"]["id"]
            .as_str()
            .expect("id")
            .to_string(),
        ip: ip.to_string(),
    }
}

pub async fn login(app: &TestApp, email: &str) -> Session {
    login_from(app, email, "203.0.113.45", CHROME_WINDOWS).await
}

/// A request with the session's cookie, from the session's address, sent by the server's own
/// page (`Origin` is the server, as a browser sends on a same-origin `fetch`).
pub fn with_session(
    app: &TestApp,
    method: &str,
    path: &str,
    session: &Session,
) -> reqwest::RequestBuilder {
    app.client
        .request(method.parse().expect("method"), app.url(path))
        .header("cookie", format!("session={}", session.cookie))
        .header("origin", app.app().base_url())
        .header("x-forwarded-for", session.ip.as_str())
}

pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    session: &Session,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = with_session(app, method, path, session);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

/// The audit rows about a user (newest first), read from storage.
pub async fn audit_of(app: &TestApp, user_id: &str) -> Vec<AuditEvent> {
    app.app()
        .storage()
        .audit()
        .audit_events(&AuditScope::Subject(user_id.to_string()), None, 500)
        .await
        .expect("read audit events")
}

pub fn actions(events: &[AuditEvent]) -> Vec<String> {
    events.iter().rev().map(|e| e.action.clone()).collect()
}
