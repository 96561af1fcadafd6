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
use crate::store::{OutboxEmail, Refusal, Store};

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
    // A Message-ID made now is stored with the message, so every delivery of it (to
    // each recipient, on a retry, or again after a sender died between the server's
    // acceptance and its record) is the same message, which a mail client shows once.
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(None);
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
        /// The longest one envelope may take, connection to acceptance
        /// (`email.smtp.timeout_secs`).
        deadline: Duration,
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
            deadline: Duration::from_secs(smtp.timeout_secs),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Mailer::Smtp { .. } => "SMTP".into(),
            Mailer::Folder(dir) => format!("files in {}", dir.display()),
        }
    }

    /// The envelopes to send to the recipients still waiting: over SMTP one per recipient,
    /// so that one refused address does not hold back the others and each acceptance is
    /// recorded on its own; a folder gets one file for all of them.
    fn envelopes(&self, pending: Vec<String>) -> Vec<Vec<String>> {
        match self {
            Mailer::Smtp { .. } => pending.into_iter().map(|r| vec![r]).collect(),
            Mailer::Folder(_) => vec![pending],
        }
    }

    async fn deliver(&self, email: &OutboxEmail, to: &[String]) -> Result<String, Failure> {
        match self {
            Mailer::Smtp {
                transport,
                from,
                deadline,
            } => {
                let from: Mailbox = from.parse().map_err(|e| {
                    Failure::Unreachable(anyhow::anyhow!("bad sender address: {e}"))
                })?;
                let to = to
                    .iter()
                    .map(|r| {
                        r.parse::<Mailbox>().map(|m| m.email).map_err(|e| {
                            Failure::Permanent(format!("not a valid email address: {e}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let envelope = lettre::address::Envelope::new(Some(from.email), to)
                    .map_err(|e| Failure::Unreachable(e.into()))?;
                // lettre's timeout bounds only the connection: a server that takes it
                // and then stalls would hold the send past the email's lease, and another
                // worker would send the email again. The whole envelope gets the deadline.
                let sent = tokio::time::timeout(
                    *deadline,
                    transport.send_raw(&envelope, email.message.as_bytes()),
                )
                .await
                .map_err(|_| {
                    Failure::Unreachable(anyhow::anyhow!(
                        "the SMTP server did not take the email within {} s",
                        deadline.as_secs()
                    ))
                })?;
                match sent {
                    Ok(response) => {
                        Ok(format!("accepted by the SMTP server ({})", response.code()))
                    }
                    // A 5xx refusing the address will be the same next time: retrying
                    // only delays telling someone that the address is wrong. Other 5xx
                    // (authentication, the sender or the message refused) are the
                    // server's or its configuration's, for every recipient: retried,
                    // so fixing them delivers what waits.
                    Err(e) if e.is_permanent() && refuses_the_address(&e) => {
                        Err(Failure::Permanent(e.to_string()))
                    }
                    Err(e) if e.is_transient() => Err(Failure::Temporary(e.into())),
                    Err(e) => Err(Failure::Unreachable(e.into())),
                }
            }
            Mailer::Folder(dir) => {
                let write = async {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    let name = format!("{:06}-{}.eml", email.id, email.kind);
                    let tmp = dir.join(format!(".{name}.tmp"));
                    let path = dir.join(&name);
                    // Write then rename: a reader never sees half a message.
                    tokio::fs::write(&tmp, email.message.as_bytes()).await?;
                    tokio::fs::rename(&tmp, &path).await?;
                    Ok::<_, anyhow::Error>(format!("written to {}", path.display()))
                };
                write.await.map_err(Failure::Unreachable)
            }
        }
    }
}

/// Whether a permanent SMTP error refuses the recipient's address (550 mailbox
/// unavailable, 551 not local, 553 name not allowed) rather than the connection, the
/// login, the sender or the message.
fn refuses_the_address(e: &lettre::transport::smtp::Error) -> bool {
    e.status()
        .is_some_and(|code| matches!(u16::from(code), 550 | 551 | 553))
}

/// Why an envelope was not delivered.
enum Failure {
    /// The server refused the address for good (550, 551, 553) or it is malformed: not
    /// retried for this recipient.
    Permanent(String),
    /// The server answered 4xx for this recipient: retried with backoff.
    Temporary(anyhow::Error),
    /// The server could not be reached (down, timeout, TLS) or the folder not written:
    /// retried with backoff, and the other recipients wait for the retry too rather
    /// than each waiting out the same timeout.
    Unreachable(anyhow::Error),
}

/// "gone@example.com (permanent error (550): no such user)", for logs and `zmot status`.
pub fn describe_refusals(refused: &[Refusal]) -> String {
    refused
        .iter()
        .map(|r| format!("{} ({})", r.address, r.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Emails accepted for every recipient that was not refused.
    pub sent: u64,
    pub retrying: u64,
    pub gave_up: u64,
    /// Recipients the server refused for good (their email still went to the others).
    pub refused: u64,
}

/// How long a claimed email is a worker's, renewed before each recipient.
pub const EMAIL_LEASE_MS: i64 = 5 * 60 * 1000;

/// The most `email.smtp.timeout_secs` may be. The lease is renewed before each
/// recipient's envelope, so it must outlast one envelope (which the timeout bounds as a
/// whole, see `Mailer::deliver`), the write recording it and the next renewal: four of
/// its five minutes for the send leave one for the database.
pub const MAX_SMTP_TIMEOUT_SECS: u64 = (EMAIL_LEASE_MS / 1000) as u64 - 60;

/// Delay before the next attempt: 1 min, 2, 4, ... capped at 2 hours.
pub fn backoff(attempts: i64) -> Duration {
    let minutes = 1u64 << attempts.clamp(0, 7);
    Duration::from_secs((minutes * 60).min(2 * 3600))
}

/// Sends every due email once, recipient by recipient. A recipient is recorded as
/// having the email only after the server (or the file system) accepted it, so a retry
/// goes only to those still waiting; a recipient whose address the server refused for
/// good (550, 551, 553) is recorded and not tried again, unless every recipient got the
/// same refusal and none accepted it (that is the server refusing the email: retried).
/// The email is sent when nobody is left waiting and at least one recipient has it; a
/// temporary failure schedules a retry with backoff.
pub async fn deliver_due(store: &Store, mailer: &Mailer, worker: &str) -> Result<DeliveryReport> {
    let mut report = DeliveryReport::default();
    loop {
        let batch = store.claim_emails(worker, 20, EMAIL_LEASE_MS).await?;
        if batch.is_empty() {
            return Ok(report);
        }
        for email in batch {
            let mut delivered = email.delivered_to.clone();
            let mut refused = email.refused.clone();
            let mut refused_now: Vec<Refusal> = Vec::new();
            let mut temporary: Option<String> = None;
            let pending = email.pending_recipients();
            let waiting = pending.len();
            // Another worker has this email now (this one's lease ran out): it must not
            // send or write anything more of it.
            let mut lost = false;
            for to in mailer.envelopes(pending) {
                if to.is_empty() {
                    continue;
                }
                if !store
                    .renew_email_lease(email.id, worker, EMAIL_LEASE_MS)
                    .await?
                {
                    lost = true;
                    break;
                }
                match mailer.deliver(&email, &to).await {
                    Ok(how) => {
                        delivered.extend(to.iter().cloned());
                        tracing::info!(id = email.id, subject = %email.subject, to = %to.join(", "), "email {how}");
                        if !store
                            .record_email_recipients(email.id, worker, &delivered, &refused)
                            .await?
                        {
                            lost = true;
                            break;
                        }
                    }
                    Err(Failure::Permanent(reason)) => {
                        refused_now.extend(to.iter().map(|address| Refusal {
                            address: address.clone(),
                            reason: reason.clone(),
                        }));
                    }
                    Err(Failure::Temporary(e)) => {
                        temporary = Some(format!("{}: {e:#}", to.join(", ")));
                    }
                    Err(Failure::Unreachable(e)) => {
                        temporary = Some(format!("{e:#}"));
                        break;
                    }
                }
            }
            if lost {
                tracing::warn!(
                    id = email.id,
                    "another worker took over this email (the lease ran out); left to it"
                );
                continue;
            }
            let one_answer = refused_now.windows(2).all(|w| w[0].reason == w[1].reason);
            if !refused_now.is_empty()
                && refused_now.len() == waiting
                && delivered.len() == email.delivered_to.len()
                && one_answer
            {
                // Every address refused with the same answer and none accepted: that
                // is the server refusing this email (the sender, relaying), not the
                // addresses. Recorded as refusals it would be lost for good.
                temporary = Some(format!(
                    "the mail server refused the email: {}",
                    refused_now[0].reason
                ));
            } else if !refused_now.is_empty() {
                for r in &refused_now {
                    tracing::error!(
                        id = email.id,
                        subject = %email.subject,
                        "the mail server refused {}, not retried: {}",
                        r.address,
                        r.reason
                    );
                }
                report.refused += refused_now.len() as u64;
                refused.extend(refused_now);
                if !store
                    .record_email_recipients(email.id, worker, &delivered, &refused)
                    .await?
                {
                    continue;
                }
            }
            let refusals = (!refused.is_empty()).then(|| {
                format!(
                    "refused by the mail server: {}",
                    describe_refusals(&refused)
                )
            });
            match temporary {
                None if !delivered.is_empty() => {
                    if store
                        .mark_email_sent(email.id, worker, refusals.as_deref())
                        .await?
                    {
                        report.sent += 1;
                    }
                }
                None => {
                    // Every recipient refused: nobody will ever get it.
                    let msg = refusals.unwrap_or_else(|| "no recipients".into());
                    if store
                        .mark_email_failed(email.id, worker, &msg, None)
                        .await?
                    {
                        tracing::error!(id = email.id, "gave up on email: {msg}");
                        report.gave_up += 1;
                    }
                }
                Some(e) => {
                    let attempts = email.attempts + 1;
                    let msg = match &refusals {
                        Some(r) => format!("{e}; {r}"),
                        None => e,
                    };
                    if attempts >= MAX_ATTEMPTS {
                        if store
                            .mark_email_failed(email.id, worker, &msg, None)
                            .await?
                        {
                            tracing::error!(id = email.id, attempts, "gave up on email: {msg}");
                            report.gave_up += 1;
                        }
                    } else {
                        let retry_in = backoff(attempts).as_millis() as i64;
                        if !store
                            .mark_email_failed(email.id, worker, &msg, Some(retry_in))
                            .await?
                        {
                            continue;
                        }
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
