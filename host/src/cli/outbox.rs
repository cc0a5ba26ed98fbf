//! `prp-host outbox`: the notification outbox, newest last: who each message is for, what it
//! is about, and where its delivery stands. Message texts (which for a four-eyes passcode hold
//! its second half) only with `--show-bodies`, and that is audited.

use super::OutputFormat;
use prp_host::config::Settings;
use prp_host::notify::{self, Preview};
use prp_host::rfc3339;
use prp_host::store::{AuditEvent, DeliveryState, OutboxEntry, Recipient, Store};
use std::collections::HashMap;
use std::process::ExitCode;

/// Which messages to list.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateFilter {
    /// Not delivered yet and still to be tried (including those whose attempts failed so far).
    Pending,
    /// Given up: undeliverable, never tried again.
    Failed,
    /// Accepted by the SMTP server.
    Sent,
}

impl From<StateFilter> for DeliveryState {
    fn from(s: StateFilter) -> Self {
        match s {
            StateFilter::Pending => Self::Pending,
            StateFilter::Failed => Self::Failed,
            StateFilter::Sent => Self::Sent,
        }
    }
}

#[derive(clap::Args)]
pub struct OutboxArgs {
    /// Only messages in these states (repeat it or separate by commas); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    state: Vec<StateFilter>,
    /// How many messages, the newest ones, printed newest last.
    #[arg(long, default_value_t = 20)]
    limit: i64,
    /// Also print each message's text as the delivery worker writes it. Without this flag no
    /// message text is printed. The text of a four-eyes passcode's second half holds that half,
    /// a secret: it is then printed too, and each such message shown is written to the audit
    /// log (notification.shown). Use it only where nobody else can read the screen or the
    /// output.
    #[arg(long)]
    show_bodies: bool,
    /// Text for people, or JSON lines for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

/// The recipient as the listing shows them: the person and their address.
struct Shown {
    name: String,
    /// The address, or why there is none.
    address: Result<String, String>,
}

pub async fn run(args: OutboxArgs, settings: &Settings, store: &Store) -> anyhow::Result<ExitCode> {
    let states: Vec<DeliveryState> = args.state.iter().map(|s| (*s).into()).collect();
    let entries = store.outbox(&states, args.limit, args.show_bodies).await?;
    let email_column = &settings.notify.email_column;
    let column = store.person_column(email_column).await?;
    let mut recipients: HashMap<String, Shown> = HashMap::new();
    for e in &entries {
        let uid = &e.message.recipient_uid;
        if !recipients.contains_key(uid) {
            let shown = recipient(store, uid, email_column, column.as_deref()).await;
            recipients.insert(uid.clone(), shown);
        }
    }
    if args.format == OutputFormat::Text {
        let counts = store.outbox_counts().await?;
        let counts: Vec<String> = counts
            .iter()
            .map(|(state, n)| format!("{n} {}", state.name()))
            .collect();
        println!("outbox: {}", counts.join(", "));
        if entries.is_empty() {
            println!("no messages to show");
        }
    }
    let now = store.now();
    for e in &entries {
        let preview = if args.show_bodies {
            Some(shown_preview(store, settings, e).await?)
        } else {
            None
        };
        let unknown = Shown {
            name: String::new(),
            address: Err("not looked up".into()),
        };
        let to = recipients.get(&e.message.recipient_uid).unwrap_or(&unknown);
        match args.format {
            OutputFormat::Json => println!("{}", json(e, to, now, preview.as_ref())),
            OutputFormat::Text => print_text(e, to, now, preview.as_ref()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The person and address of a recipient; a lookup that fails says why instead.
async fn recipient(store: &Store, uid: &str, email_column: &str, column: Option<&str>) -> Shown {
    match store.notification_recipient(uid, column, None).await {
        Ok(Some(Recipient {
            first_name,
            last_name,
            email,
            ..
        })) => Shown {
            name: format!("{first_name} {last_name}").trim().to_owned(),
            address: match (column, email) {
                (_, Some(email)) => Ok(email),
                (None, None) => Err(format!(
                    "no address: Person has no column \"{email_column}\" (Notify:EmailColumn)"
                )),
                (Some(c), None) => Err(format!("no address: Person.{c} is empty")),
            },
        },
        Ok(None) => Shown {
            name: String::new(),
            address: Err("not in Person".into()),
        },
        Err(e) => Shown {
            name: String::new(),
            address: Err(format!("Person can't be read: {e}")),
        },
    }
}

/// The message's text, after the audit log has recorded that a secret in it is shown (fail
/// closed: no record, no text).
async fn shown_preview(
    store: &Store,
    settings: &Settings,
    e: &OutboxEntry,
) -> anyhow::Result<Preview> {
    let preview = notify::preview(store, settings, e).await?;
    if e.has_secret && matches!(preview, Preview::Text { .. }) {
        store
            .audit(&AuditEvent {
                event: "notification.shown",
                outcome: "success",
                person_uid: Some(&e.message.recipient_uid),
                reason: Some(&format!(
                    "{} #{}: its text, with the secret it holds, shown by prp-host outbox --show-bodies",
                    e.message.kind, e.message.id
                )),
                actor: Some(&super::actor()),
                ..Default::default()
            })
            .await?;
    }
    Ok(preview)
}

/// Where the message stands, in words.
fn state_text(e: &OutboxEntry, now: i64) -> String {
    let attempts = e.message.attempts;
    let error = e.last_error.as_deref().unwrap_or("no error recorded");
    match e.state() {
        DeliveryState::Sent => format!(
            "sent {} as {} (attempt {attempts})",
            e.delivered_at.map(rfc3339).unwrap_or_default(),
            e.message_id.as_deref().unwrap_or("?")
        ),
        DeliveryState::Failed => format!(
            "failed {} after {attempts} attempt(s), not retried: {error}",
            e.undeliverable_at.map(rfc3339).unwrap_or_default()
        ),
        DeliveryState::Pending => {
            if let (Some(worker), Some(until)) = (&e.claimed_by, e.claimed_until) {
                if until > now {
                    return format!("pending, attempt {attempts} in progress by {worker}");
                }
            }
            let next = if e.next_attempt_at <= now {
                "due now".to_owned()
            } else {
                format!("next attempt {}", rfc3339(e.next_attempt_at))
            };
            match attempts {
                0 => format!("pending, not tried yet; {next}"),
                n => format!("pending, {n} attempt(s) failed, the last: {error}; {next}"),
            }
        }
    }
}

fn print_text(e: &OutboxEntry, to: &Shown, now: i64, preview: Option<&Preview>) {
    let m = &e.message;
    let person = match to.name.is_empty() {
        true => m.recipient_uid.clone(),
        false => format!("{} ({})", m.recipient_uid, to.name),
    };
    let address = match &to.address {
        Ok(a) => format!("<{a}>"),
        Err(why) => format!("[{why}]"),
    };
    println!(
        "#{} {} \"{}\", queued {}, to {person} {address}",
        m.id,
        m.kind,
        m.subject,
        rfc3339(m.created_at)
    );
    let secret = match (e.has_secret, preview) {
        (true, None | Some(Preview::NoText(_))) => "; holds a passcode half (not shown)",
        _ => "",
    };
    println!("    {}{secret}", state_text(e, now));
    match preview {
        None => {}
        Some(Preview::NoText(why)) => println!("    (no text: {why})"),
        Some(Preview::Text { to, subject, body }) => {
            println!("    | To: {to}\n    | Subject: {subject}\n    |");
            for line in body.lines() {
                println!("    | {line}");
            }
        }
    }
}

fn json(e: &OutboxEntry, to: &Shown, now: i64, preview: Option<&Preview>) -> serde_json::Value {
    let m = &e.message;
    let mut v = serde_json::json!({
        "id": m.id,
        "kind": m.kind,
        "subject": m.subject,
        "created_at": rfc3339(m.created_at),
        "recipient": {
            "person_uid": m.recipient_uid,
            "name": to.name,
            "address": to.address.as_ref().ok(),
            "no_address": to.address.as_ref().err(),
        },
        "state": e.state().name(),
        "status": state_text(e, now),
        "attempts": m.attempts,
        "next_attempt_at": (e.state() == DeliveryState::Pending).then(|| rfc3339(e.next_attempt_at.max(m.created_at))),
        "delivered_at": e.delivered_at.map(rfc3339),
        "undeliverable_at": e.undeliverable_at.map(rfc3339),
        "last_error": e.last_error,
        "message_id": e.message_id,
        "holds_passcode_half": e.has_secret,
    });
    match preview {
        None => {}
        Some(Preview::NoText(why)) => v["text"] = serde_json::json!({ "none": why }),
        Some(Preview::Text { to, subject, body }) => {
            v["text"] = serde_json::json!({ "to": to, "subject": subject, "body": body })
        }
    }
    v
}
