//! How the host calls into plugins: on tokio's blocking pool, never on an async worker, with a
//! bound on concurrent calls and a deadline. A call that fails, panics or runs late is denied.

use prp_plugin_api::abi_stable::std_types::RResult;
use prp_plugin_api::PluginError;
use std::sync::Arc;
use std::time::Duration;
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
}

/// Limits and runs plugin calls. Cheap to clone.
#[derive(Clone)]
pub struct CallGate {
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl CallGate {
    pub fn new(max_concurrent: usize, timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
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
        let task = tokio::task::spawn_blocking(move || {
            let result = f();
            drop(permit);
            result
        });
        match tokio::time::timeout(self.timeout, task).await {
            Err(_) => Err(CallError::TimedOut(self.timeout)),
            Ok(Err(join)) => Err(CallError::Host(format!(
                "the call panicked in the host: {join}"
            ))),
            Ok(Ok(RResult::ROk(v))) => Ok(v),
            Ok(Ok(RResult::RErr(e))) => Err(CallError::Plugin(e)),
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
