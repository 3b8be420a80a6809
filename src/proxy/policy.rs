//! The operator's action policy: modules allowed or denied, and read-only
//! mode. Like the session guards it looks at every value `action` was
//! given, so a repeated parameter cannot smuggle a denied module past it.

use crate::config::PolicySettings;
use crate::mediawiki::params::Params;

/// Core modules that write (`ApiBase::isWriteMode`). Read-only mode also
/// sends `Promise-Non-Write-API-Action: true`, so MediaWiki itself refuses
/// any write module, extensions' included; this list only refuses early.
const WRITE_MODULES: &[&str] = &[
    "block",
    "changecontentmodel",
    "changeauthenticationdata",
    "clearhasmsg",
    "createaccount",
    "delete",
    "edit",
    "emailuser",
    "filerevert",
    "import",
    "linkaccount",
    "managetags",
    "mergehistory",
    "move",
    "options",
    "patrol",
    "protect",
    "purge",
    "removeauthenticationdata",
    "resetpassword",
    "revisiondelete",
    "rollback",
    "setnotificationtimestamp",
    "setpagelanguage",
    "stashedit",
    "tag",
    "unblock",
    "undelete",
    "unlinkaccount",
    "upload",
    "userrights",
    "watch",
];

/// Whether the request runs a write module.
pub(super) fn is_write(params: &Params) -> bool {
    params
        .every("action")
        .any(|action| WRITE_MODULES.contains(&action))
}

/// The request header with which MediaWiki refuses every write module.
pub(super) const PROMISE_NON_WRITE: &str = "promise-non-write-api-action";

/// The module refused and the setting that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Denied {
    pub(super) action: String,
    pub(super) because: &'static str,
}

pub(super) fn check(policy: &PolicySettings, params: &Params) -> Option<Denied> {
    // `action` absent means `help`, which must then be allowed too.
    let mut actions: Vec<&str> = params.every("action").collect();
    if actions.is_empty() {
        actions.push(params.action());
    }
    let denied = |action: &str, because| {
        Some(Denied {
            action: action.to_owned(),
            because,
        })
    };
    for action in actions {
        if policy.deny_actions.iter().any(|denied| denied == action) {
            return denied(action, "policy.deny_actions");
        }
        if !policy.allow_actions.is_empty()
            && !policy.allow_actions.iter().any(|allowed| allowed == action)
        {
            return denied(action, "policy.allow_actions");
        }
        if policy.read_only && WRITE_MODULES.contains(&action) {
            return denied(action, "policy.read_only");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(read_only: bool, allow: &[&str], deny: &[&str]) -> PolicySettings {
        PolicySettings {
            read_only,
            allow_actions: allow.iter().map(|s| s.to_string()).collect(),
            deny_actions: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn check_query(policy: &PolicySettings, query: &str) -> Option<&'static str> {
        check(policy, &Params::from_query(Some(query))).map(|denied| denied.because)
    }

    #[test]
    fn read_only_refuses_writes_however_they_are_spelled() {
        let read_only = policy(true, &[], &[]);
        assert_eq!(check_query(&read_only, "action=query&meta=userinfo"), None);
        for query in [
            "action=edit",
            "action=query&action=edit",
            "action=edit&action=query",
            "%61ction=edit",
            "action=upload",
        ] {
            assert_eq!(
                check_query(&read_only, query),
                Some("policy.read_only"),
                "{query}"
            );
        }
    }

    #[test]
    fn allow_and_deny_lists() {
        let only_reads = policy(false, &["query", "parse"], &[]);
        assert_eq!(check_query(&only_reads, "action=parse"), None);
        assert_eq!(
            check_query(&only_reads, "action=edit"),
            Some("policy.allow_actions")
        );
        assert_eq!(
            check_query(&only_reads, ""),
            Some("policy.allow_actions"),
            "help"
        );
        assert_eq!(
            check_query(&only_reads, "action=query&action=delete"),
            Some("policy.allow_actions")
        );
        let no_delete = policy(false, &[], &["delete"]);
        assert_eq!(check_query(&no_delete, "action=edit"), None);
        assert_eq!(
            check_query(&no_delete, "action=delete"),
            Some("policy.deny_actions")
        );
        assert_eq!(
            check_query(&no_delete, "Action=delete"),
            None,
            "names are case-sensitive: MediaWiki runs help"
        );
    }
}
