//! The two resolvers this plugin provides: the central account (`Person.CentralAccount`), which
//! always works, and the `SearchTable` resolver for target-system accounts, which also tells
//! the host a person's login names there (for the `RejectNames` password rule).

use crate::params::{parse_column_list, Param, Params};
use prp_plugin_api::abi_stable::std_types::{ROption, RResult, RString, RVec};
use prp_plugin_api::{
    AccountQuery, HostServicesBox, PasswordRoles, PluginError, ResolvedAccount, ResolverImpl,
};

fn ok<T>(r: RResult<T, PluginError>) -> Result<T, PluginError> {
    r.into_result()
}

pub struct CentralAccountResolver {
    pub host: HostServicesBox,
}

impl ResolverImpl for CentralAccountResolver {
    fn id(&self) -> String {
        "central-account".to_owned()
    }

    fn resolve(&self, login_name: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
        let persons = ok(self.host.persons_by_central_account(login_name.into()))?;
        Ok(persons
            .into_iter()
            .map(|p| ResolvedAccount {
                person_uid: p.uid,
                source: RString::from("Person"),
                account_uid: ROption::RNone,
                matched_by: RString::from("CentralAccount"),
                refused_by: if p.inactive {
                    ROption::RSome(RString::from("person is inactive (IsInActive)"))
                } else {
                    ROption::RNone
                },
                resolver: RString::new(),
            })
            .collect())
    }

    /// The central account's password is the hash the portal stores.
    fn password_roles(&self) -> PasswordRoles {
        PasswordRoles::NONE
    }
}

pub struct SearchTableResolver {
    pub host: HostServicesBox,
}

impl SearchTableResolver {
    /// The search of `login_name` the parameters describe, `None` when `SearchTable` is not
    /// set (then this resolver finds nothing). A column list that doesn't parse is an error
    /// naming its parameter.
    fn query(&self, login_name: &str) -> Result<Option<AccountQuery>, PluginError> {
        let params = Params::new(&self.host);
        let Some(table) = params.get(Param::SearchTable)? else {
            return Ok(None);
        };
        let list = |p: Param| -> Result<RVec<RString>, PluginError> {
            match params.get(p)? {
                None => Ok(RVec::new()),
                Some(v) => parse_column_list(&v)
                    .map(|cols| cols.into_iter().map(RString::from).collect())
                    .map_err(|e| PluginError::config(format!("{}: {e}", p.path()))),
            }
        };
        Ok(Some(AccountQuery {
            table: RString::from(table.trim()),
            columns: list(Param::SearchColumn)?,
            disabled_by: list(Param::DisabledBy)?,
            enabled_by: list(Param::EnabledBy)?,
            login_name: RString::from(login_name),
        }))
    }
}

impl ResolverImpl for SearchTableResolver {
    fn id(&self) -> String {
        "search-table".to_owned()
    }

    fn resolve(&self, login_name: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
        let Some(query) = self.query(login_name)? else {
            return Ok(Vec::new());
        };
        let matches = ok(self.host.search_accounts(&query))?;
        let mut out = Vec::with_capacity(matches.len());
        for m in matches {
            let mut refused_by = m.refused_by.into_option();
            let person_uid = match m.person_uid.into_option() {
                None => {
                    refused_by = refused_by.or_else(|| {
                        Some("account is assigned to no person (UID_Person is empty)".into())
                    });
                    RString::new()
                }
                Some(uid) => {
                    match ok(self.host.person(uid.as_str().into()))?.into_option() {
                        None => {
                            refused_by = refused_by.or_else(|| {
                                Some(format!("UID_Person {uid} names no person").into())
                            });
                        }
                        Some(p) if p.inactive => {
                            refused_by = refused_by
                                .or_else(|| Some("person is inactive (IsInActive)".into()));
                        }
                        Some(_) => {}
                    }
                    uid
                }
            };
            out.push(ResolvedAccount {
                person_uid,
                source: m.table,
                account_uid: ROption::RSome(m.account_uid),
                matched_by: m.matched_column,
                refused_by: refused_by.into(),
                resolver: RString::new(),
            });
        }
        Ok(out)
    }

    /// The person's names in `SearchTable`: the values of the `SearchColumn` columns in the
    /// person's rows (refused accounts' too: a name stays the person's). Under the same
    /// schema checks as a login's search, so a misconfiguration fails here as it does there.
    fn login_names_of(&self, person_uid: &str) -> Result<Vec<String>, PluginError> {
        let Some(query) = self.query("")? else {
            return Ok(Vec::new());
        };
        let names = ok(self.host.account_login_names(&query, person_uid.into()))?;
        Ok(names.into_iter().map(RString::into_string).collect())
    }

    /// Target-system accounts' passwords are hashes the portal stores.
    fn password_roles(&self) -> PasswordRoles {
        PasswordRoles::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prp_plugin_api::testing::FakeHost;
    use prp_plugin_api::{AccountMatch, ErrorKind};

    fn account(uid: &str, person: &str, column: &str) -> AccountMatch {
        AccountMatch {
            table: "ADSAccount".into(),
            account_uid: uid.into(),
            person_uid: ROption::RSome(person.into()),
            matched_column: column.into(),
            refused_by: ROption::RNone,
        }
    }

    #[test]
    fn the_search_table_resolver_names_the_persons_login_names_in_its_columns() {
        let fake = FakeHost::new(crate::PLUGIN_NAME);
        fake.add_account("cexample", account("A-1", "P-1", "SamAccountName"))
            .add_account("Carol Example", account("A-1", "P-1", "CN"))
            .add_account("dexample", account("A-2", "P-2", "SamAccountName"));
        let r = SearchTableResolver {
            host: fake.services(),
        };
        // No SearchTable: no names (and no error).
        assert!(r.login_names_of("P-1").expect("names").is_empty());

        fake.set_parameter(&Param::SearchTable.path(), "ADSAccount")
            .set_parameter(&Param::SearchColumn.path(), "SamAccountName");
        assert_eq!(r.login_names_of("P-1").expect("names"), vec!["cexample"]);
        fake.set_parameter(&Param::SearchColumn.path(), "CN|SamAccountName");
        let mut names = r.login_names_of("P-1").expect("names");
        names.sort();
        assert_eq!(names, vec!["Carol Example", "cexample"]);
        assert!(r.login_names_of("P-3").expect("names").is_empty());

        // A column list that doesn't parse is an error naming the parameter, not "no names".
        fake.set_parameter(&Param::SearchColumn.path(), "CN; DROP TABLE Person");
        let e = r.login_names_of("P-1").expect_err("bad list");
        assert_eq!(e.kind, ErrorKind::CONFIG);
        assert!(e.message.contains("SearchColumn"), "{e:?}");
    }
}
