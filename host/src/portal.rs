//! What a logged-in person and a manager can do: list the password items the person may
//! reset, check and set a new password under each item's policy, manage their password
//! questions, and (managers) issue passcodes to their direct reports.

use crate::plugins::{authenticator_policy, CallGate, PolicyError, ResolverInUse};
use crate::policy::{PasswordPolicy, Violation};
use crate::security::{self, HashError, HashPermit, Hasher};
use crate::store::{AuditEvent, ItemChange, PasswordChange, Person, Store, StoreError};
use prp_plugin_api::abi_stable::std_types::RString;
use prp_plugin_api::{
    AuthenticatorBox, AuthenticatorPolicy, PasswordRoles, ResolvedAccount, SecretCheck,
};
use std::sync::Arc;

/// Limits on password questions.
pub const QUESTION_MIN: usize = 5;
pub const QUESTION_MAX: usize = 200;
pub const ANSWER_MIN: usize = 3;
pub const ANSWER_MAX: usize = 64;
pub const MAX_QUESTIONS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// An item or question that isn't the person's (or doesn't exist): nothing was changed.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The request breaks a rule; the message is for the person.
    #[error("{0}")]
    Invalid(String),
    /// A resolver plugin failed to set a password in its system: nothing was changed.
    #[error("{0}")]
    Upstream(String),
    /// A resolver plugin didn't answer in time: its system may have changed; nothing else did.
    #[error("{0}")]
    Unknown(String),
    /// A resolver plugin set the password in its system, and then storing the rest of the
    /// change failed: that one password changed, nothing else did. The message names the item.
    #[error("{0}")]
    Partial(String),
    /// Too much hashing in progress: try again shortly (503 with `Retry-After`).
    #[error("too much hashing in progress")]
    Busy,
    /// A plugin the request can't do without failed (a required resolver couldn't say the
    /// person's login names): nothing was changed; try again shortly (503). The message, for
    /// operators, names the resolver and why.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// Where an item's password lives.
#[derive(Debug, Clone)]
pub enum ItemKind {
    /// The person's central password, stored by the portal.
    Central,
    /// An account in a configured table, stored by the portal.
    Table,
    /// An account a resolver plugin contributed; it may set the password itself.
    Resolver {
        resolver: String,
        account: Box<ResolvedAccount>,
    },
}

/// A password the person may reset.
#[derive(Debug, Clone)]
pub struct PasswordItem {
    pub id: String,
    pub display_name: String,
    /// The table or system, `Person` for the central account.
    pub source: String,
    pub account_uid: String,
    pub last_set: Option<i64>,
    pub policy: PasswordPolicy,
    pub kind: ItemKind,
}

/// The rules a password breaks for one item.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemCheck {
    pub id: String,
    pub violations: Vec<Violation>,
}

/// A passcode a manager or the help desk issued. `Debug` hides the passcode.
#[derive(Clone)]
pub struct IssuedPasscode {
    /// The whole passcode, or the issuer's half when split.
    pub shown: String,
    pub split: bool,
    pub expires_at: i64,
    pub hours: i64,
}

pub struct SelfService {
    pub store: Store,
    pub hasher: Arc<Hasher>,
    pub gate: CallGate,
    /// The authenticator in use: its policy says how many questions a person keeps and
    /// whether passcodes are split.
    pub authenticator: Arc<AuthenticatorBox>,
    pub resolvers: Vec<ResolverInUse>,
    pub server_name: String,
}

impl From<PolicyError> for PortalError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Store(e) => Self::Store(e),
            plugin => Self::Internal(plugin.to_string()),
        }
    }
}

fn item_id(source: &str, account_uid: &str) -> String {
    format!("{source}:{account_uid}")
}

impl std::fmt::Debug for IssuedPasscode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedPasscode")
            .field("shown", &"***")
            .field("split", &self.split)
            .field("expires_at", &self.expires_at)
            .field("hours", &self.hours)
            .finish()
    }
}

impl SelfService {
    async fn hash(&self, secret: &str) -> Result<String, PortalError> {
        self.hasher.hash_async(secret).await.map_err(|e| match e {
            HashError::Busy => PortalError::Busy,
            other => PortalError::Internal(other.to_string()),
        })
    }

    async fn verify(&self, phc: &str, secret: &str) -> Result<bool, PortalError> {
        self.hasher
            .verify_async(phc, secret)
            .await
            .map_err(|e| match e {
                HashError::Busy => PortalError::Busy,
                other => PortalError::Internal(other.to_string()),
            })
    }

    /// Admission for a request that will hash: such requests share a bounded part of the
    /// hashing workers ([`Hasher::admit`]), so that none of them, and no flood of them, can
    /// keep logins waiting. Refused at once ([`PortalError::Busy`]) when that part is full.
    fn admit(&self) -> Result<HashPermit, PortalError> {
        self.hasher.admit().ok_or(PortalError::Busy)
    }

    /// The person's password items: the central account, their accounts in the configured
    /// tables, and the accounts resolver plugins contribute. Only ever the person's own.
    pub async fn items(&self, person: &Person) -> Result<Vec<PasswordItem>, PortalError> {
        let mut out = Vec::new();
        let (policy, _) = self.store.password_policy("Person").await?;
        out.push(PasswordItem {
            id: item_id("Person", &person.uid),
            display_name: format!("Central account {}", person.central_account),
            source: "Person".into(),
            account_uid: person.uid.clone(),
            last_set: self.store.credential_set_at("Person", &person.uid).await?,
            policy,
            kind: ItemKind::Central,
        });
        let (tables, problems) = self.store.account_tables().await?;
        for p in problems {
            tracing::warn!("password items: {p}");
        }
        for t in &tables {
            let (policy, _) = self.store.password_policy(&t.table).await?;
            for a in self.store.accounts_in(t, &person.uid).await? {
                out.push(PasswordItem {
                    id: item_id(&a.table, &a.account_uid),
                    display_name: a.display.clone(),
                    source: a.table.clone(),
                    last_set: self
                        .store
                        .credential_set_at(&a.table, &a.account_uid)
                        .await?,
                    account_uid: a.account_uid,
                    policy: policy.clone(),
                    kind: ItemKind::Table,
                });
            }
        }
        for owner in &self.resolvers {
            let id = &owner.id;
            let r = Arc::clone(&owner.resolver);
            let uid = person.uid.clone();
            let accounts = match self
                .gate
                .call(move || r.accounts_of(uid.as_str().into()))
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    // The person's other items are still listed; their accounts in this
                    // resolver's system are not.
                    let why = format!(
                        "{}resolver \"{id}\" (plugin {}) failed to list a person's accounts, they are left out: {e}",
                        if owner.optional { "optional " } else { "" },
                        owner.plugin
                    );
                    self.dropped(owner, person, &why).await;
                    continue;
                }
            };
            for mut account in accounts {
                // Only accounts of this person, whatever the resolver says.
                if account.person_uid.as_str() != person.uid {
                    continue;
                }
                let Some(account_uid) = account
                    .account_uid
                    .as_ref()
                    .into_option()
                    .map(|s| s.to_string())
                else {
                    continue;
                };
                account.resolver = RString::from(id.as_str());
                let source = account.source.to_string();
                if out
                    .iter()
                    .any(|i| i.source == source && i.account_uid == account_uid)
                {
                    continue;
                }
                let (policy, _) = self.store.password_policy(&source).await?;
                out.push(PasswordItem {
                    id: item_id(&source, &account_uid),
                    display_name: account_uid.clone(),
                    last_set: self.store.credential_set_at(&source, &account_uid).await?,
                    source,
                    account_uid,
                    policy,
                    kind: ItemKind::Resolver {
                        resolver: id.clone(),
                        account: Box::new(account),
                    },
                });
            }
        }
        Ok(out)
    }

    /// Every login name the resolvers in use know the person by (`Resolver::login_names_of`:
    /// the reference plugin's SearchTable resolver answers with the person's names in its
    /// table). Fail closed: a password is never accepted without the names of a resolver that
    /// couldn't say them, so a required resolver's failure fails the request
    /// ([`PortalError::Unavailable`]); an optional one's leaves its names out, logged and
    /// audited (`resolver.dropped`) as when it can't list the person's accounts.
    /// What a resolver failed to give for the person is left out: logged (a warning for an
    /// optional resolver, an error for a required one) and audited as `resolver.dropped`.
    async fn dropped(&self, owner: &ResolverInUse, person: &Person, why: &str) {
        if owner.optional {
            tracing::warn!(plugin = %owner.plugin, resolver = %owner.id, "{why}");
        } else {
            tracing::error!(plugin = %owner.plugin, resolver = %owner.id, "{why}");
        }
        let _ = self
            .store
            .audit(&AuditEvent {
                event: "resolver.dropped",
                outcome: "failure",
                person_uid: Some(&person.uid),
                reason: Some(why),
                actor: Some("server"),
                ..Default::default()
            })
            .await;
    }

    async fn resolver_login_names(&self, person: &Person) -> Result<Vec<String>, PortalError> {
        let mut out = Vec::new();
        for owner in &self.resolvers {
            let r = Arc::clone(&owner.resolver);
            let uid = person.uid.clone();
            match self
                .gate
                .call(move || r.login_names_of(uid.as_str().into()))
                .await
            {
                Ok(names) => out.extend(names.into_iter().map(RString::into_string)),
                Err(e) if owner.optional => {
                    let why = format!(
                        "optional resolver \"{}\" (plugin {}) failed to list a person's login names, they are left out of the password rules: {e}",
                        owner.id, owner.plugin
                    );
                    self.dropped(owner, person, &why).await;
                }
                Err(e) => {
                    return Err(PortalError::Unavailable(format!(
                        "resolver \"{}\" (plugin {}) failed to list a person's login names, so no new password can be checked against them: {e}",
                        owner.id, owner.plugin
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The person's items with these ids, and all of the person's items; an id that isn't
    /// theirs fails the whole request.
    async fn pick(
        &self,
        person: &Person,
        ids: &[String],
    ) -> Result<(Vec<PasswordItem>, Vec<PasswordItem>), PortalError> {
        if ids.is_empty() {
            return Err(PortalError::Invalid(
                "choose at least one password to set".into(),
            ));
        }
        let all = self.items(person).await?;
        let mut out = Vec::new();
        for id in ids {
            let item = all
                .iter()
                .find(|i| &i.id == id)
                .ok_or(PortalError::NotFound("password item"))?;
            if !out.iter().any(|i: &PasswordItem| i.id == item.id) {
                out.push(item.clone());
            }
        }
        Ok((out, all))
    }

    /// The rules `password` breaks for each item, history included. Changes nothing.
    pub async fn check(
        &self,
        person: &Person,
        ids: &[String],
        password: &str,
    ) -> Result<Vec<ItemCheck>, PortalError> {
        let _admitted = self.admit()?;
        let (items, all) = self.pick(person, ids).await?;
        self.check_items(person, &items, &all, password).await
    }

    /// The rules `password` breaks for each of the person's chosen items. `RejectNames` looks
    /// at every name of the person, not only the chosen items': first and last name, central
    /// account, every item (its name and key) and every login name the resolvers in use know
    /// the person by ([`SelfService::resolver_login_names`]).
    async fn check_items(
        &self,
        person: &Person,
        items: &[PasswordItem],
        all: &[PasswordItem],
        password: &str,
    ) -> Result<Vec<ItemCheck>, PortalError> {
        // Rules apply to the password as it is stored: its NFKC form.
        let normalized = security::normalize_password(password);
        let mut names = vec![
            person.first_name.clone(),
            person.last_name.clone(),
            person.central_account.clone(),
        ];
        // Asked only when a rule uses them: a resolver that is away then fails (fails closed)
        // only the changes whose policy would have needed its names.
        if items.iter().any(|i| i.policy.reject_names) {
            names.extend(self.resolver_login_names(person).await?);
        }
        for i in items.iter().chain(all) {
            names.push(i.display_name.clone());
            names.extend(i.display_name.split_whitespace().map(str::to_owned));
            names.push(i.account_uid.clone());
        }
        names.retain(|n| n.chars().count() >= 3);
        let mut out = Vec::new();
        for item in items {
            let mut violations = item.policy.violations(&normalized, &names);
            // The history check hashes, so it runs only for an otherwise acceptable password.
            if violations.is_empty() && item.policy.history_count > 0 {
                for old in self
                    .store
                    .recent_hashes(&item.source, &item.account_uid, item.policy.history_count)
                    .await?
                {
                    // Each earlier hash in the form it was made of (typed, before passwords
                    // were normalised): one hash each either way.
                    let form = if old.normalized {
                        &normalized
                    } else {
                        password
                    };
                    if self.verify(&old.hash, form).await? {
                        violations.push(Violation {
                            rule: "history",
                            message: format!(
                                "You used this password recently; choose one that is not among your last {} passwords.",
                                item.policy.history_count
                            ),
                        });
                        break;
                    }
                }
            }
            out.push(ItemCheck {
                id: item.id.clone(),
                violations,
            });
        }
        Ok(out)
    }

    /// Sets one new password for every chosen item, all or none: when any item's policy is
    /// broken nothing changes (the checks are returned); otherwise resolver plugins set their
    /// accounts first (a failure stops everything), then one transaction stores the rest.
    pub async fn set(
        &self,
        person: &Person,
        ids: &[String],
        password: &str,
        session_token_hash: Option<String>,
        remote_addr: Option<String>,
    ) -> Result<Result<Vec<String>, Vec<ItemCheck>>, PortalError> {
        let _admitted = self.admit()?;
        let (items, all) = self.pick(person, ids).await?;
        let checks = self.check_items(person, &items, &all, password).await?;
        let normalized = security::normalize_password(password);
        if checks.iter().any(|c| !c.violations.is_empty()) {
            return Ok(Err(checks));
        }
        // A resolver sets its password before the transaction and can't take it back, so one
        // change holds at most one such item: then the change is still all or nothing.
        let external = items
            .iter()
            .filter(|i| matches!(i.kind, ItemKind::Resolver { .. }))
            .count();
        if external > 1 {
            return Err(PortalError::Invalid(
                "Passwords of accounts in connected systems are set one per change; choose one of them at a time.".into(),
            ));
        }
        let mut changes = Vec::new();
        for item in &items {
            // Hashed first, also for an item whose resolver sets the password in its own
            // system: the portal keeps that hash for the history rule and "last set" (never
            // to verify a login), and a hash that can't be made stops the change before the
            // other system is touched.
            let hash = self.hash(&normalized).await?;
            let (new_hash, set_by_resolver) = match &item.kind {
                ItemKind::Resolver { resolver, account } => {
                    let Some(owner) = self.resolvers.iter().find(|r| &r.id == resolver) else {
                        return Err(PortalError::Upstream(format!(
                            "resolver {resolver} is not loaded"
                        )));
                    };
                    // How errors name it: the resolver and its plugin.
                    let resolver = &format!("resolver \"{}\" (plugin {})", owner.id, owner.plugin);
                    let (r, account, pw) = (
                        Arc::clone(&owner.resolver),
                        (**account).clone(),
                        password.to_owned(),
                    );
                    // A resolver that says it sets no passwords isn't asked.
                    let asked = if owner.roles.contains(PasswordRoles::SETS) {
                        self.gate
                            .call(move || r.set_password(&account, pw.as_str().into()))
                            .await
                    } else {
                        Ok(SecretCheck::UNSUPPORTED)
                    };
                    match asked {
                        Ok(c) if c.is_ok() => (Some(hash), true),
                        Ok(c) if c == SecretCheck::UNSUPPORTED => (Some(hash), false),
                        Ok(c) => {
                            return Err(PortalError::Upstream(format!(
                                "{} refused the new password for {} ({})",
                                resolver,
                                item.id,
                                c.name()
                            )))
                        }
                        Err(e) => {
                            // A call that ran out of time may still finish in the other system.
                            let unknown = matches!(e, crate::plugins::CallError::TimedOut(_));
                            let reason = if unknown {
                                format!("{}: {e}; the password in {resolver} may or may not have changed", item.id)
                            } else {
                                format!("{}: {resolver} failed to set the password: {e}", item.id)
                            };
                            let _ = self
                                .store
                                .audit(&AuditEvent {
                                    event: "password.set",
                                    outcome: if unknown { "unknown" } else { "failure" },
                                    person_uid: Some(&person.uid),
                                    reason: Some(&reason),
                                    actor: Some(&person.uid),
                                    ..Default::default()
                                })
                                .await;
                            return Err(if unknown {
                                PortalError::Unknown(reason)
                            } else {
                                PortalError::Upstream(reason)
                            });
                        }
                    }
                }
                _ => (Some(hash), false),
            };
            changes.push(ItemChange {
                source: item.source.clone(),
                account_uid: item.account_uid.clone(),
                display_name: item.display_name.clone(),
                new_hash,
                set_by_resolver,
                history_count: item.policy.history_count,
            });
        }
        // The item a resolver set in its own system, if any: it has changed whatever follows.
        let set_outside = items.iter().zip(&changes).find_map(|(i, c)| match &i.kind {
            ItemKind::Resolver { resolver, .. } if c.set_by_resolver => {
                Some((i.id.clone(), resolver.clone()))
            }
            _ => None,
        });
        if let Err(e) = self
            .store
            .apply_password_change(&PasswordChange {
                person_uid: person.uid.clone(),
                session_token_hash,
                items: changes,
                actor: person.uid.clone(),
                remote_addr: remote_addr.clone(),
            })
            .await
        {
            let Some((id, resolver)) = set_outside else {
                return Err(e.into());
            };
            tracing::error!(
                "the password of {id} was set by {resolver}, then storing the change failed: {e}"
            );
            let reason = format!(
                "{id}: the password in {resolver} was changed, but storing the change in the portal failed; nothing else was changed"
            );
            if let Err(audit) = self
                .store
                .audit(&AuditEvent {
                    event: "password.set",
                    outcome: "unknown",
                    person_uid: Some(&person.uid),
                    reason: Some(&reason),
                    actor: Some(&person.uid),
                    remote_addr: remote_addr.as_deref(),
                    ..Default::default()
                })
                .await
            {
                tracing::error!("audit log write failed: {audit}");
            }
            return Err(PortalError::Partial(format!(
                "The password of {id} was changed in {resolver}, but the portal could not record the change; no other password was changed. Use the new password for {id}, and tell the help desk."
            )));
        }
        Ok(Ok(items.into_iter().map(|i| i.id).collect()))
    }

    fn check_question_text(question: &str, answer: &str) -> Result<(String, String), PortalError> {
        let q = question.split_whitespace().collect::<Vec<_>>().join(" ");
        let a = security::normalize_answer(answer);
        let (ql, al) = (q.chars().count(), a.chars().count());
        if !(QUESTION_MIN..=QUESTION_MAX).contains(&ql) {
            return Err(PortalError::Invalid(format!(
                "A question needs {QUESTION_MIN} to {QUESTION_MAX} characters (this one has {ql})."
            )));
        }
        if !(ANSWER_MIN..=ANSWER_MAX).contains(&al) {
            return Err(PortalError::Invalid(format!(
                "An answer needs {ANSWER_MIN} to {ANSWER_MAX} characters (this one has {al})."
            )));
        }
        if a.len() >= 3 && security::normalize_answer(&q).contains(&a) {
            return Err(PortalError::Invalid(
                "The answer must not appear in the question.".into(),
            ));
        }
        Ok((q, a))
    }

    /// Refuses a question or answer the person already has (except the question `except`).
    async fn check_duplicates(
        &self,
        person_uid: &str,
        question: &str,
        answer: &str,
        except: Option<&str>,
    ) -> Result<(), PortalError> {
        for q in self.store.questions(person_uid).await? {
            if Some(q.id.as_str()) == except {
                continue;
            }
            if security::normalize_answer(&q.question) == security::normalize_answer(question) {
                return Err(PortalError::Invalid(
                    "You already have this question.".into(),
                ));
            }
            if self.verify(&q.answer_hash, answer).await? {
                return Err(PortalError::Invalid(
                    "Each question needs a different answer.".into(),
                ));
            }
        }
        Ok(())
    }

    /// The authenticator's policy, asked now (once per request that needs it).
    async fn policy(&self) -> Result<AuthenticatorPolicy, PortalError> {
        Ok(authenticator_policy(&self.gate, &self.authenticator, None, &self.store).await?)
    }

    /// How many questions the person must keep (the authenticator's policy).
    pub async fn required_questions(&self) -> Result<usize, PortalError> {
        let kept = self.policy().await?.questions_kept;
        Ok(usize::try_from(kept).unwrap_or(usize::MAX))
    }

    pub async fn add_question(
        &self,
        person: &Person,
        question: &str,
        answer: &str,
    ) -> Result<String, PortalError> {
        let (q, a) = Self::check_question_text(question, answer)?;
        let _admitted = self.admit()?;
        if self.store.questions(&person.uid).await?.len() >= MAX_QUESTIONS {
            return Err(PortalError::Invalid(format!(
                "You can have at most {MAX_QUESTIONS} questions."
            )));
        }
        self.check_duplicates(&person.uid, &q, &a, None).await?;
        let hash = self.hash(&a).await?;
        let id = self.store.add_question(&person.uid, &q, &hash).await?;
        self.audit_question(person, "question.added", &id).await?;
        Ok(id)
    }

    pub async fn replace_question(
        &self,
        person: &Person,
        id: &str,
        question: &str,
        answer: &str,
    ) -> Result<(), PortalError> {
        let (q, a) = Self::check_question_text(question, answer)?;
        let _admitted = self.admit()?;
        if !self
            .store
            .questions(&person.uid)
            .await?
            .iter()
            .any(|x| x.id == id)
        {
            return Err(PortalError::NotFound("question"));
        }
        self.check_duplicates(&person.uid, &q, &a, Some(id)).await?;
        let hash = self.hash(&a).await?;
        if !self
            .store
            .replace_question(&person.uid, id, &q, &hash)
            .await?
        {
            return Err(PortalError::NotFound("question"));
        }
        self.audit_question(person, "question.replaced", id).await
    }

    pub async fn delete_question(&self, person: &Person, id: &str) -> Result<(), PortalError> {
        let questions = self.store.questions(&person.uid).await?;
        if !questions.iter().any(|q| q.id == id) {
            return Err(PortalError::NotFound("question"));
        }
        let required = self.required_questions().await?;
        if questions.len() <= required {
            return Err(PortalError::Invalid(format!(
                "You need at least {required} questions; replace this one instead of deleting it."
            )));
        }
        self.store
            .delete_questions(&person.uid, &[id.to_owned()])
            .await?;
        self.audit_question(person, "question.deleted", id).await
    }

    pub async fn unlock_question(&self, person: &Person, id: &str) -> Result<(), PortalError> {
        if !self.store.unlock_question(&person.uid, id).await? {
            return Err(PortalError::NotFound("question"));
        }
        self.audit_question(person, "question.unlocked", id).await
    }

    async fn audit_question(
        &self,
        person: &Person,
        event: &str,
        id: &str,
    ) -> Result<(), PortalError> {
        self.store
            .audit(&AuditEvent {
                event,
                outcome: "success",
                person_uid: Some(&person.uid),
                reason: Some(id),
                actor: Some(&person.uid),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Issues a passcode for `target`, by `issuer` (a person's uid or `cli:<user>`). When the
    /// authenticator's policy splits passcodes (the reference plugin's `PasscodeSplit`), the
    /// issuer gets the first half and the target's manager the second, through the
    /// notification outbox; without a manager that fails. A policy that can't be had issues
    /// nothing.
    pub async fn issue_passcode(
        &self,
        target: &Person,
        issuer: &str,
    ) -> Result<IssuedPasscode, PortalError> {
        let split = self.policy().await?.passcode_split;
        if split && target.manager_uid.as_deref() == Some(issuer) {
            return Err(PortalError::Invalid(format!(
                "PasscodeSplit is on: the second half goes to the manager of {}, so the manager can't issue it; ask the help desk",
                target.uid
            )));
        }
        let manager = match (&target.manager_uid, split) {
            (None, true) => {
                return Err(PortalError::Invalid(format!(
                    "PasscodeSplit is on, but person {} has no manager (UID_PersonHead) to receive the second half",
                    target.uid
                )))
            }
            (m, _) => m.clone(),
        };
        let hours: i64 = self
            .store
            .api_key(
                &self.server_name,
                "VI_Employee_MasterData_PassCode_HoursValid",
            )
            .await?
            .value
            .parse()
            .unwrap_or(8);
        let passcode = security::new_passcode();
        let normalized = security::normalize_passcode(&passcode)
            .ok_or_else(|| PortalError::Internal("generated passcode is malformed".into()))?;
        let hash = {
            let _admitted = self.admit()?;
            self.hash(&normalized).await?
        };
        let expires_at = self
            .store
            .issue_passcode(&target.uid, &hash, hours * 3600, issuer)
            .await?;
        let shown = if split {
            let (first, second) = passcode.split_at(9);
            let manager = manager.unwrap_or_default();
            // Tied to this passcode: purged from the outbox once it is used, replaced,
            // invalidated or expired.
            self.store
                .queue_passcode_half(
                    &target.uid,
                    &hash,
                    &manager,
                    &format!(
                        "A passcode was issued for {} {} ({}). Give them this second half; they type both halves together.",
                        target.first_name, target.last_name, target.uid
                    ),
                    second.trim_start_matches('-'),
                )
                .await?;
            first.trim_end_matches('-').to_owned()
        } else {
            passcode
        };
        self.store
            .audit(&AuditEvent {
                event: "passcode.issued",
                outcome: "success",
                person_uid: Some(&target.uid),
                actor: Some(issuer),
                reason: Some(&format!(
                    "valid for {hours} h{}",
                    if split { ", split (four-eyes)" } else { "" }
                )),
                ..Default::default()
            })
            .await?;
        Ok(IssuedPasscode {
            shown,
            split,
            expires_at,
            hours,
        })
    }
}
