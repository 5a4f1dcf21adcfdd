//! Webhooks with reqwest: Slack-compatible (`{"text": ...}`) or a generic
//! JSON payload; custom headers (for auth); a timeout; any non-2xx answer
//! is a failure to retry.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::{Alert, AlertSink, Delivery, Error};

/// The payload a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// `{"text": "..."}`, for Slack and compatible chats.
    Slack,
    /// The full alert as JSON, with `idempotencyKey` = run id.
    Generic,
}

/// Sends alerts to one URL.
pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    kind: WebhookKind,
}

impl WebhookSink {
    /// A sink posting `kind` payloads to `url` with extra `headers`.
    pub fn new(
        url: &str,
        kind: WebhookKind,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Self, Error> {
        // reqwest is built without a crypto provider of its own; install the
        // one the whole project uses (ring). A second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::Message(format!("header {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::Message(format!("header value: {e}")))?;
            map.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(map)
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Webhook(e.to_string()))?;
        Ok(Self {
            client,
            url: url.to_string(),
            kind,
        })
    }
}

impl AlertSink for WebhookSink {
    fn name(&self) -> &str {
        match self.kind {
            WebhookKind::Slack => "slack",
            WebhookKind::Generic => "webhook",
        }
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> Delivery<'a> {
        Box::pin(async move {
            let body = match self.kind {
                WebhookKind::Slack => serde_json::json!({ "text": alert.slack_text() }),
                WebhookKind::Generic => alert.payload(),
            };
            let resp = self
                .client
                .post(&self.url)
                .header("Idempotency-Key", alert.idempotency_key())
                .json(&body)
                .send()
                .await
                .map_err(|e| Error::Webhook(format!("{}: {e}", self.url)))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(Error::Webhook(format!(
                    "{} answered {}",
                    self.url,
                    resp.status()
                )))
            }
        })
    }
}
