//! The library's entry: a portal built from its settings ([`Service::build`]), the listeners it
//! serves on ([`Listeners::bind`]), and [`serve`]. The binary, the tests and the bench all start
//! servers through these three.

use crate::app::{self, Portal};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::db::DbError;
use crate::http::WebPolicy;
use crate::login::LoginService;
use crate::metrics::Metrics;
use crate::portal::SelfService;
use crate::store::{Store, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a portal can't be built or must not serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot apply the portal's migrations: {0}")]
    Migrate(#[from] StoreError),
    #[error("cannot start the argon2 workers: {0}")]
    Hasher(String),
    #[error("refusing to serve: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot serve https: {0}")]
    Tls(#[from] crate::http::TlsError),
}

/// A portal ready to serve: its parts, the login pipeline, self-service and metrics.
pub struct Service {
    pub(crate) portal: Portal,
    pub(crate) login: LoginService,
    pub(crate) self_service: SelfService,
    pub(crate) metrics: Metrics,
    web: WebPolicy,
    /// The last live readiness check of the authenticator: (when, problems).
    ready_cache: Mutex<Option<(Instant, Vec<String>)>>,
    resolver_cache: Mutex<Option<(Instant, Vec<crate::api::ResolverHealth>)>>,
    /// Held by the one request that refreshes `resolver_cache`.
    resolver_refresh: tokio::sync::Mutex<()>,
}

impl Service {
    /// Opens the database and applies pending migrations, starts the argon2 workers, loads
    /// and self-checks the plugins, and refuses (fail closed) when anything the portal needs
    /// is missing.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Service::build`] with a given clock (tests move time).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        if let Some(line) = app::placeholder_token_line(&settings) {
            tracing::warn!("{}: {}", line.name, line.detail);
        }
        let store = app::open_store(&settings, clock).await?;
        store.migrate().await?;
        let portal = Self::assemble(settings, store).await?;
        let refusals = portal.refusals();
        if !refusals.is_empty() {
            return Err(StartError::Refused(refusals));
        }
        Self::from_portal(portal)
    }

    /// The portal's parts with the given store, without the refusal check (the CLI's admin
    /// verbs work on a portal that may not serve).
    pub(crate) async fn assemble(settings: Settings, store: Store) -> Result<Portal, StartError> {
        let hasher = app::new_hasher(&settings)
            .await
            .map_err(|e| StartError::Hasher(e.to_string()))?;
        Ok(app::assemble(settings, Some(store), hasher).await)
    }

    /// Wires the login pipeline and self-service to an assembled portal.
    pub(crate) fn from_portal(portal: Portal) -> Result<Self, StartError> {
        let login = app::login_service(&portal).map_err(|e| StartError::Refused(vec![e]))?;
        let self_service = app::self_service(&portal).map_err(|e| StartError::Refused(vec![e]))?;
        Ok(Self {
            web: WebPolicy::from_settings(&portal.settings),
            portal,
            login,
            self_service,
            metrics: Metrics::default(),
            ready_cache: Mutex::new(None),
            resolver_cache: Mutex::new(None),
            resolver_refresh: tokio::sync::Mutex::new(()),
        })
    }

    /// The settings the portal was built from.
    pub fn settings(&self) -> &Settings {
        &self.portal.settings
    }

    /// The portal's database.
    pub fn store(&self) -> &Store {
        &self.login.store
    }

    pub(crate) fn web(&self) -> &WebPolicy {
        &self.web
    }

    pub(crate) fn idle_seconds(&self) -> i64 {
        i64::from(self.portal.settings.host.session_idle_minutes) * 60
    }

    /// Why logins can't succeed right now, if they can't: the database doesn't answer, the
    /// portal must not serve, or the authenticator's live self-check fails (e.g. the
    /// ApplicationToken was rotated and this server still has the old one). The self-check runs
    /// at most once every few seconds, however often readiness is asked.
    pub(crate) async fn readiness(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let pool = self.login.store.pool();
        let probe = async {
            crate::db::ping(pool).await?;
            // Reads still go through while another connection holds SQLite's write lock, and
            // logins write: ask for the write lock too (this statement changes nothing).
            sqlx::query("UPDATE prp_session SET last_seen_at = last_seen_at WHERE 1 = 0")
                .execute(pool)
                .await
                .map(drop)
        };
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => problems.push("database: not answering (or not writable)".to_owned()),
            Err(_) => problems.push("database: no answer within 2s".to_owned()),
        }
        problems.extend(self.portal.refusals());
        if problems.is_empty() {
            problems.extend(self.authenticator_problems().await);
        }
        if problems.is_empty() {
            // A required resolver that fails denies every login; an optional one doesn't.
            problems.extend(
                self.resolver_health()
                    .await
                    .into_iter()
                    .filter(|r| !r.optional && r.status != "ok")
                    .map(|r| {
                        format!(
                            "resolver \"{}\" (plugin {}): {}",
                            r.id,
                            r.plugin,
                            r.findings.join("; ")
                        )
                    }),
            );
        }
        problems
    }

    /// Each resolver in use and its live self-check, run at most once every few seconds and by
    /// one request at a time: the others answer with the last result meanwhile, so a burst of
    /// readiness requests never fills the plugin call slots logins need.
    pub(crate) async fn resolver_health(&self) -> Vec<crate::api::ResolverHealth> {
        const FRESH: Duration = Duration::from_secs(5);
        let cached = || {
            self.resolver_cache.lock().ok().and_then(|c| {
                c.as_ref()
                    .map(|(at, health)| (at.elapsed() < FRESH, health.clone()))
            })
        };
        let last = cached();
        if let Some((true, health)) = last {
            return health;
        }
        let _refreshing = match (self.resolver_refresh.try_lock(), last) {
            (Ok(guard), _) => guard,
            (Err(_), Some((_, health))) => return health,
            (Err(_), None) => {
                let guard = self.resolver_refresh.lock().await;
                if let Some((true, health)) = cached() {
                    return health;
                }
                guard
            }
        };
        let mut out = Vec::new();
        for owner in &self.portal.resolvers {
            let r = Arc::clone(&owner.resolver);
            let (failed, findings) =
                match crate::app::self_check(&self.portal.gate, move || r.self_check()).await {
                    Ok(findings) => (
                        findings.iter().any(|f| f.severity.is_error()),
                        findings
                            .iter()
                            .map(|f| format!("{}: {}: {}", f.severity.name(), f.subject, f.message))
                            .collect(),
                    ),
                    Err(e) => (true, vec![format!("self-check failed: {e}")]),
                };
            out.push(crate::api::ResolverHealth {
                id: owner.id.clone(),
                plugin: owner.plugin.clone(),
                optional: owner.optional,
                status: if failed { "failed" } else { "ok" }.to_owned(),
                findings,
            });
        }
        if let Ok(mut cache) = self.resolver_cache.lock() {
            *cache = Some((Instant::now(), out.clone()));
        }
        out
    }

    async fn authenticator_problems(&self) -> Vec<String> {
        const FRESH: Duration = Duration::from_secs(5);
        if let Ok(cache) = self.ready_cache.lock() {
            if let Some((at, problems)) = cache.as_ref() {
                if at.elapsed() < FRESH {
                    return problems.clone();
                }
            }
        }
        let auth = Arc::clone(&self.login.authenticator);
        let problems = match self.portal.gate.call(move || auth.self_check()).await {
            Ok(findings) => findings
                .into_iter()
                .filter(|f| f.severity.is_error())
                .map(|f| format!("authenticator: {}: {}", f.subject, f.message))
                .collect(),
            Err(e) => vec![format!("authenticator: self-check failed: {e}")],
        };
        if let Ok(mut cache) = self.ready_cache.lock() {
            *cache = Some((Instant::now(), problems.clone()));
        }
        problems
    }
}

/// The sockets a portal serves on: the public API (and pages), and optionally the admin
/// listener (`/metrics`, the detail of `/health/ready`).
pub struct Listeners {
    public: tokio::net::TcpListener,
    /// TLS of the public listener, when `Host:Certificate` is set.
    tls: Option<Arc<crate::http::Tls>>,
    admin: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Binds `Host:Listen` (loading its certificate when `Host:Certificate` is set) and, when
    /// set, `Host:AdminListen`.
    pub async fn bind(settings: &Settings) -> Result<Self, StartError> {
        let tls = crate::http::Tls::from_settings(settings)?;
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })
        };
        let public = bind(settings.listen).await?;
        let admin = match settings.host.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self { public, tls, admin })
    }

    /// The public listener's TLS, to [`reload`](crate::http::Tls::reload) on SIGHUP.
    pub fn tls(&self) -> Option<Arc<crate::http::Tls>> {
        self.tls.clone()
    }

    /// The public listener's address (the port the OS chose for port 0).
    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public.local_addr()
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// Serves until `shutdown` resolves, then finishes the requests in flight and closes the
/// database pool.
pub async fn serve(
    service: Service,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = Arc::new(service);
    // Delivers the notification outbox while serving (when an SMTP server is configured).
    let notifier = crate::notify::Notifier::start(service.login.store.clone(), service.settings());
    let result = crate::http::run(
        Arc::clone(&service),
        listeners.public,
        listeners.tls,
        listeners.admin,
        shutdown,
    )
    .await;
    if let Some(n) = notifier {
        n.stop().await;
    }
    service.login.store.close().await;
    result
}

/// A time for people: RFC 3339 in UTC, or the raw Unix seconds when out of range.
pub fn rfc3339(unix_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_seconds.to_string())
}

/// A passcode the help desk issued, to show once.
pub struct HelpDeskPasscode {
    pub person_uid: String,
    /// The whole passcode, or the issuer's half when split.
    pub shown: String,
    pub split: bool,
    pub hours: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for HelpDeskPasscode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelpDeskPasscode")
            .field("person_uid", &self.person_uid)
            .field("shown", &"***")
            .finish_non_exhaustive()
    }
}

/// What the help desk's verbs need: a portal assembled whether or not it may serve.
impl Service {
    /// Assembles the portal on an open (and migrated) store without refusing to start, for
    /// `explain-login` and `passcode new`; fails only when the authenticator is missing.
    pub async fn for_admin(settings: Settings, store: Store) -> Result<Self, StartError> {
        let portal = Self::assemble(settings, store).await?;
        Self::from_portal(portal)
    }

    /// Clears the locks of the person a login name resolves to (`prp-host unlock`).
    pub async fn unlock_name(
        &self,
        name: &str,
        scope: crate::store::LockScope,
    ) -> Result<crate::throttle::Unlocked, String> {
        self.login.unlock(name, scope).await
    }

    /// The help desk removes the factor `method` of the person `name` stands for (who lost
    /// it); audited with `actor`, and the person is told. Returns the person's id.
    pub async fn remove_factor_of_name(
        &self,
        name: &str,
        method: &str,
        actor: &str,
    ) -> Result<String, String> {
        let person_uid = self.login.person_of_name(name).await?;
        crate::flows::remove_for(self, &person_uid, method, actor)
            .await
            .map_err(|e| match e {
                crate::flows::FlowError::NotEnrolled => {
                    format!("person {person_uid} has no {method} factor")
                }
                e => format!("person {person_uid}: {e}"),
            })?;
        Ok(person_uid)
    }

    /// How a login name resolves and what each way of logging in would do, in lines for
    /// people; never a secret.
    pub async fn explain_login(&self, name: &str) -> Result<Vec<String>, String> {
        let store = self.store();
        let candidates = self.login.resolve(name).await?;
        let mut out = vec![format!(
            "login name \"{name}\" (names match ignoring the case of A-Z; other characters exactly)"
        )];
        if candidates.is_empty() {
            out.push("  no resolver matched it".into());
        }
        for c in &candidates {
            let account = c
                .account_uid
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "(central account)".into());
            out.push(format!(
                "  resolver {}: {} {} -> person {} (matched {}){}",
                c.resolver,
                c.source,
                account,
                if c.person_uid.is_empty() {
                    "(none)"
                } else {
                    c.person_uid.as_str()
                },
                c.matched_by,
                c.refused_by
                    .as_ref()
                    .map(|r| format!(", REFUSED: {r}"))
                    .unwrap_or_default()
            ));
        }
        let auth = Arc::clone(&self.login.authenticator);
        let n = name.to_owned();
        let cands = candidates.clone();
        let lines = self
            .portal
            .gate
            .call(move || {
                let c: prp_plugin_api::abi_stable::std_types::RVec<_> = cands.into_iter().collect();
                auth.explain(n.as_str().into(), c.as_rslice())
            })
            .await
            .map_err(|e| e.to_string())?;
        out.extend(lines.into_iter().map(|l| format!("  {l}")));
        let persons: std::collections::BTreeSet<String> = candidates
            .iter()
            .map(|c| c.person_uid.to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let err = |e: StoreError| e.to_string();
        for p in persons {
            for scope in [
                crate::store::LockScope::All,
                crate::store::LockScope::Password,
                crate::store::LockScope::Questions,
                crate::store::LockScope::Passcode,
                crate::store::LockScope::Factor,
            ] {
                if let Some(until) = store.locked_until(&p, scope).await.map_err(err)? {
                    out.push(format!(
                        "  person {p} is locked for {} until {}",
                        scope.name(),
                        rfc3339(until)
                    ));
                }
            }
            match store.passcode(&p).await.map_err(err)? {
                Some((_, expires)) if expires > store.now() => out.push(format!(
                    "  person {p} has a passcode valid until {}",
                    rfc3339(expires)
                )),
                Some(_) => out.push(format!("  person {p} has an expired passcode")),
                None => out.push(format!("  person {p} has no passcode")),
            }
            // Whether a full login of theirs asks for a factor (the help desk removes a lost
            // one with `prp-host flows remove-factor`).
            let factors = store.factors(&p).await.map_err(err)?;
            for f in &factors {
                out.push(match (&f.data, f.enrolled_at) {
                    (Some(_), Some(at)) => format!(
                        "  person {p} has the second factor {} (active since {}): every full login asks for it",
                        f.method,
                        rfc3339(at)
                    ),
                    (Some(_), None) => format!(
                        "  person {p} has the second factor {}: every full login asks for it",
                        f.method
                    ),
                    (None, _) => format!(
                        "  person {p} began enrolling in {} but hasn't confirmed it",
                        f.method
                    ),
                });
            }
            if factors.iter().all(|f| f.data.is_none()) {
                out.push(format!("  person {p} has no second factor"));
            }
            let qs = store.questions(&p).await.map_err(err)?;
            let locked = qs.iter().filter(|q| q.locked).count();
            out.push(format!(
                "  person {p} has {} password questions, {locked} locked",
                qs.len()
            ));
        }
        Ok(out)
    }

    /// Issues a passcode for the one person `name` resolves to, who may log in.
    pub async fn issue_passcode_for_name(
        &self,
        name: &str,
        issuer: &str,
    ) -> Result<HelpDeskPasscode, String> {
        let candidates = self.login.resolve(name).await?;
        let person = match prp_plugin_api::rules::resolve(&candidates) {
            prp_plugin_api::rules::Resolution::Nobody => {
                return Err(format!(
                    "\"{name}\" matches no person (see `prp-host explain-login {name}`)"
                ))
            }
            prp_plugin_api::rules::Resolution::Ambiguous(n) => {
                return Err(crate::login::ambiguous(name, n))
            }
            prp_plugin_api::rules::Resolution::Person { eligible, .. } if eligible.is_empty() => {
                return Err(format!(
                    "\"{name}\" may not log in (see `prp-host explain-login {name}`)"
                ))
            }
            prp_plugin_api::rules::Resolution::Person { uid, .. } => uid.to_owned(),
        };
        let target = self
            .store()
            .person(&person)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("person {person} does not exist"))?;
        let issued = self
            .self_service
            .issue_passcode(&target, issuer)
            .await
            .map_err(|e| e.to_string())?;
        Ok(HelpDeskPasscode {
            person_uid: person,
            shown: issued.shown,
            split: issued.split,
            hours: issued.hours,
            expires_at: issued.expires_at,
        })
    }
}
