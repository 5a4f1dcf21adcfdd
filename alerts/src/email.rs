//! Email over SMTP with lettre (tokio, rustls): plain, STARTTLS or TLS,
//! with optional authentication.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::{Alert, AlertSink, Delivery, Error};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// No encryption (a relay on localhost, a test server).
    None,
    /// Plain connection upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl std::str::FromStr for SmtpTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::Starttls),
            "tls" => Ok(Self::Tls),
            other => Err(format!("expected none, starttls or tls, got {other:?}")),
        }
    }
}

/// Where and how to send mail.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Server host name.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Connection security.
    pub tls: SmtpTls,
    /// User name and password, when the server wants them.
    pub credentials: Option<(String, String)>,
    /// Sender address.
    pub from: String,
    /// Recipients of every alert (jobs add their own).
    pub to: Vec<String>,
    /// How long one delivery may take.
    pub timeout: Duration,
}

/// Sends alerts by email.
pub struct EmailSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<String>,
}

impl EmailSink {
    /// A sink for `settings`; checks the sender address and TLS set-up.
    pub fn new(settings: &SmtpSettings) -> Result<Self, Error> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| Error::Message(format!("sender {:?}: {e}", settings.from)))?;
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let params = TlsParameters::new(settings.host.clone())
                    .map_err(|e| Error::Smtp(e.to_string()))?;
                if settings.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
                .port(settings.port)
                .tls(tls)
                .timeout(Some(settings.timeout));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            to: settings.to.clone(),
        })
    }

    fn message(&self, alert: &Alert) -> Result<Option<Message>, Error> {
        let mut recipients: Vec<&String> = self.to.iter().chain(alert.job_emails.iter()).collect();
        recipients.sort();
        recipients.dedup();
        if recipients.is_empty() {
            return Ok(None);
        }
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(alert.subject())
            .header(ContentType::TEXT_PLAIN);
        for to in recipients {
            let mailbox: Mailbox = to
                .parse()
                .map_err(|e| Error::Message(format!("recipient {to:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        builder
            .body(alert.body())
            .map(Some)
            .map_err(|e| Error::Message(e.to_string()))
    }
}

impl AlertSink for EmailSink {
    fn name(&self) -> &str {
        "email"
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> Delivery<'a> {
        Box::pin(async move {
            let Some(message) = self.message(alert)? else {
                return Ok(());
            };
            self.transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| Error::Smtp(e.to_string()))
        })
    }
}
