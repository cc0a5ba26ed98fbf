//! Tells the tests whether a PostgreSQL run can happen: with `PRP_TEST_POSTGRES_URL` set at
//! build time, the `postgres` variant of every backend test runs; without, it shows as
//! ignored with the reason in `cargo test`'s summary.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(prp_postgres)");
    println!("cargo::rerun-if-env-changed=PRP_TEST_POSTGRES_URL");
    if std::env::var("PRP_TEST_POSTGRES_URL").is_ok_and(|v| !v.trim().is_empty()) {
        println!("cargo::rustc-cfg=prp_postgres");
    }
}
