//! What every request passes: the Host check (a loopback server answers
//! only to loopback names, so a web page elsewhere cannot reach it through
//! DNS rebinding), the token when one is set, and security headers on
//! every answer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api_error::ApiError;
use super::state::AppState;

/// The cookie that carries the token after `/?token=...`.
pub const TOKEN_COOKIE: &str = "ragafusion_token";

/// Whether a Host header names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

/// The token a request carries: `Authorization: Bearer T`, the cookie,
/// or `?token=T` (for links and the first page load).
fn given_token(headers: &HeaderMap, query: Option<&str>) -> (Option<String>, bool) {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(t) = bearer {
        return (Some(t.trim().to_string()), false);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{TOKEN_COOKIE}="))
                .map(str::to_string)
        });
    if cookie.is_some() {
        return (cookie, false);
    }
    let from_query = query
        .and_then(|q| {
            Query::<HashMap<String, String>>::try_from_uri(&format!("/?{q}").parse().ok()?).ok()
        })
        .and_then(|Query(m)| m.get("token").cloned());
    let set_cookie = from_query.is_some();
    (from_query, set_cookie)
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The middleware.
pub async fn guard(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if app.options.host.is_loopback() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            let e = ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Host {host:?}: this server answers to localhost only"),
            );
            return e.into_response();
        }
    }
    let mut set_cookie = None;
    if let Some(token) = &app.options.token {
        let (given, from_query) = given_token(request.headers(), request.uri().query());
        match given {
            Some(g) if same(&g, token) => {
                if from_query {
                    set_cookie = Some(format!(
                        "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    ));
                }
            }
            _ => {
                let e = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this server needs its token: `Authorization: Bearer TOKEN`, or open /?token=TOKEN",
                );
                return e.into_response();
            }
        }
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    response
}

/// The answer to an unknown API path.
pub async fn api_not_found() -> ApiError {
    ApiError::not_found("no such API path; see docs/server.md")
}

/// Whether `token` can travel in a header and a cookie: 16 or more
/// visible ASCII characters, none of `;`, `,`, `"` or `\`.
pub fn usable_token(token: &str) -> bool {
    token.len() >= 16
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_tokens() {
        for ok in ["localhost:8642", "127.0.0.1", "[::1]:80", "localhost"] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:8642", "127.0.0.1.evil.example", "", "[::2]"] {
            assert!(!loopback_host(bad), "{bad}");
        }
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert!(usable_token("0123456789abcdef-_~"));
        assert!(!usable_token("short") && !usable_token("0123456789abcdef;x"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ragafusion_token=t0"),
        );
        assert_eq!(given_token(&h, None), (Some("t0".into()), false));
        assert_eq!(
            given_token(&HeaderMap::new(), Some("x=1&token=t%2B1")),
            (Some("t+1".into()), true)
        );
    }
}
