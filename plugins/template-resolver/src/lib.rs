//! A file-backed target-system resolver: the template of docs/writing-a-resolver.md. Copy this
//! crate to start your own; it depends on `prp-plugin-api` alone.
//!
//! Its one setting, `Plugins:Settings:template-resolver:AccountsFile` (required), names the
//! accounts file, relative to the configuration file's folder. The file has one account per
//! line, `login_name:person_uid:phc` (`#` starts a comment line): `phc` is the argon2id hash of
//! the account's password, which this resolver verifies and sets itself (hashing through the
//! host), or empty when the portal keeps the account's password. A login name starting with
//! `!` is a disabled account: it is found, and refused.

use prp_plugin_api::{
    CheckFinding, HostServicesBox, PluginError, ResolvedAccount, ResolverImpl, SecretCheck,
    Settings,
};
use std::path::PathBuf;

pub const NAME: &str = "template-resolver";
/// The system the accounts live in, as the portal shows and stores them.
const SOURCE: &str = "TemplateAccounts";

/// One account of the file: (disabled, login name, person, phc).
type Line = (bool, String, String, String);

pub struct FileResolver {
    host: HostServicesBox,
    file: PathBuf,
}

impl FileResolver {
    /// Reads the settings; an error rejects the plugin, naming the setting.
    pub fn new(host: HostServicesBox) -> Result<Self, PluginError> {
        let file = Settings::new(&host, NAME).required_path("AccountsFile")?;
        Ok(Self { host, file })
    }

    fn io(&self, e: std::io::Error) -> PluginError {
        PluginError::unavailable(format!("{}: {e}", self.file.display()))
    }

    /// The accounts, read again on every call, so that edits apply at once.
    fn read(&self) -> Result<Vec<Line>, PluginError> {
        let text = std::fs::read_to_string(&self.file).map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        for (n, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let [login, person, phc] = line.splitn(3, ':').collect::<Vec<_>>()[..] else {
                let (at, what) = (self.file.display(), "not login_name:person_uid:phc");
                return Err(PluginError::config(format!("{at}:{}: {what}", n + 1)));
            };
            let name = login.trim_start_matches('!');
            out.push((name != login, name.into(), person.into(), phc.into()));
        }
        Ok(out)
    }

    fn account((disabled, login, person, _): Line) -> ResolvedAccount {
        let account = ResolvedAccount::new(person, SOURCE, Some(&login), "login name");
        match disabled {
            true => account.refused_by("disabled in the accounts file"),
            false => account,
        }
    }

    /// The account's line, if the file keeps its password.
    fn line_of(&self, account: &ResolvedAccount) -> Result<Option<Line>, PluginError> {
        let key = account.account_key();
        let line = self.read()?.into_iter().find(|l| Some(&*l.1) == key);
        Ok(line.filter(|l| !l.3.is_empty()))
    }
}

impl ResolverImpl for FileResolver {
    fn id(&self) -> String {
        "template".into()
    }

    fn resolve(&self, login_name: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
        let lines = self.read()?.into_iter();
        let found = lines.filter(|l| l.1.eq_ignore_ascii_case(login_name));
        Ok(found.map(Self::account).collect())
    }

    fn accounts_of(&self, person_uid: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
        let theirs = self.read()?.into_iter().filter(|l| l.2 == person_uid);
        Ok(theirs.map(Self::account).collect())
    }

    // `login_names_of` keeps its default (none): here an account's key is its login name, and
    // the host already keeps every listed account's key out of the person's new passwords.

    fn verify_password(&self, a: &ResolvedAccount, pw: &str) -> Result<SecretCheck, PluginError> {
        let Some((_, _, _, phc)) = self.line_of(a)? else {
            return Ok(SecretCheck::UNSUPPORTED);
        };
        let right = self.host.verify_hash(phc.as_str().into(), pw.into());
        Ok(SecretCheck::matched(right.into_result()?))
    }

    fn set_password(&self, a: &ResolvedAccount, pw: &str) -> Result<SecretCheck, PluginError> {
        let Some((_, login, _, old)) = self.line_of(a)? else {
            return Ok(SecretCheck::UNSUPPORTED);
        };
        let new = self.host.hash_secret(pw.into()).into_result()?;
        let text = std::fs::read_to_string(&self.file).map_err(|e| self.io(e))?;
        let mine = |l: &str| l.trim().trim_start_matches('!').split(':').next() == Some(&login);
        // The new hash in the account's own line only (replacing 0 times leaves a line as is).
        let swap = |l: &str| l.replacen(&old, &new, usize::from(mine(l)));
        let lines: Vec<_> = text.lines().map(swap).collect();
        // Written beside, then renamed over the file: readers see the old or the new, whole.
        let next = self.file.with_extension("new");
        std::fs::write(&next, lines.join("\n") + "\n")
            .and_then(|()| std::fs::rename(&next, &self.file))
            .map_err(|e| self.io(e))?;
        Ok(SecretCheck::OK)
    }

    fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError> {
        let subject = format!("Plugins:Settings:{NAME}:AccountsFile");
        let file = self.file.display();
        Ok(vec![match self.read() {
            Ok(lines) => CheckFinding::info(subject, format!("{} accounts in {file}", lines.len())),
            Err(e) => CheckFinding::error(subject, e.message.as_str()),
        }])
    }
}

prp_plugin_api::export_resolver! {
    name: NAME,
    version: env!("CARGO_PKG_VERSION"),
    description: "File-backed accounts (the resolver template)",
    resolver: FileResolver::new,
}
