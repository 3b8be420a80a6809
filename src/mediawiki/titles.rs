//! Page titles as `index.php` reads them, and the special pages that would
//! end or replace the proxy's session if a client reached them. Special
//! pages have localised names and aliases, matched without regard to case
//! (`Spezial:Abmelden` is `Special:UserLogout` on a German wiki), so the
//! names come from the wiki itself (`meta=siteinfo`), not from a list kept
//! here.

use std::collections::HashMap;

use serde::Deserialize;

/// Special pages (by their canonical names) that log out, log in, create
/// accounts or change the credentials the proxy logs in with.
pub const SESSION_SPECIAL_PAGES: &[&str] = &[
    "Userlogout",
    "Userlogin",
    "CreateAccount",
    "ChangeCredentials",
    "RemoveCredentials",
    "LinkAccounts",
    "UnlinkAccounts",
    "ChangePassword",
    "PasswordReset",
    "ChangeEmail",
    "ResetTokens",
    "BotPasswords",
    "OATHManage",
    "OATH",
    "OAuthManageMyGrants",
];

/// The `siprop` values [`SpecialPages::from_siteinfo`] reads.
pub const SITEINFO_QUERY: &str = "action=query&meta=siteinfo&siprop=namespaces%7Cnamespacealiases%7Cspecialpagealiases&format=json&formatversion=2";

/// The special namespace's names and the refused pages' aliases on one
/// wiki, case-folded.
#[derive(Debug, Clone, Default)]
pub struct SpecialPages {
    namespace_names: Vec<String>,
    /// Folded alias → canonical name.
    refused: HashMap<String, &'static str>,
}

#[derive(Debug, Deserialize)]
struct Siteinfo {
    query: SiteinfoQuery,
}

#[derive(Debug, Deserialize)]
struct SiteinfoQuery {
    namespaces: HashMap<String, Namespace>,
    #[serde(default)]
    namespacealiases: Vec<NamespaceAlias>,
    #[serde(default)]
    specialpagealiases: Vec<SpecialPageAliases>,
}

#[derive(Debug, Deserialize)]
struct Namespace {
    id: i64,
    name: String,
    canonical: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamespaceAlias {
    id: i64,
    alias: String,
}

#[derive(Debug, Deserialize)]
struct SpecialPageAliases {
    realname: String,
    aliases: Vec<String>,
}

const SPECIAL_NAMESPACE: i64 = -1;

impl SpecialPages {
    /// Reads a `formatversion=2` answer to [`SITEINFO_QUERY`].
    pub fn from_siteinfo(body: &[u8]) -> Result<Self, serde_json::Error> {
        let siteinfo: Siteinfo = serde_json::from_slice(body)?;
        let query = siteinfo.query;
        let mut namespace_names: Vec<String> = query
            .namespaces
            .into_values()
            .filter(|namespace| namespace.id == SPECIAL_NAMESPACE)
            .flat_map(|namespace| [Some(namespace.name), namespace.canonical])
            .flatten()
            .chain(
                query
                    .namespacealiases
                    .into_iter()
                    .filter(|alias| alias.id == SPECIAL_NAMESPACE)
                    .map(|alias| alias.alias),
            )
            .map(|name| fold(&name))
            .collect();
        namespace_names.sort();
        namespace_names.dedup();
        let mut refused = HashMap::new();
        for page in query.specialpagealiases {
            let Some(canonical) = SESSION_SPECIAL_PAGES
                .iter()
                .find(|refused| refused.eq_ignore_ascii_case(&page.realname))
            else {
                continue;
            };
            for alias in page.aliases.iter().chain([&page.realname]) {
                refused.insert(fold(alias), *canonical);
            }
        }
        Ok(Self {
            namespace_names,
            refused,
        })
    }

    /// The canonical name of the refused special page `title` names, if it
    /// names one.
    pub fn refused(&self, title: &str) -> Option<&'static str> {
        let key = db_key(title);
        let (namespace, page) = split_namespace(&key)?;
        // The canonical names work on every wiki, whatever its language.
        let namespace = fold(namespace);
        if namespace != "special" && !self.namespace_names.contains(&namespace) {
            return None;
        }
        // `Special:UserLogout/returnto` is still the logout page.
        let page = fold(page.split('/').next().unwrap_or(page));
        self.refused.get(&page).copied().or_else(|| {
            SESSION_SPECIAL_PAGES
                .iter()
                .find(|canonical| fold(canonical) == page)
                .copied()
        })
    }
}

/// MediaWiki's form of a title: bidi marks dropped, runs of spaces and
/// underscores (Unicode spaces too) made one `_`, trimmed, a leading `:`
/// (the main namespace's marker) dropped.
fn db_key(title: &str) -> String {
    const DROPPED: [char; 7] = [
        '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
    ];
    let mut key = String::with_capacity(title.len());
    let mut in_space = false;
    for c in title.chars().filter(|c| !DROPPED.contains(c)) {
        if c == '_' || c.is_whitespace() || c == '\u{A0}' {
            in_space = true;
            continue;
        }
        if in_space && !key.is_empty() {
            key.push('_');
        }
        in_space = false;
        key.push(c);
    }
    let key = key.strip_prefix(':').unwrap_or(&key);
    key.trim_matches('_').to_owned()
}

/// `Special:Foo` into `Special` and `Foo`, spaces around the colon
/// allowed.
fn split_namespace(key: &str) -> Option<(&str, &str)> {
    let (namespace, page) = key.split_once(':')?;
    Some((
        namespace.trim_end_matches('_'),
        page.trim_start_matches('_'),
    ))
}

/// Case-folded with `_` for spaces, as MediaWiki compares special page
/// names and namespace names.
fn fold(name: &str) -> String {
    name.replace(' ', "_").to_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Trimmed from a real MediaWiki 1.39's answer, with a German alias
    /// added as a localised wiki would list it.
    const SITEINFO: &str = r#"{"batchcomplete":true,"query":{
        "namespaces":{
            "-2":{"id":-2,"case":"first-letter","name":"Media","subpages":false,"canonical":"Media","content":false,"nonincludable":false},
            "-1":{"id":-1,"case":"first-letter","name":"Spezial","subpages":false,"canonical":"Special","content":false,"nonincludable":false},
            "0":{"id":0,"case":"first-letter","name":"","subpages":false,"content":true,"nonincludable":false}},
        "namespacealiases":[{"id":4,"alias":"WP"}],
        "specialpagealiases":[
            {"realname":"Userlogout","aliases":["UserLogout","Abmelden"]},
            {"realname":"ChangePassword","aliases":["ChangePassword","ResetPass","ResetPassword"]},
            {"realname":"Recentchanges","aliases":["RecentChanges"]}]}}"#;

    fn pages() -> SpecialPages {
        SpecialPages::from_siteinfo(SITEINFO.as_bytes()).unwrap()
    }

    #[test]
    fn session_pages_are_found_however_they_are_written() {
        let pages = pages();
        for title in [
            "Special:UserLogout",
            "special:userlogout",
            "Special:Userlogout/returnto",
            "Special_:_UserLogout",
            " Special : User_Logout "
                .replace("User_Logout", "UserLogout")
                .as_str(),
            ":Special:UserLogout",
            "Spezial:Abmelden",
            "SPEZIAL:abmelden",
            "Special:Abmelden",
            "Special:\u{200E}UserLogout",
            "Special:ResetPass",
        ] {
            assert!(pages.refused(title).is_some(), "{title:?} passed");
        }
        assert_eq!(pages.refused("Special:UserLogout"), Some("Userlogout"));
        assert_eq!(
            pages.refused("Special:ResetPassword"),
            Some("ChangePassword")
        );
    }

    #[test]
    fn canonical_names_are_refused_even_unlisted() {
        assert_eq!(
            pages().refused("Special:BotPasswords"),
            Some("BotPasswords")
        );
        assert_eq!(
            SpecialPages::default().refused("Special:UserLogin"),
            Some("Userlogin")
        );
    }

    #[test]
    fn other_pages_pass() {
        let pages = pages();
        for title in [
            "Main Page",
            "UserLogout",
            "Talk:Special:UserLogout",
            "Special:RecentChanges",
            "Special:UserLogoutX",
            "User:Special:UserLogout",
        ] {
            assert_eq!(pages.refused(title), None, "{title:?} refused");
        }
    }
}
