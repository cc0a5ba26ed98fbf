//! Delivery of the notification outbox over SMTP (`Notify` settings).
//!
//! A worker claims due rows of `prp_notification_outbox` (atomically, so several servers on
//! one database never hold the same row), writes each message in the recipient's language
//! from the event's facts, and sends it. A message is marked delivered right after the SMTP
//! server accepted it; a failure is retried with exponential backoff. Delivery is at least
//! once: a crash between the server's acceptance and the mark sends that message again, with
//! the same `Message-ID` (derived from the row), so mail systems and people can tell it is
//! the same message. A message that can't ever be delivered (no address, refused by the
//! server, too old, a passcode half whose passcode is gone) is marked undeliverable and
//! written to the audit log, never retried.

pub mod templates;

use crate::app::{CheckLine, Status};
use crate::config::{NotifySettings, Settings, SmtpSecurity, SmtpSettings, SMTP_PASSWORD};
use crate::store::{AuditEvent, OutboxMessage, Store, StoreError};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use templates::{ChangedAccount, Context, Event, Lang};

/// Messages claimed at once.
const BATCH: i64 = 20;

/// Why the worker can't start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("Notify:From is not set: notifications can't be sent without a sender address")]
    NoSender,
    #[error("Notify:From \"{0}\" is not an e-mail address")]
    BadSender(String),
    #[error("Notify:Smtp: {0}")]
    Smtp(String),
}

/// The running delivery worker; [`Notifier::stop`] ends it.
pub struct Notifier {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Notifier {
    /// Starts the worker when an SMTP server is configured (`None` when not, or when the
    /// settings don't allow sending: that is logged).
    pub fn start(store: Store, settings: &Settings) -> Option<Self> {
        settings.notify.smtp.as_ref()?;
        let mailer = match Mailer::new(store, settings) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("notifications are not delivered: {e}");
                return None;
            }
        };
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            tracing::info!("delivering notifications through {}", mailer.server);
            loop {
                if let Err(e) = mailer.run_once().await {
                    tracing::warn!("notification delivery: {e}");
                }
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(mailer.cfg.poll) => {}
                }
            }
        });
        Some(Self { stop, task })
    }

    /// Stops the worker after the message it is sending, if any.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if self.task.await.is_err() {
            tracing::warn!("the notification worker ended abnormally");
        }
    }
}

/// What to do with a claimed message.
enum Plan {
    Send {
        to: Mailbox,
        subject: String,
        body: String,
    },
    Undeliverable(String),
}

struct Mailer {
    store: Store,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of the sender's address, in every Message-ID.
    domain: String,
    cfg: NotifySettings,
    /// This worker's name in claims: the server name and a random suffix.
    worker: String,
    /// host:port, for logs.
    server: String,
    lease: i64,
}

/// How the server's certificate is checked: against the public roots, and the CAs of
/// `Notify:Smtp:CaFile` when set; its name must match `Notify:Smtp:Host`.
fn tls_parameters(smtp: &SmtpSettings) -> Result<TlsParameters, NotifyError> {
    let mut builder = TlsParameters::builder(smtp.host.clone());
    if let Some(path) = &smtp.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            NotifyError::Smtp(format!("CaFile {} can't be read: {e}", path.display()))
        })?;
        let not_pem = |why: String| {
            NotifyError::Smtp(format!(
                "CaFile {} is not a PEM file of certificates: {why}",
                path.display()
            ))
        };
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(not_pem("it holds no BEGIN CERTIFICATE block".into()));
        }
        let certs = Certificate::from_pem(&pem).map_err(|e| not_pem(e.to_string()))?;
        builder = builder.add_root_certificate(certs);
    }
    builder
        .build()
        .map_err(|e| NotifyError::Smtp(format!("TLS: {e}")))
}

fn transport(
    smtp: &SmtpSettings,
    password: Option<&str>,
    hello: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
    let plain = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host);
    let builder = match smtp.security {
        SmtpSecurity::StartTls => plain.tls(Tls::Required(tls_parameters(smtp)?)),
        SmtpSecurity::Tls => plain.tls(Tls::Wrapper(tls_parameters(smtp)?)),
        SmtpSecurity::None => plain,
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(smtp.timeout))
        .hello_name(ClientId::Domain(hello.to_owned()));
    if let Some(user) = &smtp.user {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.unwrap_or_default().to_owned(),
        ));
    }
    Ok(builder.build())
}

impl Mailer {
    fn new(store: Store, settings: &Settings) -> Result<Self, NotifyError> {
        let cfg = settings.notify.clone();
        let smtp = cfg
            .smtp
            .clone()
            .ok_or_else(|| NotifyError::Smtp("no host".into()))?;
        let from_text = cfg.from.clone().ok_or(NotifyError::NoSender)?;
        let from: Mailbox = from_text
            .parse()
            .map_err(|_| NotifyError::BadSender(from_text.clone()))?;
        let domain = from.email.domain().to_owned();
        let password = settings
            .connection_string(SMTP_PASSWORD)
            .map(|c| c.expose().to_owned());
        let server_name = settings.host.server_name.clone();
        let transport = transport(&smtp, password.as_deref(), &server_name)?;
        let lease = i64::try_from((smtp.timeout * 3).as_secs()).unwrap_or(600) + 60;
        Ok(Self {
            store,
            transport,
            from,
            domain,
            worker: format!(
                "{server_name}/{}",
                &crate::security::random_token()
                    .chars()
                    .take(12)
                    .collect::<String>()
            ),
            server: format!("{}:{}", smtp.host, smtp.port),
            cfg,
            lease,
        })
    }

    /// Claims the due messages and tries each once.
    async fn run_once(&self) -> Result<(), StoreError> {
        let batch = self
            .store
            .claim_notifications(&self.worker, self.lease, BATCH)
            .await?;
        if batch.is_empty() {
            return Ok(());
        }
        // Connect, TLS and authentication first: a failure there (a wrong password, an
        // unreachable server) is the server's problem, not the messages', so they are retried,
        // never declared undeliverable.
        let reachable = match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the SMTP server did not answer NOOP".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = reachable {
            tracing::warn!("notifications: SMTP server {}: {e}", self.server);
            for m in &batch {
                self.retry_later(m, &format!("SMTP server {}: {e}", self.server))
                    .await?;
            }
            return Ok(());
        }
        let mut rest = batch.into_iter();
        while let Some(m) = rest.next() {
            if !self.deliver(&m).await? {
                // The server is unreachable: leave the others for the next round untried.
                for other in rest.by_ref() {
                    self.store
                        .release_notification(other.id, &self.worker)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The Message-ID of an outbox row: the same on every attempt and on every server.
    fn message_id(&self, m: &OutboxMessage) -> String {
        format!("<prp.{}.{}@{}>", m.id, m.created_at, self.domain)
    }

    /// Tries one message. Returns false when the SMTP server could not be reached.
    async fn deliver(&self, m: &OutboxMessage) -> Result<bool, StoreError> {
        // A backlog older than Notify:GiveUpHours (e.g. queued long before delivery was set
        // up) would tell people about things long past: it is not sent.
        let give_up = i64::try_from(self.cfg.give_up_after.as_secs()).unwrap_or(i64::MAX);
        if m.attempts <= 1 && self.store.now() - m.created_at >= give_up {
            self.undeliverable(
                m,
                &format!(
                    "queued more than {} hours before its first attempt; not sent",
                    self.cfg.give_up_after.as_secs() / 3600
                ),
            )
            .await?;
            return Ok(true);
        }
        let (to, subject, body) = match self.plan(m).await? {
            Plan::Send { to, subject, body } => (to, subject, body),
            Plan::Undeliverable(reason) => {
                self.undeliverable(m, &reason).await?;
                return Ok(true);
            }
        };
        let message_id = self.message_id(m);
        let created = std::time::UNIX_EPOCH + Duration::from_secs(m.created_at.max(0) as u64);
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.clone()))
            .date(created)
            .header(ContentType::TEXT_PLAIN)
            .body(body);
        let email = match email {
            Ok(e) => e,
            Err(e) => {
                self.undeliverable(m, &format!("the message can't be built: {e}"))
                    .await?;
                return Ok(true);
            }
        };
        match self.transport.send(email).await {
            Ok(_) => {
                self.store
                    .mark_notification_delivered(m.id, &message_id)
                    .await?;
                tracing::info!(
                    "notification {} ({}) for {} delivered as {message_id}",
                    m.id,
                    m.kind,
                    m.recipient_uid
                );
                Ok(true)
            }
            Err(e) if e.is_permanent() => {
                self.undeliverable(m, &format!("the SMTP server refused it: {e}"))
                    .await?;
                Ok(true)
            }
            Err(e) => {
                self.retry_later(m, &e.to_string()).await?;
                // A response from the server means it is up (this message had a problem).
                Ok(e.is_transient() || e.is_response())
            }
        }
    }

    /// Records a failed attempt and schedules the next with backoff, or gives the message up
    /// when it has waited `Notify:GiveUpHours`.
    async fn retry_later(&self, m: &OutboxMessage, error: &str) -> Result<(), StoreError> {
        let age = self.store.now() - m.created_at;
        if age >= i64::try_from(self.cfg.give_up_after.as_secs()).unwrap_or(i64::MAX) {
            return self
                .undeliverable(
                    m,
                    &format!(
                        "not delivered within {} hours; last error: {error}",
                        self.cfg.give_up_after.as_secs() / 3600
                    ),
                )
                .await;
        }
        let wait = backoff(m.attempts, self.cfg.retry_min, self.cfg.retry_max);
        let next = self.store.now() + i64::try_from(wait.as_secs()).unwrap_or(i64::MAX / 2);
        tracing::warn!(
            "notification {} not delivered (attempt {}), retrying in {}s: {error}",
            m.id,
            m.attempts,
            wait.as_secs()
        );
        self.store
            .mark_notification_failed(m.id, &self.worker, next, error)
            .await
    }

    async fn undeliverable(&self, m: &OutboxMessage, reason: &str) -> Result<(), StoreError> {
        tracing::warn!(
            "notification {} ({}) for {} is undeliverable: {reason}",
            m.id,
            m.kind,
            m.recipient_uid
        );
        self.store
            .mark_notification_undeliverable(m.id, reason)
            .await?;
        self.store
            .audit(&AuditEvent {
                event: "notification.undeliverable",
                outcome: "failure",
                person_uid: Some(&m.recipient_uid),
                reason: Some(&format!("{} #{}: {reason}", m.kind, m.id)),
                actor: Some("notify"),
                ..Default::default()
            })
            .await
    }

    /// Who gets the message, in which language, saying what.
    async fn plan(&self, m: &OutboxMessage) -> Result<Plan, StoreError> {
        plan(&self.store, &self.cfg, m).await
    }
}

/// A message's text as the delivery worker writes it (`prp-host outbox --show-bodies`). Its
/// `Debug` form leaves the body out: a passcode half's holds the half.
#[derive(Clone, PartialEq, Eq)]
pub enum Preview {
    Text {
        to: String,
        subject: String,
        body: String,
    },
    /// Why there is no text to show (what makes the message undeliverable).
    NoText(String),
}

impl std::fmt::Debug for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text { to, subject, .. } => f
                .debug_struct("Text")
                .field("to", to)
                .field("subject", subject)
                .finish_non_exhaustive(),
            Self::NoText(why) => f.debug_tuple("NoText").field(why).finish(),
        }
    }
}

/// The text of an outbox row, written now as the worker would write it: in the recipient's
/// language, from the row's facts; a passcode half's text holds the half when `entry` was read
/// with its secret.
pub async fn preview(
    store: &Store,
    settings: &Settings,
    entry: &crate::store::OutboxEntry,
) -> Result<Preview, StoreError> {
    let m = &entry.message;
    if m.kind == "passcode.half" && entry.delivered_at.is_some() && !entry.has_secret {
        return Ok(Preview::NoText(
            "its passcode half was purged when it was delivered".into(),
        ));
    }
    Ok(match plan(store, &settings.notify, m).await? {
        Plan::Send { to, subject, body } => Preview::Text {
            to: to.to_string(),
            subject,
            body,
        },
        Plan::Undeliverable(reason) => Preview::NoText(reason),
    })
}

/// Who gets the message, in which language, saying what.
async fn plan(store: &Store, cfg: &NotifySettings, m: &OutboxMessage) -> Result<Plan, StoreError> {
    let email_column = store.person_column(&cfg.email_column).await?;
    let Some(email_column) = email_column else {
        return Ok(Plan::Undeliverable(format!(
            "Person has no column \"{}\" (Notify:EmailColumn) to take the address from",
            cfg.email_column
        )));
    };
    let language_column = match &cfg.language_column {
        Some(c) => store.person_column(c).await?,
        None => None,
    };
    let Some(recipient) = store
        .notification_recipient(
            &m.recipient_uid,
            Some(&email_column),
            language_column.as_deref(),
        )
        .await?
    else {
        return Ok(Plan::Undeliverable("the recipient is not in Person".into()));
    };
    let Some(address) = recipient.email.as_deref() else {
        return Ok(Plan::Undeliverable(format!(
            "the recipient has no e-mail address (Person.{email_column} is empty)"
        )));
    };
    let name = format!("{} {}", recipient.first_name, recipient.last_name)
        .trim()
        .to_owned();
    let to = match address.parse::<lettre::Address>() {
        Ok(a) => Mailbox::new((!name.is_empty()).then(|| name.clone()), a),
        Err(_) => {
            return Ok(Plan::Undeliverable(format!(
                "the recipient's address in Person.{email_column} is not an e-mail address"
            )))
        }
    };
    let lang = recipient
        .language
        .as_deref()
        .and_then(Lang::parse)
        .or_else(|| Lang::parse(&cfg.language))
        .unwrap_or(Lang::En);
    let data: serde_json::Value = m
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(serde_json::Value::Null);
    let event = match m.kind.as_str() {
        "password.changed" if data.get("items").is_some() => Event::PasswordChanged {
            accounts: data["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| {
                            let central = i["central"].as_bool().unwrap_or(false);
                            ChangedAccount {
                                system: i["system"].as_str().unwrap_or_default().to_owned(),
                                name: if central && !recipient.central_account.is_empty() {
                                    recipient.central_account.clone()
                                } else {
                                    i["name"].as_str().unwrap_or_default().to_owned()
                                },
                                central,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
        },
        "lockout" if data.get("method").is_some() => Event::Lockout {
            method: data["method"].as_str().unwrap_or("all").to_owned(),
            minutes: data["minutes"].as_i64().unwrap_or(0),
        },
        kind @ ("factor.enrolled" | "factor.removed") if data.get("method").is_some() => {
            Event::FactorChanged {
                method: data["method"].as_str().unwrap_or_default().to_owned(),
                added: kind == "factor.enrolled",
            }
        }
        "question.replaced" => Event::QuestionChanged { unlocked: false },
        "question.unlocked" => Event::QuestionChanged { unlocked: true },
        "passcode.half" => {
            let Some(half) = m.secret.clone() else {
                return Ok(Plan::Undeliverable(
                    "withdrawn: the passcode was used, replaced or expired before delivery".into(),
                ));
            };
            let Some((person_uid, expires_at)) = store.passcode_of_half(m.id).await? else {
                return Ok(Plan::Undeliverable(
                    "withdrawn: the passcode is no longer outstanding".into(),
                ));
            };
            let person = match store.person(&person_uid).await? {
                Some(p) => format!("{} {}", p.first_name, p.last_name)
                    .trim()
                    .to_owned(),
                None => String::new(),
            };
            Event::PasscodeHalf {
                person: if person.is_empty() {
                    person_uid
                } else {
                    person
                },
                half,
                expires_at,
            }
        }
        // Rows written before messages were rendered at delivery: as they were stored.
        _ => {
            return Ok(Plan::Send {
                to,
                subject: m.subject.clone(),
                body: m.body.clone(),
            })
        }
    };
    let rendered = templates::render(
        &event,
        &Context {
            lang,
            recipient: &name,
            at: m.created_at,
            help_desk: cfg.help_desk.as_deref(),
        },
    );
    Ok(Plan::Send {
        to,
        subject: rendered.subject,
        body: rendered.body,
    })
}

/// The wait before attempt `attempts + 1`: `min` doubled for each earlier failure, at most
/// `max`.
pub fn backoff(attempts: i64, min: Duration, max: Duration) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    min.saturating_mul(1u32 << doublings).min(max)
}

/// The lines of `prp-host check` about delivery: whether an SMTP server is configured, and
/// whether `Person` has the address column.
pub async fn check_lines(settings: &Settings, store: Option<&Store>) -> Vec<CheckLine> {
    let line = |status, detail: String| CheckLine {
        status,
        name: "notifications".into(),
        detail,
    };
    let mut lines = Vec::new();
    let cfg = &settings.notify;
    match (&cfg.smtp, &cfg.from) {
        (None, _) => lines.push(line(
            Status::Warn,
            "not delivered: no SMTP server is configured (Notify:Smtp:Host); the outbox only fills up".into(),
        )),
        (Some(_), None) => lines.push(line(
            Status::Failed,
            "Notify:Smtp:Host is set but Notify:From is not: nothing can be sent".into(),
        )),
        (Some(smtp), Some(from)) => {
            if from.parse::<Mailbox>().is_err() {
                lines.push(line(
                    Status::Failed,
                    format!("Notify:From \"{from}\" is not an e-mail address"),
                ));
            }
            let auth = match (&smtp.user, settings.connection_string(SMTP_PASSWORD)) {
                (Some(u), Some(_)) => format!(", as {u}"),
                (Some(u), None) => format!(", as {u} without a password (ConnectionStrings:Smtp is not set)"),
                (None, _) => String::new(),
            };
            let security = match smtp.security {
                SmtpSecurity::StartTls => "STARTTLS",
                SmtpSecurity::Tls => "TLS",
                SmtpSecurity::None => "no TLS",
            };
            if smtp.security != SmtpSecurity::None {
                if let Err(e) = tls_parameters(smtp) {
                    lines.push(line(Status::Failed, e.to_string()));
                }
            }
            let insecure = smtp.security == SmtpSecurity::None
                && !matches!(smtp.host.as_str(), "localhost" | "127.0.0.1" | "::1");
            lines.push(line(
                if insecure { Status::Warn } else { Status::Ok },
                format!(
                    "delivered through {}:{} ({security}{auth}){}",
                    smtp.host,
                    smtp.port,
                    if insecure {
                        "; without TLS to a server that is not on loopback, messages and passcode halves cross the network in clear"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    if let Some(store) = store {
        match store.person_column(&cfg.email_column).await {
            Ok(Some(_)) => {}
            Ok(None) => lines.push(line(
                Status::Warn,
                format!(
                    "Person has no column \"{}\" (Notify:EmailColumn): nobody has an e-mail address, so every notification is undeliverable; add it with: ALTER TABLE \"Person\" ADD COLUMN \"{}\" VARCHAR(256);",
                    cfg.email_column, cfg.email_column
                ),
            )),
            Err(e) => lines.push(line(Status::Warn, e.to_string())),
        }
        if let Some(c) = &cfg.language_column {
            if let Ok(None) = store.person_column(c).await {
                lines.push(line(
                    Status::Warn,
                    format!("Person has no column \"{c}\" (Notify:LanguageColumn): messages are in Notify:Language ({})", cfg.language),
                ));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let (min, max) = (Duration::from_secs(30), Duration::from_secs(3600));
        assert_eq!(backoff(1, min, max), Duration::from_secs(30));
        assert_eq!(backoff(2, min, max), Duration::from_secs(60));
        assert_eq!(backoff(4, min, max), Duration::from_secs(240));
        assert_eq!(backoff(12, min, max), max);
        assert_eq!(backoff(10_000, min, max), max);
    }
}
