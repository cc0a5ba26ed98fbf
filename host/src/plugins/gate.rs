//! How the host calls into plugins: on tokio's blocking pool, never on an async worker, with a
//! bound on concurrent calls and a deadline. A call that fails, panics or runs late is denied.
//!
//! A plugin call may lead to another plugin's call: the authenticator asks the host to verify a
//! password, and the host asks the resolver that owns the account. That inner call runs under a
//! deadline inside the outer one ([`nested`]), so a resolver that stalls is reported as the
//! resolver's failure before the authenticator's own call runs out of time; a failure recorded
//! with [`record_failure`] during a call is what the call then reports ([`CallError::Resolver`]).

use prp_plugin_api::abi_stable::std_types::RResult;
use prp_plugin_api::PluginError;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin returned an error: {0}")]
    Plugin(PluginError),
    #[error("plugin call did not finish within {0:?}")]
    TimedOut(Duration),
    #[error("plugin call could not start: every plugin slot stayed busy for {0:?}")]
    Busy(Duration),
    #[error("plugin call failed in the host: {0}")]
    Host(String),
    /// Another plugin's component, called for this one through the host, failed: the message
    /// names it and says why.
    #[error("{0}")]
    Resolver(String),
}

/// The call in progress on this (blocking) thread.
struct Scope {
    deadline: Instant,
    timeout: Duration,
    nested: Arc<Semaphore>,
    failure: Option<String>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Limits and runs plugin calls. Cheap to clone.
#[derive(Clone)]
pub struct CallGate {
    slots: Arc<Semaphore>,
    /// Slots for calls made from inside a call ([`nested`]), so that they neither wait for the
    /// slot their caller holds nor spawn threads without end.
    nested: Arc<Semaphore>,
    timeout: Duration,
}

impl CallGate {
    pub fn new(max_concurrent: usize, timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            nested: Arc::new(Semaphore::new(max_concurrent.max(1))),
            timeout,
        }
    }

    /// Runs `f` on a blocking thread. The slot is held until `f` really returns, even after the
    /// caller gave up on it, so a plugin that hangs uses up slots instead of spawning threads
    /// without end.
    pub async fn call<T, F>(&self, f: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce() -> RResult<T, PluginError> + Send + 'static,
    {
        let permit = tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| CallError::Busy(self.timeout))?
            .map_err(|_| CallError::Host("plugin gate closed".into()))?;
        let scope = Scope {
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
            nested: Arc::clone(&self.nested),
            failure: None,
        };
        let task = tokio::task::spawn_blocking(move || {
            SCOPE.with(|s| *s.borrow_mut() = Some(scope));
            let result = f();
            let failure = SCOPE
                .with(|s| s.borrow_mut().take())
                .and_then(|s| s.failure);
            drop(permit);
            (result, failure)
        });
        match tokio::time::timeout(self.timeout, task).await {
            Err(_) => Err(CallError::TimedOut(self.timeout)),
            Ok(Err(join)) => Err(CallError::Host(format!(
                "the call panicked in the host: {join}"
            ))),
            Ok(Ok((RResult::ROk(v), _))) => Ok(v),
            Ok(Ok((RResult::RErr(_), Some(failure)))) => Err(CallError::Resolver(failure)),
            Ok(Ok((RResult::RErr(e), None))) => Err(CallError::Plugin(e)),
        }
    }
}

/// What is left of the deadline of the plugin call in progress on this thread (a nested call's
/// own, shorter deadline inside one), or `None` outside a call.
pub fn time_left() -> Option<Duration> {
    SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .map(|s| s.deadline.saturating_duration_since(Instant::now()))
    })
}

/// Records, for the call in progress on this thread, that a component it depended on failed;
/// if the call then fails, this is the reason it reports.
pub fn record_failure(message: String) {
    SCOPE.with(|s| {
        if let Some(scope) = s.borrow_mut().as_mut() {
            scope.failure.get_or_insert(message);
        }
    });
}

/// Runs `f` (a call into another plugin, made from inside a gated call on this thread) on a
/// blocking thread of its own, and waits for it until shortly before the outer call's deadline,
/// leaving the outer call time to report the failure. Outside a gated call it runs `f` here.
pub fn nested<T, F>(f: F) -> Result<T, CallError>
where
    T: Send + 'static,
    F: FnOnce() -> RResult<T, PluginError> + Send + 'static,
{
    let Some((deadline, timeout, slots)) = SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .map(|s| (s.deadline, s.timeout, Arc::clone(&s.nested)))
    }) else {
        return f().into_result().map_err(CallError::Plugin);
    };
    let reserve = (timeout / 5).max(Duration::from_millis(20));
    let budget = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(reserve);
    let until = Instant::now() + budget;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| CallError::Host(format!("no runtime for a nested plugin call: {e}")))?;
    let permit = runtime
        .block_on(tokio::time::timeout(
            budget,
            Arc::clone(&slots).acquire_owned(),
        ))
        .map_err(|_| CallError::Busy(budget))?
        .map_err(|_| CallError::Host("plugin gate closed".into()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let inner = Scope {
        deadline: until,
        timeout: budget,
        nested: Arc::clone(&slots),
        failure: None,
    };
    runtime.spawn_blocking(move || {
        // The nested call has a deadline of its own, which its callbacks can ask for.
        SCOPE.with(|s| *s.borrow_mut() = Some(inner));
        let result = f();
        SCOPE.with(|s| s.borrow_mut().take());
        drop(permit);
        let _ = tx.send(result);
    });
    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        Ok(RResult::ROk(v)) => Ok(v),
        Ok(RResult::RErr(e)) => Err(CallError::Plugin(e)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(CallError::TimedOut(budget)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(CallError::Host("the call panicked in the host".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_calls_are_denied_and_keep_their_slot() {
        let gate = CallGate::new(1, Duration::from_millis(50));
        let slow = gate.call(|| {
            std::thread::sleep(Duration::from_millis(300));
            RResult::ROk(())
        });
        assert!(matches!(slow.await, Err(CallError::TimedOut(_))));
        // The only slot is still held by the sleeping call.
        let next = gate.call(|| RResult::ROk(1)).await;
        assert!(matches!(next, Err(CallError::Busy(_))), "{next:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stalled_nested_call_is_reported_before_the_outer_deadline() {
        let gate = CallGate::new(1, Duration::from_millis(500));
        let started = Instant::now();
        let outer = gate
            .call(|| {
                let inner = nested(|| {
                    std::thread::sleep(Duration::from_secs(1));
                    RResult::ROk(())
                });
                match inner {
                    Err(CallError::TimedOut(_)) => {
                        record_failure("resolver \"r\" (plugin p) stalled".into());
                        RResult::<(), _>::RErr(PluginError::internal("inner failed"))
                    }
                    other => RResult::RErr(PluginError::internal(format!("{other:?}"))),
                }
            })
            .await;
        assert!(
            matches!(&outer, Err(CallError::Resolver(m)) if m == "resolver \"r\" (plugin p) stalled"),
            "{outer:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
        // A failure recorded in one call does not leak into the next on the same thread.
        let next = gate
            .call(|| RResult::<(), _>::RErr(PluginError::internal("own")))
            .await;
        assert!(matches!(next, Err(CallError::Plugin(_))), "{next:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn nested_results_pass_through() {
        let gate = CallGate::new(1, Duration::from_secs(5));
        let v = gate
            .call(|| match nested(|| RResult::ROk(7)) {
                Ok(v) => RResult::ROk(v),
                Err(e) => RResult::RErr(PluginError::internal(e.to_string())),
            })
            .await;
        assert_eq!(v.ok(), Some(7));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_call_knows_its_time_left_and_a_nested_call_less() {
        assert_eq!(time_left(), None);
        let gate = CallGate::new(2, Duration::from_secs(60));
        let (outer, inner) = gate
            .call(|| {
                let outer = time_left();
                let inner = nested(|| RResult::ROk(time_left())).ok().flatten();
                RResult::ROk((outer, inner))
            })
            .await
            .unwrap();
        let (outer, inner) = (outer.unwrap(), inner.unwrap());
        assert!(outer <= Duration::from_secs(60));
        assert!(inner < outer, "{inner:?} < {outer:?}");
    }

    #[tokio::test]
    async fn results_and_errors_pass_through() {
        let gate = CallGate::new(2, Duration::from_secs(5));
        assert_eq!(gate.call(|| RResult::ROk(7)).await.ok(), Some(7));
        let err = gate
            .call(|| RResult::<(), _>::RErr(PluginError::config("x")))
            .await;
        assert!(matches!(err, Err(CallError::Plugin(_))));
    }
}
