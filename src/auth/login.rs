//! Logging in and out: checking a password (with a backoff per user name and client, and a
//! budget per client) or a token (only failures throttled), and the login sessions behind the
//! `kterm_session` cookie.

use chrono::Utc;

use super::{
    mode_name, password, secret, throttle_key, Authenticator, LoginSession, Proof, MAX_NAME,
};

/// The backoff key of a (user name, client) pair.
fn backoff_key(username: &str, client: &Option<String>) -> String {
    format!("{}\n{}", throttle_key(username), client.as_deref().unwrap_or_default())
}
use crate::audit::{Action, Event, Outcome};
use crate::config::AuthMode;
use crate::error::{Error, Result};
use crate::session::Caller;
use crate::store::LoginSessionRecord;

impl Authenticator {
    /// Checks a login's proof (throttled per user name and per client) and starts a login
    /// session; both outcomes are audited.
    pub async fn login(&self, proof: Proof, client: Option<String>) -> Result<LoginSession> {
        let mode = self.config.mode;
        let (caller, credential, via) = match (mode, proof) {
            (AuthMode::None | AuthMode::Proxy, Proof::Authenticated(caller)) => {
                (caller, String::new(), "request identity")
            }
            (AuthMode::Local, Proof::Password { username, password }) => (
                self.check_password(&username, &password, &client).await?,
                String::new(),
                "password",
            ),
            (AuthMode::Token, Proof::Token(token)) => {
                let (caller, digest) = self.check_token(&token, &client).await?;
                (caller, digest, "token")
            }
            (AuthMode::Local, _) => {
                return Err(Error::BadRequest(
                    "this server logs in with {\"username\", \"password\"}".into(),
                ))
            }
            (AuthMode::Token, _) => {
                return Err(Error::BadRequest("this server logs in with {\"token\"}".into()))
            }
            (_, _) => return Err(Error::Internal("login without an authenticated request".into())),
        };
        let token = secret::random_token()?;
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.config.cookie_ttl.0)
            .map_err(|e| Error::Internal(format!("auth.cookie_ttl: {e}")))?;
        let record = LoginSessionRecord {
            token_hash: secret::sha256_hex(&token),
            user: caller.user.clone(),
            method: mode_name(mode).into(),
            credential,
            groups: caller.groups.clone(),
            created_at: now,
            expires_at: now + ttl,
            user_enabled: true,
        };
        self.store.insert_login_session(&record).await?;
        let event = Event::new(Action::Login, Outcome::Ok)
            .user(&caller.user)
            .client(client)
            .detail(format!("via {via}"));
        self.audit.record(event).await;
        Ok(LoginSession { token, caller, expires_at: record.expires_at })
    }

    /// Ends the login session of `cookie` (if any).
    pub async fn logout(
        &self,
        cookie: Option<&str>,
        caller: &Caller,
        client: Option<String>,
    ) -> Result<()> {
        if let Some(cookie) = cookie {
            let login = secret::sha256_hex(cookie);
            self.store.delete_login_session(&login).await?;
            // Its tickets and WebSockets end with it (each detach is audited).
            self.end_login(&login);
        }
        self.audit
            .record(Event::new(Action::Logout, Outcome::Ok).user(&caller.user).client(client))
            .await;
        Ok(())
    }

    /// Deletes expired login sessions.
    pub async fn housekeeping(&self) {
        if let Err(e) = self.store.delete_expired_login_sessions().await {
            tracing::warn!(error = %e, "could not delete expired login sessions");
        }
    }

    async fn check_password(
        &self,
        username: &str,
        password: &str,
        client: &Option<String>,
    ) -> Result<Caller> {
        let key = backoff_key(username, client);
        self.throttle(Some(username), client, self.backoff.check(&key)).await?;
        let user = if username.len() <= MAX_NAME && !username.is_empty() {
            self.store.get_user(username).await?
        } else {
            None
        };
        let known = user.as_ref().is_some_and(|u| !u.disabled);
        let stored = user
            .as_ref()
            .filter(|_| known && password.len() <= password::MAX_PASSWORD)
            .map(|u| u.password_hash.clone());
        let matches = match self.passwords.verify(password.to_string(), stored).await {
            Ok(matches) => matches,
            Err(password::Busy) => return Err(self.busy(username, client).await),
        };
        if !matches {
            let why = match &user {
                None => "unknown user",
                Some(u) if u.disabled => "user disabled",
                Some(_) => "wrong password",
            };
            self.backoff.fail(&key);
            return Err(self.login_failed(Some(username), client, why).await);
        }
        self.backoff.reset(&key);
        self.store.record_login(username).await?;
        Ok(self.caller(username, Vec::new()))
    }

    async fn check_token(&self, token: &str, client: &Option<String>) -> Result<(Caller, String)> {
        // A valid token always logs in: only failures are throttled.
        if let Some((user, digest)) = self.tokens.find(token) {
            return Ok((self.caller(user, Vec::new()), secret::hex(&digest)));
        }
        self.throttle(None, client, Ok(())).await?;
        Err(self.login_failed(None, client, "invalid token").await)
    }

    /// 429 while the client is over its failure budget, or `waiting` says this (user, client)
    /// must still wait out its backoff; whatever the password.
    async fn throttle(
        &self,
        username: Option<&str>,
        client: &Option<String>,
        waiting: std::result::Result<(), std::time::Duration>,
    ) -> Result<()> {
        let client_key = client.clone().unwrap_or_default();
        let wait = self.failures_per_client.peek(&client_key).and(waiting);
        let Err(retry_after) = wait else { return Ok(()) };
        let mut event = Event::new(Action::Login, Outcome::Denied)
            .client(client.clone())
            .detail("too many failed logins; throttled");
        if let Some(user) = username {
            event = event.user(user);
        }
        self.audit.record(event).await;
        Err(Error::RateLimited {
            message: "too many failed logins; try again later".into(),
            retry_after,
        })
    }

    /// 503 with Retry-After: every password checker is busy (audited, as a denial: those are
    /// limited per client, so a flood cannot flood the audit log).
    async fn busy(&self, username: &str, client: &Option<String>) -> Error {
        let event = Event::new(Action::Denied, Outcome::Denied)
            .user(username)
            .client(client.clone())
            .detail("POST /api/v1/auth/login: too many password checks in progress; answered 503");
        self.audit.record(event).await;
        Error::Busy {
            message: "the server is checking too many passwords; try again in a moment".into(),
            retry_after: password::Busy::RETRY_AFTER,
        }
    }

    async fn login_failed(
        &self,
        username: Option<&str>,
        client: &Option<String>,
        why: &str,
    ) -> Error {
        let _ = self.failures_per_client.hit(&client.clone().unwrap_or_default());
        let mut event =
            Event::new(Action::Login, Outcome::Failed).client(client.clone()).detail(why);
        if let Some(user) = username {
            event = event.user(user);
        }
        self.audit.record(event).await;
        let what = if username.is_some() { "wrong user name or password" } else { "invalid token" };
        Error::Unauthorized(what.into())
    }
}
