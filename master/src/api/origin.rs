//! Guards against being driven by other web pages, which can reach a master
//! on the operator's machine through the operator's browser:
//!
//! - **Cross-site writes.** A page on any other site can make the browser
//!   POST a form to `http://127.0.0.1:8070/job/save` (no CORS preflight for
//!   a form), which would store a job and run its command. Every request
//!   that is not a read (`GET`, `HEAD`, `OPTIONS`) and says it comes from a
//!   page of another origin (`Origin`, or `Sec-Fetch-Site: cross-site`) is
//!   refused with 403, token or not. Same-origin pages (the web admin, the
//!   original system's admin page served by the master) and clients that
//!   send no `Origin` (curl, scripts, rcronctl) are not affected.
//! - **DNS rebinding.** A foreign domain that resolves to 127.0.0.1 makes
//!   its pages same-origin with the master, reads included. While the API
//!   is open (no token), only requests whose `Host` is a loopback name or
//!   address, or is listed in `allowed_hosts`, are served; others get 421.
//!   With tokens the `Host` is not restricted (masters sit behind proxies),
//!   and a rebinding page has no token.
//!
//! Probes (`/healthz`, `/readyz`) are exempt from the `Host` check.

use std::net::IpAddr;
use std::sync::Arc;

use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::error_response;

/// What the guard lets through.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Whether the API is open (no token): the `Host` check applies.
    pub open: bool,
    /// Origins, besides the master's own, whose pages may change things:
    /// `scheme://host[:port]`, lowercase (`RCRON_ALLOWED_ORIGINS`; the
    /// `public_url`'s origin is added).
    pub allowed_origins: Vec<String>,
    /// Host names, besides loopback ones, an open API answers
    /// (`RCRON_ALLOWED_HOSTS`), lowercase, without port.
    pub allowed_hosts: Vec<String>,
}

impl OriginPolicy {
    /// The policy for a master; `public_url` is its configured address.
    pub fn new(
        open: bool,
        allowed_origins: &[String],
        allowed_hosts: &[String],
        public_url: Option<&str>,
    ) -> Result<Self, String> {
        let mut origins = Vec::new();
        for o in allowed_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
        {
            origins.push(parse_origin(o).map_err(|e| {
                format!("RCRON_ALLOWED_ORIGINS: {o:?} is not an origin (scheme://host[:port]): {e}")
            })?);
        }
        if let Some(url) = public_url.filter(|u| !u.is_empty()) {
            let origin = url
                .split_once("://")
                .map(|(scheme, rest)| {
                    let authority = rest.split('/').next().unwrap_or_default();
                    format!("{scheme}://{authority}")
                })
                .unwrap_or_default();
            origins.push(
                parse_origin(&origin)
                    .map_err(|e| format!("public_url {url:?} has no valid origin: {e}"))?,
            );
        }
        let mut hosts = Vec::new();
        for h in allowed_hosts
            .iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
        {
            let (host, _) = split_host(h)
                .ok_or_else(|| format!("RCRON_ALLOWED_HOSTS: {h:?} is not a host name"))?;
            hosts.push(host);
        }
        Ok(Self {
            open,
            allowed_origins: origins,
            allowed_hosts: hosts,
        })
    }
}

/// `scheme://host[:port]`, lowercased, default ports dropped.
fn parse_origin(origin: &str) -> Result<String, &'static str> {
    let (scheme, authority) = origin.split_once("://").ok_or("no scheme")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("scheme is not http or https");
    }
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err("not a bare host[:port]");
    }
    let (host, port) = split_host(authority).ok_or("bad host or port")?;
    let default = if scheme == "https" { 443 } else { 80 };
    Ok(match port {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Host (lowercase, IPv6 without brackets) and port of `host[:port]`.
fn split_host(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (v6.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    valid.then(|| (host.to_ascii_lowercase(), port))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn header_str(req: &Request, name: header::HeaderName) -> Option<Result<&str, ()>> {
    req.headers().get(name).map(|v| v.to_str().map_err(|_| ()))
}

/// Why a request is refused, if it is.
fn refusal(req: &Request, policy: &OriginPolicy) -> Option<(StatusCode, String)> {
    let host = match header_str(req, header::HOST) {
        None => None,
        Some(Ok(h)) => match split_host(h) {
            Some((host, port)) => Some((h, host, port)),
            None => {
                return Some((
                    StatusCode::BAD_REQUEST,
                    format!("malformed Host header {h:?}"),
                ));
            }
        },
        Some(Err(())) => {
            return Some((StatusCode::BAD_REQUEST, "malformed Host header".into()));
        }
    };
    let path = req.uri().path();
    if policy.open
        && path != "/healthz"
        && path != "/readyz"
        && let Some((raw, name, _)) = &host
        && !is_loopback(name)
        && !policy.allowed_hosts.iter().any(|h| h == name)
    {
        return Some((
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this master's API is open (no token), so it only answers requests for a loopback host, not {raw:?} \
                 (a foreign name resolving to this machine is how DNS rebinding reaches it); \
                 list the name in RCRON_ALLOWED_HOSTS, or configure an API token"
            ),
        ));
    }
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    let origin = match header_str(req, header::ORIGIN) {
        None if cross_site => {
            return Some((
                StatusCode::FORBIDDEN,
                "cross-site request refused: a page of another site cannot change this master \
                 (Sec-Fetch-Site: cross-site)"
                    .into(),
            ));
        }
        None => return None,
        Some(Err(())) => {
            return Some((
                StatusCode::FORBIDDEN,
                "malformed Origin header; request refused".into(),
            ));
        }
        Some(Ok(o)) => o,
    };
    let parsed = match parse_origin(origin) {
        Ok(p) => p,
        Err(why) => {
            return Some((
                StatusCode::FORBIDDEN,
                format!("Origin {origin:?} cannot be checked ({why}); request refused"),
            ));
        }
    };
    // Same origin: the page was served by the host this request is for
    // (the scheme is not compared: behind a TLS proxy the master sees http).
    let same = host.as_ref().is_some_and(|(_, name, port)| {
        let default = if parsed.starts_with("https://") {
            443
        } else {
            80
        };
        let (o_host, o_port) = parsed
            .split_once("://")
            .and_then(|(_, a)| split_host(a))
            .unwrap_or_default();
        o_host == *name && o_port.unwrap_or(default) == port.unwrap_or(default)
    });
    if same || policy.allowed_origins.contains(&parsed) {
        return None;
    }
    Some((
        StatusCode::FORBIDDEN,
        format!(
            "cross-origin request refused: a page of {origin} cannot change this master; \
             if that origin is yours, list it in RCRON_ALLOWED_ORIGINS"
        ),
    ))
}

/// Lets the request through `ep` unless [`refusal`] says why not.
pub(crate) async fn check<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    policy: Arc<OriginPolicy>,
) -> poem::Result<Response> {
    if let Some((status, message)) = refusal(&req, &policy) {
        tracing::warn!(
            method = %req.method(),
            path = req.uri().path(),
            origin = ?req.headers().get(header::ORIGIN),
            host = ?req.headers().get(header::HOST),
            %status,
            "request refused: {message}"
        );
        return Ok(error_response(status, &message));
    }
    Ok(ep.call(req).await?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, host: Option<&str>, origin: Option<&str>) -> Request {
        let mut b = Request::builder().method(method).uri_str("/job/save");
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.finish()
    }

    fn open() -> OriginPolicy {
        OriginPolicy::new(true, &[], &["cron.lan".into()], None).expect("policy")
    }

    #[test]
    fn same_origin_and_origin_less_writes_pass_and_foreign_ones_are_refused() {
        let p = open();
        assert_eq!(
            refusal(&req(Method::POST, Some("127.0.0.1:8070"), None), &p),
            None
        );
        assert_eq!(
            refusal(
                &req(
                    Method::POST,
                    Some("127.0.0.1:8070"),
                    Some("http://127.0.0.1:8070")
                ),
                &p
            ),
            None
        );
        let (status, msg) = refusal(
            &req(
                Method::POST,
                Some("127.0.0.1:8070"),
                Some("https://evil.example"),
            ),
            &p,
        )
        .expect("refused");
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(msg.contains("RCRON_ALLOWED_ORIGINS"), "{msg}");
        // Another port of the same host is another origin.
        assert!(
            refusal(
                &req(
                    Method::POST,
                    Some("127.0.0.1:8070"),
                    Some("http://127.0.0.1:9999")
                ),
                &p
            )
            .is_some()
        );
        assert!(refusal(&req(Method::POST, Some("127.0.0.1:8070"), Some("null")), &p).is_some());
        // Reads are not writes.
        assert_eq!(
            refusal(
                &req(
                    Method::GET,
                    Some("127.0.0.1:8070"),
                    Some("https://evil.example")
                ),
                &p
            ),
            None
        );
    }

    #[test]
    fn an_open_api_answers_only_loopback_or_listed_hosts() {
        let p = open();
        for ok in [
            "localhost:8070",
            "127.0.0.1",
            "127.9.9.9:1",
            "[::1]:8070",
            "cron.lan:8070",
            "LOCALHOST",
        ] {
            assert_eq!(refusal(&req(Method::GET, Some(ok), None), &p), None, "{ok}");
        }
        let (status, msg) = refusal(
            &req(Method::GET, Some("rebind.evil.example:8070"), None),
            &p,
        )
        .expect("refused");
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        assert!(msg.contains("RCRON_ALLOWED_HOSTS"), "{msg}");
        let closed = OriginPolicy::new(false, &[], &[], None).expect("policy");
        assert_eq!(
            refusal(&req(Method::GET, Some("cron.example.com"), None), &closed),
            None
        );
        let (status, _) = refusal(&req(Method::GET, Some("bad host!"), None), &p).expect("refused");
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn configured_origins_and_the_public_url_are_allowed_and_bad_ones_rejected() {
        let p = OriginPolicy::new(
            false,
            &["https://Admin.Example.com:443".into()],
            &[],
            Some("https://cron.example.com/ui/"),
        )
        .expect("policy");
        assert_eq!(
            p.allowed_origins,
            ["https://admin.example.com", "https://cron.example.com"]
        );
        for origin in ["https://admin.example.com", "https://cron.example.com"] {
            assert_eq!(
                refusal(&req(Method::POST, Some("10.0.0.5:8070"), Some(origin)), &p),
                None
            );
        }
        assert!(OriginPolicy::new(false, &["admin.example.com".into()], &[], None).is_err());
        assert!(OriginPolicy::new(false, &[], &["a b".into()], None).is_err());
    }
}
