//! Liveness and readiness probes for load balancers and orchestrators.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{IntoResponse, Response, handler};

use crate::api::AppState;

/// `GET /healthz`: the process is up and serving.
#[handler]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 when etcd answers, 503 (with the reason) when not.
#[handler]
pub(crate) async fn readyz(Data(state): Data<&Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response(),
    }
}
