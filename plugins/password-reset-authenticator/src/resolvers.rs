//! The two resolvers this plugin provides: the central account (`Person.CentralAccount`), which
//! always works, and the `SearchTable` resolver for target-system accounts.

use crate::params::{parse_column_list, Param, Params};
use prp_plugin_api::abi_stable::std_types::{ROption, RResult, RString, RVec};
use prp_plugin_api::{AccountQuery, HostServicesBox, PluginError, ResolvedAccount, ResolverImpl};

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
}

pub struct SearchTableResolver {
    pub host: HostServicesBox,
}

impl ResolverImpl for SearchTableResolver {
    fn id(&self) -> String {
        "search-table".to_owned()
    }

    fn resolve(&self, login_name: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
        let params = Params::new(&self.host);
        let Some(table) = params.get(Param::SearchTable)? else {
            return Ok(Vec::new());
        };
        let list = |p: Param| -> Result<RVec<RString>, PluginError> {
            match params.get(p)? {
                None => Ok(RVec::new()),
                Some(v) => parse_column_list(&v)
                    .map(|cols| cols.into_iter().map(RString::from).collect())
                    .map_err(|e| PluginError::config(format!("{}: {e}", p.path()))),
            }
        };
        let query = AccountQuery {
            table: RString::from(table.trim()),
            columns: list(Param::SearchColumn)?,
            disabled_by: list(Param::DisabledBy)?,
            enabled_by: list(Param::EnabledBy)?,
            login_name: RString::from(login_name),
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
}
