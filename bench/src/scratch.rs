//! A fresh PostgreSQL database for one bench run, created on an admin URL and dropped after.

/// A database created for a run; [`ScratchDatabase::remove`] drops it.
pub(crate) struct ScratchDatabase {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates `prp_bench_<what>_<pid>` on the server of `admin` (a URL whose user may create
    /// databases, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
    pub(crate) fn create(
        rt: &tokio::runtime::Runtime,
        admin: &str,
        what: &str,
    ) -> anyhow::Result<Self> {
        let name = format!("prp_bench_{what}_{}", std::process::id());
        sqlx::any::install_default_drivers();
        rt.block_on(async {
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
            anyhow::Ok(())
        })?;
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        let url = format!("{base}/{name}");
        Ok(Self {
            admin: admin.to_owned(),
            name,
            url,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database, closing what is still connected to it.
    pub(crate) fn remove(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        rt.block_on(async {
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.admin).await?;
            sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await?;
            anyhow::Ok(())
        })
    }
}
