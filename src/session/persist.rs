//! The session kept across restarts (`session.state_file`): written after
//! each login and renewal, atomically and readable by the owner only, and
//! read at start. A file that is corrupt, for another wiki or user, or
//! stale is ignored with a log line, and replaced at the next login.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::jar::{CookieJar, SavedCookie};
use super::{SessionManager, SessionStatus};

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// The session belongs to this wiki and login name only.
    api_url: String,
    username: String,
    user: String,
    wiki_login_time: u64,
    cookies: Vec<SavedCookie>,
}

/// A session read back from the state file, still to be confirmed.
#[derive(Debug)]
pub struct Saved {
    pub user: String,
    pub wiki_login_time: u64,
    pub jar: CookieJar,
}

/// Where the state lives and whose it is.
#[derive(Debug, Clone)]
pub struct StateFileSettings {
    pub path: PathBuf,
    pub api_url: String,
    pub username: String,
}

pub fn load(settings: &StateFileSettings) -> Option<Saved> {
    let path = &settings.path;
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot read the session state file; logging in");
            return None;
        }
    };
    let state: StateFile = match serde_json::from_str(&text) {
        Ok(state) => state,
        Err(_) => {
            tracing::warn!(path = %path.display(), "the session state file is corrupt; ignoring it");
            return None;
        }
    };
    if state.version != FORMAT_VERSION
        || state.api_url != settings.api_url
        || state.username != settings.username
    {
        tracing::warn!(path = %path.display(), "the session state file is for another wiki or login; ignoring it");
        return None;
    }
    let jar = CookieJar::from_saved(state.cookies, Instant::now(), SystemTime::now());
    if !jar.has_session_cookie() {
        tracing::info!(path = %path.display(), "the saved session has expired; logging in");
        return None;
    }
    Some(Saved {
        user: state.user,
        wiki_login_time: state.wiki_login_time,
        jar,
    })
}

/// Writes the file under a temporary name in the same directory, then
/// renames it: a crash leaves the old file or the new one, never half.
fn save(settings: &StateFileSettings, state: &StateFile) -> std::io::Result<()> {
    let path = &settings.path;
    let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let temporary = temporary_name(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    // The mode applies only to a new file; make sure of it anyway.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(&json)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Saves the session whenever a new one is established or its cookies
/// change; ends with the manager.
pub async fn keep_saved(manager: Weak<SessionManager>, settings: StateFileSettings) {
    let Some(mut status) = manager.upgrade().map(|manager| manager.status.subscribe()) else {
        return;
    };
    let mut last_saved: Option<(u64, Option<http::HeaderValue>)> = None;
    loop {
        let snapshot = match &*status.borrow_and_update() {
            SessionStatus::Ready(session) => Some(session.clone()),
            _ => None,
        };
        if let Some(session) = snapshot {
            let current = (session.generation, session.cookie_header.clone());
            if last_saved.as_ref() != Some(&current) {
                let state = StateFile {
                    version: FORMAT_VERSION,
                    api_url: settings.api_url.clone(),
                    username: settings.username.clone(),
                    user: session.user.clone(),
                    wiki_login_time: session.wiki_login_time,
                    cookies: session.jar.to_saved(Instant::now(), SystemTime::now()),
                };
                let target = settings.clone();
                let written = tokio::task::spawn_blocking(move || save(&target, &state)).await;
                match written {
                    Ok(Ok(())) => last_saved = Some(current),
                    Ok(Err(err)) => {
                        tracing::warn!(path = %settings.path.display(), error = %err, "cannot save the session state");
                    }
                    Err(_) => return,
                }
            }
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(dir: &Path) -> StateFileSettings {
        StateFileSettings {
            path: dir.join("session.json"),
            api_url: "https://wiki.example.org/w/api.php".into(),
            username: "Bot@app".into(),
        }
    }

    fn state(cookies: Vec<SavedCookie>) -> StateFile {
        StateFile {
            version: FORMAT_VERSION,
            api_url: "https://wiki.example.org/w/api.php".into(),
            username: "Bot@app".into(),
            user: "Bot".into(),
            wiki_login_time: 1_700_000_000,
            cookies,
        }
    }

    fn session_cookie(expires_unix: Option<u64>) -> SavedCookie {
        SavedCookie {
            name: "w_BPsession".into(),
            value: "abc".into(),
            expires_unix,
        }
    }

    #[test]
    fn saved_atomically_for_the_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        save(&settings, &state(vec![session_cookie(None)])).unwrap();
        let mode = fs::metadata(&settings.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!temporary_name(&settings.path).exists());
        let saved = load(&settings).unwrap();
        assert_eq!(saved.user, "Bot");
        assert_eq!(saved.wiki_login_time, 1_700_000_000);
        assert_eq!(
            saved.jar.header().unwrap().to_str().unwrap(),
            "w_BPsession=abc"
        );
    }

    #[test]
    fn corrupt_foreign_and_stale_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        fs::write(&settings.path, "{not json").unwrap();
        assert!(load(&settings).is_none());

        save(&settings, &state(vec![session_cookie(None)])).unwrap();
        let other_wiki = StateFileSettings {
            api_url: "https://other.example.org/w/api.php".into(),
            ..settings.clone()
        };
        assert!(load(&other_wiki).is_none());
        let other_login = StateFileSettings {
            username: "Other@app".into(),
            ..settings.clone()
        };
        assert!(load(&other_login).is_none());

        save(&settings, &state(vec![session_cookie(Some(1_000))])).unwrap();
        assert!(
            load(&settings).is_none(),
            "the session cookie expired in 1970"
        );
        assert!(
            load(&StateFileSettings {
                path: dir.path().join("missing.json"),
                ..settings
            })
            .is_none()
        );
    }
}
