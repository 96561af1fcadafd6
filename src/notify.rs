//! Notify: composes emails and delivers the outbox, over SMTP when a server is configured
//! and otherwise as `.eml` files in a local folder. Rules and digests only ever queue
//! messages in the store; this module is the one that talks to the outside.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Email, TlsMode};
use crate::store::{now_ms, OutboxEmail, Store};

/// Give up on an email after this many failed attempts (about four days of retries).
pub const MAX_ATTEMPTS: i64 = 40;

/// An inline image referenced from the HTML part as `cid:{content_id}`.
pub struct InlineImage {
    pub content_id: String,
    pub png: Vec<u8>,
}

/// Builds a multipart/alternative (plain text + HTML) message, with inline images
/// related to the HTML part. Returns the complete RFC 5322 text.
pub fn compose(
    from: &str,
    to: &[String],
    subject: &str,
    text: &str,
    html: &str,
    images: Vec<InlineImage>,
) -> Result<String> {
    let from: Mailbox = from
        .parse()
        .with_context(|| format!("bad sender address `{from}`"))?;
    let mut builder = Message::builder().from(from).subject(subject);
    for r in to {
        builder = builder.to(r
            .parse()
            .with_context(|| format!("bad recipient address `{r}`"))?);
    }
    let html_part = SinglePart::builder()
        .header(ContentType::TEXT_HTML)
        .body(html.to_string());
    let alternative_html = if images.is_empty() {
        MultiPart::alternative()
            .singlepart(SinglePart::plain(text.to_string()))
            .singlepart(html_part)
    } else {
        let mut related = MultiPart::related().singlepart(html_part);
        for img in images {
            related = related.singlepart(
                Attachment::new_inline(img.content_id)
                    .body(img.png, ContentType::parse("image/png").expect("valid")),
            );
        }
        MultiPart::alternative()
            .singlepart(SinglePart::plain(text.to_string()))
            .multipart(related)
    };
    let message = builder
        .multipart(alternative_html)
        .context("cannot build the email")?;
    String::from_utf8(message.formatted()).context("email is not 7-bit clean")
}

/// Where messages go.
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: String,
    },
    /// No SMTP server configured: each message becomes a file.
    Folder(PathBuf),
}

impl Mailer {
    pub fn from_config(email: &Email) -> Result<Mailer> {
        let Some(smtp) = &email.smtp else {
            return Ok(Mailer::Folder(email.outbox_dir.clone()));
        };
        let port = smtp.port();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(port)
            .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
        builder = match smtp.tls {
            TlsMode::None => builder.tls(Tls::None),
            TlsMode::Starttls => builder.tls(Tls::Required(TlsParameters::new(smtp.host.clone())?)),
            TlsMode::Tls => builder.tls(Tls::Wrapper(TlsParameters::new(smtp.host.clone())?)),
        };
        if let Some(user) = &smtp.username {
            let password = smtp.password().with_context(|| {
                format!(
                    "email.smtp.username is set but the password variable {} is empty",
                    smtp.password_env
                )
            })?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from: email.from.clone(),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Mailer::Smtp { .. } => "SMTP".into(),
            Mailer::Folder(dir) => format!("files in {}", dir.display()),
        }
    }

    async fn deliver(&self, email: &OutboxEmail) -> Result<String> {
        match self {
            Mailer::Smtp { transport, from } => {
                let from: Mailbox = from.parse()?;
                let to = email
                    .recipients
                    .iter()
                    .map(|r| r.parse::<Mailbox>().map(|m| m.email))
                    .collect::<Result<Vec<_>, _>>()?;
                let envelope = lettre::address::Envelope::new(Some(from.email), to)?;
                let response = transport
                    .send_raw(&envelope, email.message.as_bytes())
                    .await?;
                Ok(format!("accepted by the SMTP server ({})", response.code()))
            }
            Mailer::Folder(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let name = format!("{:06}-{}.eml", email.id, email.kind);
                let tmp = dir.join(format!(".{name}.tmp"));
                let path = dir.join(&name);
                // Write then rename: a reader never sees half a message.
                tokio::fs::write(&tmp, email.message.as_bytes()).await?;
                tokio::fs::rename(&tmp, &path).await?;
                Ok(format!("written to {}", path.display()))
            }
        }
    }
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: u64,
    pub retrying: u64,
    pub gave_up: u64,
}

/// Delay before the next attempt: 1 min, 2, 4, ... capped at 2 hours.
pub fn backoff(attempts: i64) -> Duration {
    let minutes = 1u64 << attempts.clamp(0, 7);
    Duration::from_secs((minutes * 60).min(2 * 3600))
}

/// Sends every due email once. An email is marked sent only after the server (or the
/// file system) accepted it; a failure schedules a retry with backoff.
pub async fn deliver_due(store: &Store, mailer: &Mailer, worker: &str) -> Result<DeliveryReport> {
    let mut report = DeliveryReport::default();
    loop {
        let batch = store.claim_emails(worker, 20, 5 * 60 * 1000).await?;
        if batch.is_empty() {
            return Ok(report);
        }
        for email in batch {
            match mailer.deliver(&email).await {
                Ok(how) => {
                    store.mark_email_sent(email.id).await?;
                    tracing::info!(id = email.id, subject = %email.subject, "email {how}");
                    report.sent += 1;
                }
                Err(e) => {
                    let attempts = email.attempts + 1;
                    let msg = format!("{e:#}");
                    if attempts >= MAX_ATTEMPTS {
                        store.mark_email_failed(email.id, &msg, None).await?;
                        tracing::error!(id = email.id, attempts, "gave up on email: {msg}");
                        report.gave_up += 1;
                    } else {
                        let retry = now_ms() + backoff(attempts).as_millis() as i64;
                        store.mark_email_failed(email.id, &msg, Some(retry)).await?;
                        tracing::warn!(
                            id = email.id,
                            attempts,
                            "email not sent, will retry: {msg}"
                        );
                        report.retrying += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_has_both_parts_and_inline_image() {
        let msg = compose(
            "zmot <z@example.com>",
            &["a@example.com".into()],
            "Acme: 2 alerts",
            "plain body",
            "<p>html body <img src=\"cid:chart1\"></p>",
            vec![InlineImage {
                content_id: "chart1".into(),
                png: vec![137, 80, 78, 71],
            }],
        )
        .unwrap();
        assert!(msg.contains("multipart/alternative"));
        assert!(msg.contains("multipart/related"));
        assert!(msg.contains("Content-ID: <chart1>"));
        assert!(msg.contains("plain body"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(60));
        assert_eq!(backoff(1), Duration::from_secs(120));
        assert_eq!(backoff(30), Duration::from_secs(7200));
    }
}
