//! Dashboard sessions (issue 6, seed 000 "Auth"): login, logout, logout-all, the sessions
//! list and revoking, password changes, security settings and IP binding, expiry, forged
//! cookies, the failed-login throttle, and the audit rows each writes; on SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ampflow_storage::testdb::Backend;
use common::dashboard::*;
use common::{TestApp, assert_error};
use serde_json::json;

on_both_databases!(
    login_sets_a_session_cookie_and_me_answers_the_user,
    unknown_emails_and_wrong_passwords_answer_the_same,
    logout_ends_only_this_session,
    logout_all_revokes_every_session,
    sessions_list_their_clients_and_another_can_be_revoked,
    a_password_change_revokes_the_other_sessions,
    expired_and_forged_cookies_answer_401,
    failed_logins_are_refused_per_address_and_slowed_per_account,
    concurrent_guesses_cannot_pass_the_limit_or_lock_the_owner_out,
    an_idle_session_ends,
    breaking_the_ip_binding_flags_the_session,
    security_settings_are_validated,
    last_activity_is_written_at_most_once_a_minute,
    a_login_from_a_new_device_is_audited_when_asked,
    bad_input_on_the_auth_endpoints_answers_400,
);

const DAY_MS: i64 = 86_400_000;

async fn login_sets_a_session_cookie_and_me_answers_the_user(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let user = create_user(&app, "Jane@Example.org").await;
    let (status, body, cookie) = try_login(
        &app,
        " jane@example.org ",
        PASSWORD,
        "203.0.113.45",
        CHROME_WINDOWS,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap();
    for part in [
        "session=ses_",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Secure",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(
        cookie.contains(&format!("Max-Age={}", 7 * 86_400)),
        "{cookie}"
    );
    assert_eq!(body["data"]["user"]["id"], user.as_str());
    assert_eq!(body["data"]["user"]["email"], "jane@example.org");
    assert_eq!(body["data"]["user"]["name"], "Jane User");
    assert!(
        body["data"]["session"]["id"]
            .as_str()
            .unwrap()
            .starts_with("ses_")
    );
    assert!(body["data"]["session"]["expires_at"].is_string());
    assert!(body["meta"]["request_id"].is_string());
    // The secret is only in the cookie.
    let secret = cookie.split(';').next().unwrap().split('.').nth(1).unwrap();
    assert!(!body.to_string().contains(secret));

    let session = login(&app, "jane@example.org").await;
    let (status, me) = call(&app, "GET", "/auth/me", &session, None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["id"], user.as_str());
    assert_eq!(
        me["data"]["security_settings"],
        json!({"ip_binding": "country", "session_timeout_days": 7, "notify_new_device": true})
    );
    assert!(me["data"].get("password_hash").is_none());
    let audit = audit_of(&app, &user).await;
    assert_eq!(
        actions(&audit),
        ["user.created", "session.login", "session.login"]
    );
    let login_row = &audit[0];
    assert_eq!(login_row.ip_address.as_deref(), Some("203.0.113.45"));
    assert!(login_row.request_id.is_some());
    assert_eq!(login_row.target.as_ref().unwrap().1, session.id);
    app.stop().await;
}

async fn unknown_emails_and_wrong_passwords_answer_the_same(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let user = create_user(&app, "jane@example.org").await;
    let (wrong_status, wrong, cookie) = try_login(
        &app,
        "jane@example.org",
        "not it at all",
        "203.0.113.1",
        "x",
    )
    .await;
    assert!(cookie.is_none());
    let (unknown_status, unknown, _) = try_login(
        &app,
        "nobody@example.org",
        "not it at all",
        "203.0.113.1",
        "x",
    )
    .await;
    assert_error(wrong_status, &wrong, 401, "authentication_error", None);
    assert_eq!(
        (wrong_status, &wrong["error"]),
        (unknown_status, &unknown["error"])
    );
    let audit = audit_of(&app, &user).await;
    assert_eq!(actions(&audit), ["user.created", "session.login_failed"]);
    assert!(!audit[0].details.to_string().contains("not it at all"));
    let (status, body) = app
        .post("/auth/login", json!({"email": "", "password": "x"}))
        .await;
    assert_error(status, &body, 400, "invalid_request", Some("email"));
    let (status, body) = app.post("/auth/login", json!({"email": "a@b.c"})).await;
    assert_error(status, &body, 400, "invalid_request", Some("password"));
    app.stop().await;
}

async fn logout_ends_only_this_session(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let user = create_user(&app, "jane@example.org").await;
    let first = login(&app, "jane@example.org").await;
    let second = login(&app, "jane@example.org").await;
    let response = with_session(&app, "POST", "/auth/logout", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cleared = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cleared.starts_with("session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (status, body) = call(&app, "GET", "/auth/me", &first, None).await;
    assert_error(status, &body, 401, "authentication_error", None);
    assert_eq!(call(&app, "GET", "/auth/me", &second, None).await.0, 200);
    let (status, body) = call(&app, "POST", "/auth/logout", &first, None).await;
    assert_error(status, &body, 401, "authentication_error", None);
    assert!(actions(&audit_of(&app, &user).await).ends_with(&["session.logout".to_string()]));
    app.stop().await;
}

async fn logout_all_revokes_every_session(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let user = create_user(&app, "jane@example.org").await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(login(&app, "jane@example.org").await);
    }
    let (status, body) = call(&app, "POST", "/auth/logout-all", &sessions[0], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"sessions_revoked": 4, "message": "All sessions have been revoked"})
    );
    for session in &sessions {
        let (status, body) = call(&app, "GET", "/auth/me", session, None).await;
        assert_error(status, &body, 401, "authentication_error", None);
    }
    // A new login works.
    let fresh = login(&app, "jane@example.org").await;
    let (_, list) = call(&app, "GET", "/auth/sessions", &fresh, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let audit = audit_of(&app, &user).await;
    let row = audit
        .iter()
        .find(|e| e.action == "session.logout_all")
        .unwrap();
    assert_eq!(row.details["sessions_revoked"], 4);
    app.stop().await;
}

async fn sessions_list_their_clients_and_another_can_be_revoked(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let user = create_user(&app, "jane@example.org").await;
    create_user(&app, "other@example.org").await;
    let desktop = login_from(&app, "jane@example.org", "203.0.113.45", CHROME_WINDOWS).await;
    app.clock.advance_ms(1_000);
    let phone = login_from(&app, "jane@example.org", "198.51.100.22", SAFARI_IPHONE).await;
    let stranger = login(&app, "other@example.org").await;

    let (status, list) = call(&app, "GET", "/auth/sessions", &desktop, None).await;
    assert_eq!(status, 200, "{list}");
    let sessions = list["data"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["id"], phone.id.as_str());
    assert_eq!(sessions[0]["is_current"], false);
    assert_eq!(
        sessions[0]["client"],
        json!({"ip_address": "198.51.100.22", "ip_country": null, "ip_city": null,
            "browser_family": "Safari", "os_family": "iOS", "device_type": "mobile"})
    );
    assert_eq!(sessions[1]["is_current"], true);
    assert_eq!(sessions[1]["client"]["browser_family"], "Chrome");
    assert_eq!(sessions[1]["client"]["os_family"], "Windows");
    assert_eq!(sessions[1]["client"]["device_type"], "desktop");
    assert!(sessions[1]["created_at"].is_string() && sessions[1]["last_activity"].is_string());
    assert_eq!(sessions[1]["binding_violation"], json!(null));

    let (status, body) = call(
        &app,
        "DELETE",
        &format!("/auth/sessions/{}", desktop.id),
        &desktop,
        None,
    )
    .await;
    assert_error(status, &body, 400, "invalid_request", Some("session_id"));
    for id in [stranger.id.as_str(), "ses_unknown"] {
        let (status, body) = call(
            &app,
            "DELETE",
            &format!("/auth/sessions/{id}"),
            &desktop,
            None,
        )
        .await;
        assert_error(status, &body, 404, "not_found", None);
    }
    let (status, body) = call(
        &app,
        "DELETE",
        &format!("/auth/sessions/{}", phone.id),
        &desktop,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"revoked": true, "session_id": phone.id})
    );
    assert_eq!(call(&app, "GET", "/auth/me", &phone, None).await.0, 401);
    assert_eq!(call(&app, "GET", "/auth/me", &stranger, None).await.0, 200);
    let (_, list) = call(&app, "GET", "/auth/sessions", &desktop, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let audit = audit_of(&app, &user).await;
    let row = audit
        .iter()
        .find(|e| e.action == "session.revoked")
        .unwrap();
    assert_eq!(row.target, Some(("session".into(), phone.id.clone())));
    app.stop().await;
}

async fn a_password_change_revokes_the_other_sessions(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let user = create_user(&app, "jane@example.org").await;
    let current = login(&app, "jane@example.org").await;
    let other = login(&app, "jane@example.org").await;
    let new_password = "a much better passphrase";
    let body = json!({"current_password": "wrong one", "new_password": new_password});
    let (status, answer) = call(&app, "POST", "/auth/password", &current, Some(body)).await;
    assert_error(
        status,
        &answer,
        400,
        "invalid_request",
        Some("current_password"),
    );
    let body = json!({"current_password": PASSWORD, "new_password": "short"});
    let (status, answer) = call(&app, "POST", "/auth/password", &current, Some(body)).await;
    assert_error(
        status,
        &answer,
        400,
        "invalid_request",
        Some("new_password"),
    );
    let body = json!({"current_password": PASSWORD, "new_password": new_password});
    let (status, answer) = call(&app, "POST", "/auth/password", &current, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["data"],
        json!({"changed": true, "sessions_revoked": 1,
            "message": "Password changed. Other sessions have been logged out."})
    );
    assert_eq!(call(&app, "GET", "/auth/me", &current, None).await.0, 200);
    assert_eq!(call(&app, "GET", "/auth/me", &other, None).await.0, 401);
    let (status, _, _) = try_login(&app, "jane@example.org", PASSWORD, "203.0.113.9", "x").await;
    assert_eq!(status, 401);
    let (status, _, _) =
        try_login(&app, "jane@example.org", new_password, "203.0.113.9", "x").await;
    assert_eq!(status, 200);
    let audit = audit_of(&app, &user).await;
    let names = actions(&audit);
    assert!(
        names.contains(&"password.change_failed".to_string()),
        "{names:?}"
    );
    let row = audit
        .iter()
        .find(|e| e.action == "password.changed")
        .unwrap();
    assert_eq!(row.details["sessions_revoked"], 1);
    for event in &audit {
        let text = event.details.to_string();
        assert!(
            !text.contains(new_password) && !text.contains(PASSWORD),
            "{text}"
        );
    }
    app.stop().await;
}

async fn expired_and_forged_cookies_answer_401(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    create_user(&app, "jane@example.org").await;
    let session = login(&app, "jane@example.org").await;
    let (id, secret) = session.cookie.split_once('.').unwrap();
    let mut forged_secret = secret.to_string();
    let last = if forged_secret.ends_with('A') {
        'B'
    } else {
        'A'
    };
    forged_secret.pop();
    forged_secret.push(last);
    let forgeries = [
        format!("{id}.{forged_secret}"),
        format!("ses_00000000000000000000000000000000.{secret}"),
        id.to_string(),
        "garbage".to_string(),
        format!("{id}.{secret}x!"),
    ];
    for cookie in forgeries {
        let forged = Session {
            cookie,
            ..session.clone()
        };
        let (status, body) = call(&app, "GET", "/auth/me", &forged, None).await;
        assert_error(status, &body, 401, "authentication_error", None);
    }
    let (status, body) = app.send(app.client.get(app.url("/auth/me"))).await;
    assert_error(status, &body, 401, "authentication_error", None);
    assert_eq!(call(&app, "GET", "/auth/me", &session, None).await.0, 200);
    app.clock.advance_ms(7 * DAY_MS - 1_000);
    assert_eq!(call(&app, "GET", "/auth/me", &session, None).await.0, 200);
    app.clock.advance_ms(2_000);
    let (status, body) = call(&app, "GET", "/auth/me", &session, None).await;
    assert_error(status, &body, 401, "authentication_error", None);
    app.stop().await;
}

async fn failed_logins_are_refused_per_address_and_slowed_per_account(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| {
        dashboard_settings(s);
        s.auth.login_failures_per_account_ip_max = 3;
        s.auth.login_failures_per_ip_max = 5;
        s.auth.login_failure_window_secs = 600;
        s.auth.login_delay_after_account_failures = 3;
        s.auth.login_delay_base_ms = 20;
        s.auth.login_delay_max_ms = 40;
    })
    .await
    else {
        return;
    };
    create_user(&app, "jane@example.org").await;
    for _ in 0..3 {
        let (status, _, _) = try_login(&app, "jane@example.org", "wrong", "203.0.113.1", "x").await;
        assert_eq!(status, 401);
    }
    // The guessing address is refused for this account, even with the right password.
    let response = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", "203.0.113.1")
        .json(&json!({"email": "jane@example.org", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_error(429, &body, 429, "rate_limit_exceeded", None);
    // The owner, elsewhere, is slowed down but not locked out.
    login_from(&app, "jane@example.org", "198.51.100.7", "x").await;
    // Per address: other accounts from the guessing address (3 failures counted, the refused
    // attempt handed back).
    for i in 0..2 {
        let email = format!("guess{i}@example.org");
        let (status, _, _) = try_login(&app, &email, "wrong", "203.0.113.1", "x").await;
        assert_eq!(status, 401);
    }
    let (status, body, _) = try_login(&app, "new@example.org", "x", "203.0.113.1", "x").await;
    assert_error(status, &body, 429, "rate_limit_exceeded", None);
    let (status, _, _) = try_login(&app, "new@example.org", "x", "203.0.113.2", "x").await;
    assert_eq!(status, 401);
    // An IPv6 client is one address per /64.
    for i in 1..=5 {
        let ip = format!("2001:db8:7:7::{i}");
        let (status, _, _) = try_login(&app, "v6@example.org", "wrong", &ip, "x").await;
        assert_eq!(status, if i <= 3 { 401 } else { 429 }, "attempt {i}");
    }
    // The window ends: the right password works again from the guessing address.
    app.clock.advance_ms(600_001);
    login_from(&app, "jane@example.org", "203.0.113.1", "x").await;
    app.stop().await;
}

/// Forty wrong passwords at once from one address: the reservation is counted before the
/// password is checked, so no more than the limit are even checked; then the owner, from
/// another address, still gets in (slowed down, not locked).
async fn concurrent_guesses_cannot_pass_the_limit_or_lock_the_owner_out(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| {
        dashboard_settings(s);
        s.auth.login_failures_per_account_ip_max = 5;
        s.auth.login_failures_per_ip_max = 100;
        s.auth.login_delay_after_account_failures = 5;
        s.auth.login_delay_base_ms = 10;
        s.auth.login_delay_max_ms = 50;
    })
    .await
    else {
        return;
    };
    create_user(&app, "jane@example.org").await;
    let guesses = (0..40).map(|i| {
        let app = &app;
        async move {
            let password = format!("wrong {i}");
            try_login(app, "jane@example.org", &password, "203.0.113.9", "x")
                .await
                .0
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 40, "{statuses:?}");
    assert!(
        checked <= 5,
        "{checked} wrong passwords were checked: {statuses:?}"
    );
    // Forty more from forty addresses: each is checked, and the account only slows down.
    let spread = (0..40).map(|i| {
        let app = &app;
        async move {
            let ip = format!("198.51.100.{}", i + 1);
            try_login(app, "jane@example.org", "wrong", &ip, "x")
                .await
                .0
        }
    });
    assert!(
        futures::future::join_all(spread)
            .await
            .iter()
            .all(|s| *s == 401)
    );
    login_from(&app, "jane@example.org", "192.0.2.200", "x").await;
    app.stop().await;
}

/// A session nobody used for `auth.session_idle_timeout_mins` ends, however long it had to
/// live; one in use does not.
async fn an_idle_session_ends(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| {
        dashboard_settings(s);
        s.auth.session_idle_timeout_mins = 30;
    })
    .await
    else {
        return;
    };
    create_user(&app, "jane@example.org").await;
    let busy = login_from(&app, "jane@example.org", "203.0.113.1", CHROME_WINDOWS).await;
    let idle = login_from(&app, "jane@example.org", "203.0.113.1", SAFARI_IPHONE).await;
    for _ in 0..4 {
        app.clock.advance_ms(10 * 60 * 1000);
        assert_eq!(call(&app, "GET", "/auth/me", &busy, None).await.0, 200);
    }
    let (status, body) = call(&app, "GET", "/auth/me", &idle, None).await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (_, list) = call(&app, "GET", "/auth/sessions", &busy, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    app.stop().await;
}

async fn breaking_the_ip_binding_flags_the_session(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let user = create_user(&app, "jane@example.org").await;
    let session = login_from(&app, "jane@example.org", "203.0.113.45", CHROME_WINDOWS).await;
    // country binding without GeoIP: another address is not flagged.
    let moved = Session {
        ip: "198.51.100.22".into(),
        ..session.clone()
    };
    assert_eq!(call(&app, "GET", "/auth/me", &moved, None).await.0, 200);
    let body = json!({"ip_binding": "subnet"});
    let (status, settings) = call(
        &app,
        "PATCH",
        "/auth/security-settings",
        &session,
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["data"]["ip_binding"], "subnet");
    let same_subnet = Session {
        ip: "203.0.113.200".into(),
        ..session.clone()
    };
    assert_eq!(
        call(&app, "GET", "/auth/me", &same_subnet, None).await.0,
        200
    );
    let (_, list) = call(&app, "GET", "/auth/sessions", &session, None).await;
    assert_eq!(list["data"][0]["binding_violation"], json!(null));
    // Another subnet: answered (the binding alerts), flagged once, audited once.
    for _ in 0..2 {
        assert_eq!(call(&app, "GET", "/auth/me", &moved, None).await.0, 200);
    }
    let (_, list) = call(&app, "GET", "/auth/sessions", &session, None).await;
    let violation = &list["data"][0]["binding_violation"];
    assert_eq!(violation["ip_address"], "198.51.100.22", "{list}");
    assert!(violation["detected_at"].is_string());
    let audit = audit_of(&app, &user).await;
    let rows: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "session.binding_violation")
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].ip_address.as_deref(), Some("198.51.100.22"));
    assert_eq!(rows[0].details["ip_binding"], "subnet");
    assert_eq!(rows[0].details["login_ip"], "203.0.113.45");
    let settings_row = audit
        .iter()
        .find(|e| e.action == "security_settings.updated")
        .unwrap();
    assert_eq!(settings_row.details["before"]["ip_binding"], "country");
    assert_eq!(settings_row.details["after"]["ip_binding"], "subnet");
    app.stop().await;
}

async fn security_settings_are_validated(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    create_user(&app, "jane@example.org").await;
    let session = login(&app, "jane@example.org").await;
    for (body, param) in [
        (json!({"ip_binding": "loose"}), Some("ip_binding")),
        (
            json!({"session_timeout_days": 0}),
            Some("session_timeout_days"),
        ),
        (
            json!({"session_timeout_days": 91}),
            Some("session_timeout_days"),
        ),
        (
            json!({"session_timeout_days": "x"}),
            Some("session_timeout_days"),
        ),
        (
            json!({"notify_new_device": "yes"}),
            Some("notify_new_device"),
        ),
        (json!({"unknown": 1}), None),
    ] {
        let (status, answer) = call(
            &app,
            "PATCH",
            "/auth/security-settings",
            &session,
            Some(body),
        )
        .await;
        assert_error(status, &answer, 400, "invalid_request", param);
    }
    let body =
        json!({"ip_binding": "strict", "session_timeout_days": 14, "notify_new_device": false});
    let (status, answer) = call(
        &app,
        "PATCH",
        "/auth/security-settings",
        &session,
        Some(body.clone()),
    )
    .await;
    assert_eq!((status, &answer["data"]), (200, &body));
    let (_, me) = call(&app, "GET", "/auth/me", &session, None).await;
    assert_eq!(me["data"]["security_settings"], body);
    // New sessions live 14 days.
    let (_, _, cookie) = try_login(&app, "jane@example.org", PASSWORD, "203.0.113.45", "x").await;
    assert!(
        cookie
            .unwrap()
            .contains(&format!("Max-Age={}", 14 * 86_400))
    );
    app.stop().await;
}

async fn last_activity_is_written_at_most_once_a_minute(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    create_user(&app, "jane@example.org").await;
    let session = login(&app, "jane@example.org").await;
    let last_activity = |app: &TestApp| {
        let storage = app.app().storage().clone();
        let id = session.id.clone();
        async move {
            storage
                .dashboard()
                .dashboard_session(&id)
                .await
                .unwrap()
                .unwrap()
                .last_activity_ms
        }
    };
    let created = last_activity(&app).await;
    app.clock.advance_ms(30_000);
    assert_eq!(call(&app, "GET", "/auth/me", &session, None).await.0, 200);
    assert_eq!(last_activity(&app).await, created);
    app.clock.advance_ms(31_000);
    assert_eq!(call(&app, "GET", "/auth/me", &session, None).await.0, 200);
    assert_eq!(last_activity(&app).await, created + 61_000);
    app.stop().await;
}

async fn a_login_from_a_new_device_is_audited_when_asked(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let user = create_user(&app, "jane@example.org").await;
    let new_devices = |app: &TestApp| {
        let app_user = user.clone();
        let storage = app.app().storage().clone();
        async move {
            storage
                .audit()
                .audit_events(&ampflow_storage::AuditScope::Subject(app_user), None, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "session.new_device")
                .collect::<Vec<_>>()
        }
    };
    // The first login has nothing to compare with; the same device again is known.
    let desktop = login_from(&app, "jane@example.org", "203.0.113.45", CHROME_WINDOWS).await;
    login_from(&app, "jane@example.org", "198.51.100.1", CHROME_WINDOWS).await;
    assert!(new_devices(&app).await.is_empty());
    let phone = login_from(&app, "jane@example.org", "198.51.100.22", SAFARI_IPHONE).await;
    let rows = new_devices(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].target, Some(("session".into(), phone.id.clone())));
    assert_eq!(rows[0].details["os_family"], "iOS");
    assert_eq!(rows[0].details["device_type"], "mobile");
    // Turned off: no row.
    let body = json!({"notify_new_device": false});
    assert_eq!(
        call(
            &app,
            "PATCH",
            "/auth/security-settings",
            &desktop,
            Some(body)
        )
        .await
        .0,
        200
    );
    login_from(&app, "jane@example.org", "198.51.100.23", "curl/8.0").await;
    assert_eq!(new_devices(&app).await.len(), 1);
    app.stop().await;
}

/// A configured GeoIP database that does not open stops the start, like any bad setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geoip_database_that_does_not_open_stops_the_start() {
    let db = ampflow_storage::testdb::TestDatabase::sqlite();
    let mut settings = common::settings_for(&db);
    settings.geoip.database_path = Some("/nonexistent/GeoLite2-City.mmdb".into());
    let error = ampflow_http::start(settings.clone(), Default::default())
        .await
        .err()
        .expect("the start fails");
    assert!(
        format!("{error:#}").contains("geoip.database_path"),
        "{error:#}"
    );
    settings.geoip.database_path = None;
    settings.auth.session_timeout_days_default = 0;
    let error = ampflow_http::start(settings, Default::default())
        .await
        .err()
        .expect("the start fails");
    assert!(
        format!("{error:#}").contains("session_timeout_days_default"),
        "{error:#}"
    );
}

async fn bad_input_on_the_auth_endpoints_answers_400(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    create_user(&app, "jane@example.org").await;
    let long = "p".repeat(1_025);
    let login = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.send(
                app.client
                    .post(app.url("/auth/login"))
                    .header("x-forwarded-for", "203.0.113.77")
                    .json(&body),
            )
            .await
        }
    };
    for (body, param) in [
        (json!({"email": "jane@example.org"}), Some("password")),
        (json!({"password": PASSWORD}), Some("email")),
        (
            json!({"email": "jane@example.org", "password": ""}),
            Some("password"),
        ),
        (
            json!({"email": "jane@example.org", "password": long}),
            Some("password"),
        ),
        (json!({"email": "", "password": PASSWORD}), Some("email")),
        (json!({"email": 5, "password": PASSWORD}), Some("email")),
        (
            json!({"email": "jane@example.org", "password": PASSWORD, "remember": true}),
            None,
        ),
    ] {
        let (status, answer) = login(body.clone()).await;
        assert_error(status, &answer, 400, "invalid_request", param);
    }
    // None of these counted as a failed login: the right password still works.
    let session = login_from(&app, "jane@example.org", "203.0.113.77", CHROME_WINDOWS).await;

    for (body, param) in [
        (json!({"current_password": PASSWORD}), Some("new_password")),
        (
            json!({"new_password": "a new long password"}),
            Some("current_password"),
        ),
        (
            json!({"current_password": PASSWORD, "new_password": "short"}),
            Some("new_password"),
        ),
        (
            json!({"current_password": PASSWORD, "new_password": long}),
            Some("new_password"),
        ),
        (
            json!({"current_password": long, "new_password": "a new long password"}),
            Some("current_password"),
        ),
    ] {
        let (status, answer) = call(&app, "POST", "/auth/password", &session, Some(body)).await;
        assert_error(status, &answer, 400, "invalid_request", param);
    }
    // The session is unharmed.
    let (status, _) = call(&app, "GET", "/auth/me", &session, None).await;
    assert_eq!(status, 200);
    app.stop().await;
}
