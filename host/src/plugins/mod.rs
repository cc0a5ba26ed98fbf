//! Plugin loading, the host services plugins get, and the gate every plugin call goes through.

mod file;
mod gate;
mod loader;
mod policy;
mod report;
mod services;

pub(crate) use gate::time_left as call_time_left;
pub use gate::{CallError, CallGate};
pub use loader::{
    candidates, load_all, select_resolvers, summarize_layout_error, LoadReport, LoadedPlugin,
    RejectCause, Rejection, UnusedResolver,
};
pub use policy::{
    authenticator_policy, v1_0_policy, PolicyError, V1_0_QUESTIONS_ASKED, V1_0_QUESTIONS_KEPT,
};
pub use report::{print_json, print_text};
pub use services::{host_services, HostContext, RequestScope, ResolverInUse};
