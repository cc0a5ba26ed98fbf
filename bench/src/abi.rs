//! Plugin call overhead: the same authenticator method called directly and through the ABI
//! (the `sabi_trait` vtable, the panic guard and the `R*` type conversions), interleaved in
//! rounds so that both see the same machine state.

use prp_plugin_api::abi_stable::std_types::{RSlice, RVec};
use prp_plugin_api::{
    authenticator_box, AuthenticatorImpl, CheckFinding, LoginOutcome, LoginRequest, PluginError,
    QuestionChallenge, ResolvedAccount,
};
use std::hint::black_box;
use std::time::Instant;

struct Bench;

impl AuthenticatorImpl for Bench {
    fn id(&self) -> String {
        "bench".into()
    }
    fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError> {
        Ok(Vec::new())
    }
    fn login(&self, _: &LoginRequest) -> Result<LoginOutcome, PluginError> {
        Err(PluginError::internal("not used"))
    }
    #[inline(never)]
    fn challenge(
        &self,
        login_name: &str,
        candidates: &[ResolvedAccount],
    ) -> Result<Vec<QuestionChallenge>, PluginError> {
        black_box((login_name, candidates));
        Ok(Vec::new())
    }
    fn explain(&self, _: &str, _: &[ResolvedAccount]) -> Result<Vec<String>, PluginError> {
        Ok(Vec::new())
    }
}

/// Options of `prp-bench abi`.
#[derive(clap::Args)]
pub struct Args {
    /// Calls per round and way.
    #[arg(long, default_value_t = 2_000_000)]
    iterations: u64,
    /// Rounds (the medians are reported).
    #[arg(long, default_value_t = 10)]
    rounds: u32,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (iterations, rounds) = (args.iterations, args.rounds.max(1));
    let direct = Bench;
    let boxed = authenticator_box(Bench);
    let candidates: RVec<ResolvedAccount> = RVec::new();
    let (mut d_ns, mut a_ns) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iterations {
            let r = direct.challenge(black_box("alice"), black_box(&[]));
            black_box(r.is_ok());
        }
        d_ns.push(t.elapsed().as_nanos() as f64 / iterations as f64);
        let t = Instant::now();
        for _ in 0..iterations {
            let r = boxed.challenge(
                black_box("alice").into(),
                black_box(RSlice::from_slice(candidates.as_slice())),
            );
            black_box(r.is_ok());
        }
        a_ns.push(t.elapsed().as_nanos() as f64 / iterations as f64);
    }
    d_ns.sort_by(f64::total_cmp);
    a_ns.sort_by(f64::total_cmp);
    let (d, a) = (d_ns[d_ns.len() / 2], a_ns[a_ns.len() / 2]);
    println!("plugin call overhead ({rounds} rounds of {iterations} calls, medians)");
    println!("  direct call:          {d:8.2} ns");
    println!("  through the ABI:      {a:8.2} ns");
    println!(
        "  overhead:             {:8.2} ns per call (goal: under 50 ns)",
        a - d
    );
    println!("  ratio ABI / direct:   {:8.2}", a / d.max(0.001));
    Ok(())
}
