//! API tokens: an admin token may do everything, a read-only token may only
//! read. With no token configured the API is open — which the master only
//! allows on a loopback address unless started with `--insecure` (see
//! [`crate::config::MasterConfig::check_exposure`]).
//!
//! Public without a token: `/healthz`, `/readyz`, the admin page and its
//! files (the page asks for a token on its first 401), the OpenAPI document
//! and Swagger UI. Reads (`GET`, `HEAD`, including `/metrics` and the
//! legacy `GET` routes) need either token; everything else needs the admin
//! token. Tokens are compared in constant time.

use std::sync::Arc;

use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::error_response;

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// May do everything.
    pub admin: Option<String>,
    /// May only read.
    pub read: Option<String>,
}

impl Tokens {
    /// Whether any token is configured (the API is closed).
    pub fn enabled(&self) -> bool {
        self.admin.is_some() || self.read.is_some()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Access {
    Public,
    Read,
    Admin,
}

fn required(req: &Request) -> Access {
    let path = req.uri().path();
    if path == "/"
        || path.starts_with("/ui/")
        || path == "/healthz"
        || path == "/readyz"
        || path.starts_with("/docs")
        || path == "/api/v1/openapi.json"
    {
        return Access::Public;
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        Access::Read
    } else {
        Access::Admin
    }
}

/// Equal bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Lets the request through `ep` when its token allows it.
pub(crate) async fn check<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    tokens: Arc<Tokens>,
) -> poem::Result<Response> {
    let needed = required(&req);
    if !tokens.enabled() || needed == Access::Public {
        return Ok(ep.call(req).await?.into_response());
    }
    let given = presented(&req).map(str::as_bytes);
    let is = |token: &Option<String>| match (token, given) {
        (Some(t), Some(g)) => constant_time_eq(t.as_bytes(), g),
        _ => false,
    };
    let (admin, read) = (is(&tokens.admin), is(&tokens.read));
    if admin || (read && needed == Access::Read) {
        return Ok(ep.call(req).await?.into_response());
    }
    if read {
        return Ok(error_response(
            StatusCode::FORBIDDEN,
            "this token may only read; changes need the admin token",
        ));
    }
    let mut resp = error_response(
        StatusCode::UNAUTHORIZED,
        "missing or invalid API token: send `Authorization: Bearer <token>`",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"rcron\""),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
