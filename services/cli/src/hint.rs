//! Why a list is empty (issue 17 item 2): the platform admin's token acts in
//! the `system` account, so the operators' clusters are not in its lists.
//! [`empty_list_hint`] asks `system_whoami` and, for the admin, says which
//! other accounts hold objects of the kind and how to see them.

use powernode_actions::accounts::{AccountSummary, WhoamiAnswer, WhoamiArgs};
use powernode_client::Api;

/// A hint for a list of `what` (`clusters`, `instances`, or another plural
/// noun) that came back empty: `Some` when the token is the admin's
/// (account `system`) and other accounts hold such objects. `None` when
/// there is nothing to say or `system_whoami` fails (a hint is never an
/// error).
pub async fn empty_list_hint(api: &Api, what: &str) -> Option<String> {
    let who: WhoamiAnswer = api.call_json("system_whoami", &WhoamiArgs {}).await.ok()?;
    hint_for(&who, what)
}

/// The words of [`empty_list_hint`] for the answer `who`.
pub fn hint_for(who: &WhoamiAnswer, what: &str) -> Option<String> {
    if who.account_id != "system" && !who.admin {
        return None;
    }
    let count = |a: &AccountSummary| match what {
        "clusters" | "cluster" => a.clusters,
        "instances" | "instance" | "nodes" => a.instances,
        _ => a.clusters + a.instances,
    };
    let holding: Vec<(&AccountSummary, usize)> = who
        .other_accounts
        .iter()
        .filter(|a| a.id != who.account_id)
        .map(|a| (a, count(a)))
        .filter(|(_, n)| *n > 0)
        .collect();
    if holding.is_empty() {
        return None;
    }
    let noun = match what {
        "clusters" | "cluster" => ("cluster", "clusters"),
        "instances" | "instance" | "nodes" => ("instance", "instances"),
        _ => ("object", "objects"),
    };
    let plural = |n: usize| if n == 1 { noun.0 } else { noun.1 };
    let shown: Vec<String> = holding
        .iter()
        .take(5)
        .map(|(a, n)| match &a.name {
            Some(name) => format!("{} `{}`: {n} {}", a.id, name, plural(*n)),
            None => format!("{}: {n} {}", a.id, plural(*n)),
        })
        .collect();
    let more = if holding.len() > 5 {
        format!(", and {} more", holding.len() - 5)
    } else {
        String::new()
    };
    let accounts = if holding.len() == 1 {
        "other account holds"
    } else {
        "other accounts hold"
    };
    Some(format!(
        "No {} in account `{}` (this token's). {} {accounts} {} ({}{more}); each \
         account's objects are seen with its operator token: `powernode context add NAME --url \
         URL --token-file OPERATOR_TOKEN_FILE`, then `powernode --context NAME {what} list`.",
        noun.1,
        who.account_id,
        holding.len(),
        noun.1,
        shown.join("; "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(account: &str, admin: bool, others: Vec<AccountSummary>) -> WhoamiAnswer {
        WhoamiAnswer {
            account_id: account.into(),
            account_name: None,
            token_id: "tok-1".into(),
            permissions: vec![],
            admin,
            other_accounts: others,
        }
    }

    fn acct(id: &str, name: Option<&str>, clusters: usize, instances: usize) -> AccountSummary {
        AccountSummary {
            id: id.into(),
            name: name.map(String::from),
            clusters,
            instances,
        }
    }

    #[test]
    fn the_admin_hears_which_accounts_hold_clusters() {
        let w = who(
            "system",
            true,
            vec![
                acct("acct-1", Some("ops"), 2, 3),
                acct("acct-2", None, 1, 0),
                acct("acct-3", None, 0, 4),
            ],
        );
        let h = hint_for(&w, "clusters").unwrap();
        assert!(h.starts_with("No clusters in account `system` (this token's). 2 other accounts hold clusters (acct-1 `ops`: 2 clusters; acct-2: 1 cluster)"), "{h}");
        assert!(h.contains("powernode context add"), "{h}");
        let h = hint_for(&w, "instances").unwrap();
        assert!(
            h.contains(
                "2 other accounts hold instances (acct-1 `ops`: 3 instances; acct-3: 4 instances)"
            ),
            "{h}"
        );
    }

    #[test]
    fn one_account_reads_singular() {
        let w = who("system", true, vec![acct("acct-9", None, 1, 1)]);
        let h = hint_for(&w, "clusters").unwrap();
        assert!(
            h.contains("1 other account holds clusters (acct-9: 1 cluster)"),
            "{h}"
        );
    }

    #[test]
    fn nothing_to_say() {
        assert_eq!(hint_for(&who("system", true, vec![]), "clusters"), None);
        let empty = who("system", true, vec![acct("acct-1", None, 0, 2)]);
        assert_eq!(hint_for(&empty, "clusters"), None);
        let operator = who("acct-1", false, vec![acct("acct-2", None, 5, 5)]);
        assert_eq!(hint_for(&operator, "clusters"), None);
    }
}
