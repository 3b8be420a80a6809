//! Logging in to the main account with `action=clientlogin`, answering a
//! TOTP second-factor prompt (OATHAuth) when a secret is configured. Main-
//! account sessions also work in index.php, which bot passwords do not.

use std::time::{SystemTime, UNIX_EPOCH};

use super::jar::CookieJar;
use super::login::{Established, LoginError, WikiLogin};
use crate::mediawiki::answers::{self, ClientLoginAnswer};
use crate::secret::Secret;

impl WikiLogin {
    pub(super) async fn client_login(&self) -> Result<Established, LoginError> {
        let credentials = self.credentials();
        let mut jar = CookieJar::default();
        let token = self.login_token(&mut jar).await?;
        let (mut answer, mut wiki_time) = self
            .client_login_step(
                &mut jar,
                &[
                    ("username", &credentials.username),
                    ("password", credentials.password.expose()),
                    // Required, never followed: there is no browser here.
                    ("loginreturnurl", self.api_url.as_str()),
                    ("logintoken", &token),
                ],
            )
            .await?;
        if let ClientLoginAnswer::Ui { totp: true, .. } = answer {
            let Some(secret) = &credentials.totp_secret else {
                return Err(LoginError::Rejected(
                    "the account asks for a two-factor code; set login.totp_secret_file".into(),
                ));
            };
            let code = self.fresh_totp_code(secret).await?;
            (answer, wiki_time) = self
                .client_login_step(
                    &mut jar,
                    &[
                        ("logincontinue", "1"),
                        ("OATHToken", code.expose()),
                        ("logintoken", &token),
                    ],
                )
                .await?;
        }
        match answer {
            ClientLoginAnswer::Pass { user } => {
                self.confirm(&mut jar, &user).await?;
                Ok(Established {
                    user,
                    jar,
                    wiki_time,
                    authorization: None,
                })
            }
            ClientLoginAnswer::Fail { code, message } if code.contains("throttled") => {
                Err(LoginError::Throttled {
                    wait: answers::throttle_wait(&message)
                        .unwrap_or(std::time::Duration::from_secs(300)),
                    reason: message,
                })
            }
            ClientLoginAnswer::Fail { code, message } => {
                Err(LoginError::Rejected(format!("{message} ({code})")))
            }
            ClientLoginAnswer::Ui { code, message, totp } => Err(LoginError::Rejected(if totp {
                format!("the two-factor code was refused: {message} ({code}); check login.totp_secret_file")
            } else {
                format!("the wiki asks for input the proxy cannot give: {message} ({code})")
            })),
            ClientLoginAnswer::Redirect => Err(LoginError::Rejected(
                "the wiki wants a browser redirect (a third-party login): use a bot password or OAuth 2".into(),
            )),
            ClientLoginAnswer::Restart { message } => Err(LoginError::Rejected(format!(
                "the wiki asks to link or create an account: {message}"
            ))),
        }
    }

    async fn client_login_step(
        &self,
        jar: &mut CookieJar,
        fields: &[(&str, &str)],
    ) -> Result<(ClientLoginAnswer, Option<SystemTime>), LoginError> {
        let step = "clientlogin";
        let (body, wiki_time) = self.post(step, jar, fields).await?;
        let answer = answers::client_login_answer(&body)
            .map_err(|source| LoginError::Answer { step, source })?;
        Ok((answer, wiki_time))
    }
}

impl WikiLogin {
    /// A code from a 30 s window later than the last one used: OATHAuth
    /// refuses a window it has accepted before, so a re-login soon after a
    /// login waits for the next window (at most 30 s) instead of failing.
    async fn fresh_totp_code(&self, secret: &Secret) -> Result<Secret, LoginError> {
        let now = unix_now();
        let last = *self
            .last_totp_window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut window = now / TOTP_STEP;
        if let Some(last) = last.filter(|last| *last >= window) {
            let next = (last + 1) * TOTP_STEP;
            tracing::info!(wait_secs = next - now, "waiting for a new two-factor code");
            tokio::time::sleep(std::time::Duration::from_secs(next - now)).await;
            window = last + 1;
        }
        *self
            .last_totp_window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(window);
        totp_code(secret, window * TOTP_STEP)
    }
}

const TOTP_STEP: u64 = 30;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The RFC 6238 code (SHA-1, 6 digits, 30 s) for a base32 secret at `time`.
fn totp_code(secret: &Secret, time: u64) -> Result<Secret, LoginError> {
    let bytes = totp_rs::Secret::try_from_base32(secret.expose())
        .map_err(|_| LoginError::Rejected("login.totp_secret is not base32".into()))?;
    let totp = totp_rs::Builder::new()
        .with_secret(bytes)
        // Secrets shorter than 128 bits (16 base32 characters, as some
        // enrolments give) are still what the wiki checks against.
        .build_noncompliant();
    Ok(Secret::new(totp.generate(time).to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn totp_codes_follow_rfc_6238() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890": at
        // 59 s the 8-digit code is 94287082, so the 6-digit one is 287082.
        let secret = totp_rs::Secret::try_from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        let totp = totp_rs::Builder::new()
            .with_secret(secret)
            .build_noncompliant();
        assert_eq!(totp.generate(59).to_string(), "287082");
        let code = totp_code(&Secret::new("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), 59).unwrap();
        assert_eq!(code.expose(), "287082");
    }
}
