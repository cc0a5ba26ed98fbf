//! What the authenticator in use asks of the host outside its own calls
//! ([`Authenticator::policy`](prp_plugin_api::Authenticator::policy), ABI 1.1): the question
//! counts and four-eyes passcodes. The host asks once per request that needs it, so a change
//! to the plugin's configuration applies at the next request.
//!
//! An authenticator that doesn't say (every 1.0 plugin, whose vtable has no `policy`) gets the
//! rules the host applied before 1.1: the reference plugin's parameters, read by the host. This
//! is the only place the host knows those parameters' paths.

use super::{CallError, CallGate, RequestScope};
use crate::store::{Store, StoreError};
use prp_plugin_api::rules::parse_flag;
use prp_plugin_api::{AuthenticatorBox, AuthenticatorPolicy};
use std::sync::Arc;

/// Where 1.0 plugins' question counts and `PasscodeSplit` were configured.
const V1_0_ROOT: &str = r"QER\Person\PasswordResetAuthenticator";

/// 1.0's defaults, when those parameters are unset or not numbers.
pub const V1_0_QUESTIONS_KEPT: u32 = 3;
pub const V1_0_QUESTIONS_ASKED: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the authenticator could not say its policy: {0}")]
    Plugin(#[from] CallError),
    #[error("reading the policy parameters of a 1.0 authenticator failed: {0}")]
    Store(#[from] StoreError),
}

/// The policy of `authenticator`, asked through the gate; in `scope` when given (a login's,
/// so that the call is counted and its parameter reads are served from the request's
/// snapshot). For an authenticator that doesn't say: [`v1_0_policy`].
pub async fn authenticator_policy(
    gate: &CallGate,
    authenticator: &Arc<AuthenticatorBox>,
    scope: Option<&RequestScope>,
    store: &Store,
) -> Result<AuthenticatorPolicy, PolicyError> {
    let auth = Arc::clone(authenticator);
    let scope = scope.cloned();
    let said = gate
        .call(move || match &scope {
            Some(scope) => scope.run("policy", || auth.policy()),
            None => auth.policy(),
        })
        .await?;
    match said.into_option() {
        Some(policy) => Ok(policy),
        None => Ok(v1_0_policy(store).await?),
    }
}

/// The rules of 1.0: `QueryAnswerDefinitions` (default 3), `QueryAnswerRequests` (default 2)
/// and `PasscodeSplit` (off unless a true value) under `QER\Person\PasswordResetAuthenticator`.
pub async fn v1_0_policy(store: &Store) -> Result<AuthenticatorPolicy, StoreError> {
    let value = |name: &str| {
        let path = format!(r"{V1_0_ROOT}\{name}");
        async move { store.parameter_value(&path).await }
    };
    let count = |v: Option<String>, default: u32| {
        v.and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(default)
    };
    Ok(AuthenticatorPolicy {
        questions_kept: count(value("QueryAnswerDefinitions").await?, V1_0_QUESTIONS_KEPT),
        questions_asked: count(value("QueryAnswerRequests").await?, V1_0_QUESTIONS_ASKED),
        passcode_split: value("PasscodeSplit")
            .await?
            .and_then(|v| parse_flag(&v))
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use prp_plugin_api::{
        authenticator_box, AuthenticatorImpl, CheckFinding, LoginOutcome, LoginRequest,
        PluginError, QuestionChallenge, ResolvedAccount,
    };
    use std::time::Duration;

    /// An authenticator that says `said` when asked its policy.
    struct Saying {
        said: Option<AuthenticatorPolicy>,
    }

    impl AuthenticatorImpl for Saying {
        fn id(&self) -> String {
            "saying".into()
        }
        fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError> {
            Ok(Vec::new())
        }
        fn login(&self, _: &LoginRequest) -> Result<LoginOutcome, PluginError> {
            Ok(LoginOutcome::deny(None, "test"))
        }
        fn challenge(
            &self,
            _: &str,
            _: &[ResolvedAccount],
        ) -> Result<Vec<QuestionChallenge>, PluginError> {
            Ok(Vec::new())
        }
        fn explain(&self, _: &str, _: &[ResolvedAccount]) -> Result<Vec<String>, PluginError> {
            Ok(Vec::new())
        }
        fn policy(&self) -> Result<Option<AuthenticatorPolicy>, PluginError> {
            Ok(self.said)
        }
    }

    async fn fresh_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url, Arc::new(SystemClock)).await.unwrap();
        store.migrate().await.unwrap();
        (dir, store)
    }

    async fn store_with_1_0_parameters() -> (tempfile::TempDir, Store) {
        let (dir, store) = fresh_store().await;
        for (name, value) in [
            ("QueryAnswerDefinitions", "5"),
            ("QueryAnswerRequests", "4"),
            ("PasscodeSplit", "yes"),
        ] {
            store
                .set_parameter(&format!(r"{V1_0_ROOT}\{name}"), Some(value))
                .await
                .unwrap();
        }
        (dir, store)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_host_follows_what_the_authenticator_says_and_1_0_rules_when_it_says_nothing() {
        let (_dir, store) = store_with_1_0_parameters().await;
        let gate = CallGate::new(2, Duration::from_secs(10));
        let said = AuthenticatorPolicy {
            questions_kept: 7,
            questions_asked: 1,
            passcode_split: false,
        };
        let speaking = Arc::new(authenticator_box(Saying { said: Some(said) }));
        // The parameters the host used to read say otherwise: the authenticator's word wins.
        let got = authenticator_policy(&gate, &speaking, None, &store)
            .await
            .unwrap();
        assert_eq!(got, said);
        let silent = Arc::new(authenticator_box(Saying { said: None }));
        let got = authenticator_policy(&gate, &silent, None, &store)
            .await
            .unwrap();
        assert_eq!(
            got,
            AuthenticatorPolicy {
                questions_kept: 5,
                questions_asked: 4,
                passcode_split: true,
            }
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_1_0_rules_default_when_unset_or_unreadable() {
        let (_dir, store) = fresh_store().await;
        let unset = v1_0_policy(&store).await.unwrap();
        assert_eq!(
            unset,
            AuthenticatorPolicy {
                questions_kept: V1_0_QUESTIONS_KEPT,
                questions_asked: V1_0_QUESTIONS_ASKED,
                passcode_split: false,
            }
        );
        store
            .set_parameter(&format!(r"{V1_0_ROOT}\QueryAnswerRequests"), Some("x"))
            .await
            .unwrap();
        store
            .set_parameter(&format!(r"{V1_0_ROOT}\PasscodeSplit"), Some("perhaps"))
            .await
            .unwrap();
        assert_eq!(v1_0_policy(&store).await.unwrap(), unset);
    }
}
