//! Who may do what. Two plain tokens (`RCRON_API_TOKEN` may do everything,
//! `RCRON_API_READ_TOKEN` may only read) and named API keys from a keys
//! file (`RCRON_API_KEYS_FILE`), each with a role:
//!
//! - `read`: `GET`/`HEAD` only;
//! - `operator`: also run, kill (a job's runs or one run), pause, resume
//!   (`POST …/pause`, `…/resume`, or a `PATCH` of `disabled` alone) —
//!   not create, change or delete jobs;
//! - `admin`: everything.
//!
//! The file holds the SHA-256 of each secret, never the secret
//! (`rcronctl key hash` prints it), and is read again on SIGHUP; a file that
//! does not load keeps the keys in use and says why. With no token and no
//! key the API is open — which the master only allows on a loopback address
//! unless started with `--insecure` (see
//! [`crate::config::MasterConfig::check_exposure`]).
//!
//! Public without a token: `/healthz`, `/readyz`, the admin page and its
//! files (the page asks for a token on its first 401), the OpenAPI document
//! and Swagger UI. Secrets are compared in constant time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
pub use rcron_shared::secret::hash_secret;
use rcron_shared::secret::sha256;
use serde::Deserialize;

use super::error_response;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only.
    Read,
    /// Reads, runs, kills, pauses and resumes.
    Operator,
    /// Everything.
    Admin,
}

/// A named key, as loaded from the keys file.
#[derive(Debug, Clone)]
pub(crate) struct ApiKey {
    /// Who holds it (logged with what it does).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret.
    sha256: [u8; 32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    role: Role,
    sha256: String,
}

/// Reads and checks a keys file.
pub(crate) fn load_keys(path: &Path) -> Result<Vec<ApiKey>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_keys(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_keys(text: &str) -> Result<Vec<ApiKey>, String> {
    let file: KeysFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut names = HashSet::new();
    let mut keys = Vec::new();
    for entry in file.key {
        let name = entry.name.trim().to_string();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err("a key has an empty or unprintable name".into());
        }
        if !names.insert(name.clone()) {
            return Err(format!("key name {name:?} appears twice"));
        }
        let sha256 = decode_sha256(&entry.sha256).ok_or_else(|| {
            format!("key {name:?}: sha256 must be 64 hex digits (see `rcronctl key hash`)")
        })?;
        keys.push(ApiKey {
            name,
            role: entry.role,
            sha256,
        });
    }
    Ok(keys)
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The configured tokens and keys.
#[derive(Debug, Default)]
pub struct Tokens {
    /// May do everything.
    pub admin: Option<String>,
    /// May only read.
    pub read: Option<String>,
    /// The keys file, re-read by [`Tokens::reload`].
    pub keys_file: Option<PathBuf>,
    keys: RwLock<Arc<Vec<ApiKey>>>,
}

impl Tokens {
    /// Tokens and the keys of `keys_file` (which must load).
    pub fn new(
        admin: Option<String>,
        read: Option<String>,
        keys_file: Option<PathBuf>,
    ) -> Result<Self, String> {
        let keys = match &keys_file {
            Some(path) => load_keys(path)?,
            None => Vec::new(),
        };
        Ok(Self {
            admin,
            read,
            keys_file,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// Whether any token or key is configured (the API is closed). A keys
    /// file counts even while empty: it means to close the API.
    pub fn enabled(&self) -> bool {
        self.admin.is_some() || self.read.is_some() || self.keys_file.is_some()
    }

    fn keys(&self) -> Arc<Vec<ApiKey>> {
        // Held to clone an `Arc`; nothing panics while it is held.
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the keys file again; on error the keys in use stay.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.keys_file else {
            return Ok(0);
        };
        let keys = load_keys(path)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    /// Who `presented` is and what it may do.
    fn identify(&self, presented: &str) -> Option<(String, Role)> {
        let is = |token: &Option<String>| {
            token
                .as_ref()
                .is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
        };
        if is(&self.admin) {
            return Some(("admin-token".into(), Role::Admin));
        }
        if is(&self.read) {
            return Some(("read-token".into(), Role::Read));
        }
        let digest = sha256(presented);
        self.keys()
            .iter()
            .find(|k| constant_time_eq(&k.sha256, &digest))
            .map(|k| (k.name.clone(), k.role))
    }
}

/// Who made a request, for handlers and logs: a key's name, `admin-token`,
/// `read-token`, or `anonymous` on an open API.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

#[derive(Debug, PartialEq, Eq)]
enum Access {
    Public,
    Need(Role),
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
    // The legacy reads answer any method, as the original did; and a GET
    // of a legacy write carries no form, so it changes nothing.
    if req.method() == Method::GET
        || req.method() == Method::HEAD
        || matches!(path, "/job/list" | "/job/log" | "/worker/list")
    {
        return Access::Need(Role::Read);
    }
    let operate = path == "/job/kill"
        || (path.starts_with("/api/v1/runs/") && path.ends_with("/kill"))
        || (path.starts_with("/api/v1/jobs/")
            && ["/kill", "/run", "/pause", "/resume"]
                .iter()
                .any(|action| path.ends_with(action)));
    Access::Need(if operate { Role::Operator } else { Role::Admin })
}

/// Whether the request is a `PATCH` of a job that sets `disabled` and
/// nothing else: a pause or resume, which operators may do. The body was
/// read into memory by the size limit, which runs first; it is put back
/// for the handler.
async fn is_pause_patch(req: &mut Request) -> bool {
    let path = req.uri().path();
    let is_job = path
        .strip_prefix("/api/v1/jobs/")
        .is_some_and(|name| !name.is_empty() && !name.contains('/'));
    if req.method() != Method::PATCH || !is_job {
        return false;
    }
    let Ok(bytes) = req.take_body().into_bytes().await else {
        return false;
    };
    let fields: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&bytes).ok();
    req.set_body(poem::Body::from_bytes(bytes));
    fields.is_some_and(|f| f.len() == 1 && f.get("disabled").is_some_and(|d| d.is_boolean()))
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

/// Lets the request through `ep` when its token or key allows it.
pub(crate) async fn check<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    tokens: Arc<Tokens>,
) -> poem::Result<Response> {
    if !tokens.enabled() {
        req.extensions_mut().insert(Caller("anonymous".into()));
        return Ok(ep.call(req).await?.into_response());
    }
    let needed = match required(&req) {
        Access::Need(Role::Admin) if is_pause_patch(&mut req).await => Role::Operator,
        Access::Need(role) => role,
        Access::Public => return Ok(ep.call(req).await?.into_response()),
    };
    match presented(&req).and_then(|p| tokens.identify(p)) {
        Some((name, role)) if role >= needed => {
            req.extensions_mut().insert(Caller(name));
            Ok(ep.call(req).await?.into_response())
        }
        Some((name, role)) => {
            let why = match (role, needed) {
                (Role::Read, _) => "may only read",
                _ => "may read, run, kill, pause and resume, not create, change or delete jobs",
            };
            tracing::warn!(key = %name, path = req.uri().path(), method = %req.method(), "request refused: role too low");
            Ok(error_response(
                StatusCode::FORBIDDEN,
                &format!("key {name:?} {why}; this request needs the {needed:?} role"),
            ))
        }
        None => {
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
    }
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

    #[test]
    fn a_keys_file_is_checked_and_roles_order() {
        let hash = hash_secret("s3cret-operator-key");
        assert_eq!(hash.len(), 64);
        let ok = format!("[[key]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{hash}\"\n");
        let keys = parse_keys(&ok).expect("valid");
        assert_eq!(
            (keys[0].name.as_str(), keys[0].role),
            ("ops", Role::Operator)
        );
        assert!(Role::Read < Role::Operator && Role::Operator < Role::Admin);
        let bad_role = ok.replace("operator", "root");
        assert!(parse_keys(&bad_role).is_err());
        let twice = format!("{ok}{ok}");
        assert!(parse_keys(&twice).expect_err("duplicate").contains("twice"));
        let short = ok.replace(&hash, "abc");
        assert!(parse_keys(&short).expect_err("bad hash").contains("64 hex"));
        let tokens = Tokens {
            keys: RwLock::new(Arc::new(keys)),
            keys_file: Some(PathBuf::from("/nonexistent")),
            ..Tokens::default()
        };
        assert_eq!(
            tokens.identify("s3cret-operator-key"),
            Some(("ops".into(), Role::Operator))
        );
        assert_eq!(tokens.identify("wrong"), None);
        assert!(tokens.reload().is_err(), "a missing file keeps the keys");
        assert!(tokens.identify("s3cret-operator-key").is_some());
    }
}
