use crate::error::{ErrorKind, PluginError, PluginResult};
use abi_stable::std_types::RResult;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into a [`PluginError`] of kind [`ErrorKind::PANICKED`] so that it
/// never unwinds across the ABI. Every entry point of a plugin goes through this.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, PluginError>) -> PluginResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(err)) => RResult::RErr(err),
        Err(payload) => RResult::RErr(PluginError::new(
            ErrorKind::PANICKED,
            format!("plugin panicked: {}", panic_message(payload.as_ref())),
        )),
    }
}

/// The text of a panic payload, for the two payload types `panic!` produces.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "(non-string panic payload)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_and_err_pass_through() {
        assert_eq!(guarded(|| Ok(3)).into_result(), Ok(3));
        let err = guarded::<()>(|| Err(PluginError::config("bad"))).into_result();
        assert_eq!(err, Err(PluginError::config("bad")));
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let err = guarded::<()>(|| panic!("boom {}", 7)).into_result();
        std::panic::set_hook(hook);
        let err = err
            .err()
            .unwrap_or_else(|| PluginError::internal("no error"));
        assert_eq!(err.kind, ErrorKind::PANICKED);
        assert_eq!(err.message.as_str(), "plugin panicked: boom 7");
    }
}
