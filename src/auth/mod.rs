//! Who is calling, and what they may do, in each auth mode (SPEC.md, "Credentials").
//!
//! Knows nothing of HTTP: the HTTP layer hands over the [`Credentials`] it found on a request and
//! gets back a [`Caller`] or an error. Invariants:
//! - Every refusal of presented credentials (a bad token, a forged or expired cookie, an identity
//!   header from an untrusted address or sent twice, a used ticket, a throttled login) is
//!   audited here.
//! - A proxy's identity header is believed only from a peer in `auth.trusted_proxies`; from
//!   anyone else it is ignored. Present more than once, it is refused, never "first wins".
//! - Secrets (tokens, cookies, tickets) are compared as SHA-256 digests, never stored in clear.
//! - A valid credential is never refused because others failed from the same address: only
//!   failures are throttled (per client), except password logins, which wait out a backoff per
//!   (user name, client) and the per-client budget whatever the password.
//! - Ending a login session (logout, `kterm user passwd|disable`, expiry) ends the tickets it
//!   issued and the WebSockets it opened (see [`logins`]).

mod login;
pub mod logins;
pub mod password;
pub mod secret;
mod tickets;
mod tokens;
pub mod users;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::audit::{Action, Audit, Event, Outcome};
use crate::config::{AuthConfig, AuthMode};
use crate::error::{Error, Result};
use crate::limits::{Backoff, RateLimiter};
use crate::session::Caller;
use crate::store::{LoginSessionRecord, Store};

use logins::LiveLogins;
pub use logins::LoginWatch;
use password::PasswordChecker;
use tickets::Tickets;
pub use tokens::TokenTable;

/// The name of the login cookie.
pub const COOKIE_NAME: &str = "kterm_session";
/// Longest user name or group accepted from a proxy or a login form.
const MAX_NAME: usize = 256;
/// Most groups taken from a proxy's groups header.
const MAX_GROUPS: usize = 64;

/// What a request carried, as the HTTP layer found it.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    pub bearer: Option<String>,
    pub cookie: Option<String>,
    /// The value of `auth.proxy_user_header`, if present (checked against the peer here).
    pub proxy_user: Option<String>,
    pub proxy_groups: Option<String>,
    /// The identity or groups header appeared more than once.
    pub proxy_header_repeated: bool,
    /// The TCP peer: what proxy trust is decided on.
    pub peer: Option<IpAddr>,
    /// The client's address for the audit log and throttling.
    pub client: Option<String>,
    /// What was asked, e.g. `GET /api/v1/sessions`, for the audit log.
    pub request: String,
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Mode `none`: nobody proves anything.
    Anonymous,
    Bearer,
    Cookie,
    Proxy,
}

/// What a login presents.
pub enum Proof {
    Password {
        username: String,
        password: String,
    },
    Token(String),
    /// Modes `none` and `proxy`: the request itself already says who it is.
    Authenticated(Caller),
}

/// A new login session: the cookie's token (handed out once) and whom it stands for.
pub struct LoginSession {
    pub token: String,
    pub caller: Caller,
    pub expires_at: DateTime<Utc>,
}

pub struct Authenticator {
    config: AuthConfig,
    tokens: TokenTable,
    tickets: Tickets,
    store: Store,
    audit: Audit,
    /// Failed password logins per (user name, client): exponential backoff.
    backoff: Backoff,
    /// Failed logins and invalid tokens per client address.
    failures_per_client: RateLimiter,
    passwords: PasswordChecker,
    live_logins: Arc<LiveLogins>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig, store: Store, audit: Audit) -> Result<Self> {
        let window = config.login_failure_window.0;
        let tokens = TokenTable::load(config).map_err(Error::Config)?;
        Ok(Authenticator {
            tokens,
            tickets: Tickets::new(config.ticket_ttl.0),
            backoff: Backoff::new(config.login_backoff_after, config.login_backoff_max.0),
            failures_per_client: RateLimiter::new(config.login_max_failures_per_client, window),
            passwords: PasswordChecker::for_this_machine()?,
            live_logins: Arc::default(),
            config: config.clone(),
            store,
            audit,
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.config.mode
    }

    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.config.trusted_proxies.iter().any(|range| range.contains(peer))
    }

    /// The caller a request's credentials prove, or 401.
    pub async fn authenticate(&self, c: &Credentials) -> Result<(Caller, Via)> {
        match self.config.mode {
            AuthMode::None => {
                return Ok((self.caller(&self.config.none_user, Vec::new()), Via::Anonymous));
            }
            AuthMode::Proxy => {
                if let Some(user) = &c.proxy_user {
                    if c.peer.is_some_and(|peer| self.is_trusted_proxy(peer)) {
                        if c.proxy_header_repeated {
                            let why = format!(
                                "the identity header {} (or the groups header) was sent more \
                                 than once",
                                self.config.proxy_user_header
                            );
                            return Err(self.deny(c, None, why).await);
                        }
                        return match self.proxy_caller(user, c.proxy_groups.as_deref()) {
                            Ok(caller) => Ok((caller, Via::Proxy)),
                            Err(why) => Err(self.deny(c, None, why).await),
                        };
                    }
                    let why = format!(
                        "ignored the identity header {} from {}, which is not in auth.trusted_proxies",
                        self.config.proxy_user_header,
                        c.peer.map(|p| p.to_string()).unwrap_or_default()
                    );
                    self.deny(c, None, why).await;
                }
            }
            AuthMode::Token => {
                if let Some(token) = &c.bearer {
                    // A valid token is always accepted: only failures are throttled, so others
                    // failing from the same address (a shared proxy) lock nobody out.
                    if let Some((user, _)) = self.tokens.find(token) {
                        return Ok((self.caller(user, Vec::new()), Via::Bearer));
                    }
                    let client = c.client.clone().unwrap_or_default();
                    if let Err(retry_after) = self.failures_per_client.hit(&client) {
                        let why = "too many invalid credentials from this client; throttled";
                        self.deny(c, None, why.into()).await;
                        return Err(Error::RateLimited {
                            message: "too many invalid credentials; try again later".into(),
                            retry_after,
                        });
                    }
                    return Err(self.deny(c, None, "invalid bearer token".into()).await);
                }
            }
            AuthMode::Local => {}
        }
        if let Some(cookie) = &c.cookie {
            return match self.cookie_caller(cookie).await? {
                Some(mut caller) => {
                    caller.login = Some(secret::sha256_hex(cookie));
                    Ok((caller, Via::Cookie))
                }
                None => {
                    let why = "the session cookie is invalid or expired; log in again";
                    Err(self.deny(c, None, why.into()).await)
                }
            };
        }
        Err(Error::Unauthorized(self.how_to_authenticate().into()))
    }

    /// The caller of a WebSocket ticket for `session`, used up by this call.
    pub async fn redeem_ticket(
        &self,
        ticket: &str,
        session: &str,
        c: &Credentials,
    ) -> Result<Caller> {
        let Some(caller) = self.tickets.redeem(ticket, session) else {
            let why = "the ticket is invalid, expired, already used or for another session";
            return Err(self.deny(c, Some(session), why.into()).await);
        };
        // A ticket dies with the login that asked for it, wherever that login was ended.
        if let Some(login) = &caller.login {
            let record = self.store.get_login_session(login).await?;
            if !record.is_some_and(|r| self.login_still_valid(&r)) {
                let why = "the login session that asked for this ticket has ended";
                return Err(self.deny(c, Some(session), why.into()).await);
            }
        }
        Ok(caller)
    }

    /// Watches a login session (the SHA-256 of its cookie) for a connection it opened.
    pub fn watch_login(&self, login: &str, user: &str) -> LoginWatch {
        self.live_logins.watch(login, user)
    }

    /// Ends what a login session opened in this process: its tickets and its connections.
    fn end_login(&self, login: &str) -> Option<String> {
        self.tickets.revoke_login(login);
        self.live_logins.end(login)
    }

    /// Finds the logins behind live connections that ended elsewhere (`kterm user passwd`
    /// or `disable` in another process, expiry) and ends what they opened. One query for all.
    pub async fn check_live_logins(&self) {
        let watched = self.live_logins.watched();
        if watched.is_empty() {
            return;
        }
        let valid: std::collections::HashSet<String> = match self
            .store
            .get_login_sessions(watched.clone())
            .await
        {
            Ok(records) => records
                .into_iter()
                .filter(|r| self.login_still_valid(r))
                .map(|r| r.token_hash)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not check the login sessions of live connections");
                return;
            }
        };
        for login in watched.iter().filter(|l| !valid.contains(*l)) {
            if let Some(user) = self.end_login(login) {
                let event = Event::new(Action::Logout, Outcome::Ok).user(user).detail(
                    "the login session ended (logout elsewhere, password changed, user \
                     disabled, or expired); its connections were closed",
                );
                self.audit.record(event).await;
            }
        }
    }

    /// A single-use ticket for `caller` to attach to `session`, and its lifetime.
    pub fn issue_ticket(
        &self,
        caller: &Caller,
        session: &str,
    ) -> Result<(String, std::time::Duration)> {
        Ok((self.tickets.issue(caller, session)?, self.tickets.ttl()))
    }

    async fn cookie_caller(&self, cookie: &str) -> Result<Option<Caller>> {
        if cookie.len() != 64 || !cookie.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some(record) = self.store.get_login_session(&secret::sha256_hex(cookie)).await? else {
            return Ok(None);
        };
        Ok(self.login_still_valid(&record).then(|| self.caller(&record.user, record.groups)))
    }

    /// Whether an unexpired login session still stands for its user in this configuration.
    fn login_still_valid(&self, record: &LoginSessionRecord) -> bool {
        let mode = self.config.mode;
        record.method == mode_name(mode)
            && match mode {
                AuthMode::Local => record.user_enabled,
                AuthMode::Token => secret::parse_sha256_hex(&record.credential)
                    .is_some_and(|digest| self.tokens.still_has(&record.user, &digest)),
                AuthMode::Proxy | AuthMode::None => true,
            }
    }

    fn proxy_caller(&self, raw_user: &str, raw_groups: Option<&str>) -> Result<Caller, String> {
        let user = raw_user.trim();
        let user = user.strip_prefix(self.config.proxy_user_prefix.as_str()).unwrap_or(user);
        if !acceptable_name(user) {
            return Err(format!(
                "the identity header {} holds no usable user name",
                self.config.proxy_user_header
            ));
        }
        let groups = raw_groups
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|g| acceptable_name(g))
            .take(MAX_GROUPS)
            .map(String::from)
            .collect();
        Ok(self.caller(user, groups))
    }

    /// A caller with the admin flag, groups and namespaces the config gives `user`.
    fn caller(&self, user: &str, mut groups: Vec<String>) -> Caller {
        let auth = &self.config;
        let admin = auth.mode == AuthMode::None || auth.admins.iter().any(|a| a == user);
        groups.extend(
            auth.groups
                .iter()
                .filter(|(_, members)| members.iter().any(|m| m == user))
                .map(|(g, _)| g.clone()),
        );
        let groups: BTreeSet<String> = groups.into_iter().collect();
        let mut namespaces: BTreeSet<String> = auth.namespaces.iter().cloned().collect();
        namespaces.extend(auth.user_namespaces.get(user).into_iter().flatten().cloned());
        for group in &groups {
            namespaces.extend(auth.group_namespaces.get(group).into_iter().flatten().cloned());
        }
        let namespaces = if namespaces.contains("*") {
            vec!["*".to_string()]
        } else {
            namespaces.into_iter().collect()
        };
        Caller {
            user: user.to_string(),
            admin,
            groups: groups.into_iter().collect(),
            namespaces,
            login: None,
        }
    }

    /// Audits a refusal of presented credentials and returns the 401 to send.
    async fn deny(&self, c: &Credentials, session: Option<&str>, why: String) -> Error {
        let mut event = Event::new(Action::Denied, Outcome::Denied)
            .client(c.client.clone())
            .detail(format!("{}: {why}", c.request));
        if let Some(session) = session {
            event = event.session(session);
        }
        self.audit.record(event).await;
        Error::Unauthorized(why)
    }

    fn how_to_authenticate(&self) -> &'static str {
        match self.config.mode {
            AuthMode::Token => {
                "no credentials: send Authorization: Bearer TOKEN, or log in at /api/v1/auth/login"
            }
            AuthMode::Local => "no credentials: log in at /api/v1/auth/login",
            AuthMode::Proxy => "no credentials: sign in through the authenticating proxy",
            AuthMode::None => "no credentials",
        }
    }
}

pub fn mode_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::None => "none",
        AuthMode::Token => "token",
        AuthMode::Local => "local",
        AuthMode::Proxy => "proxy",
    }
}

/// Throttle keys are bounded in length whatever a client sends.
fn throttle_key(username: &str) -> String {
    if username.len() <= MAX_NAME {
        username.to_string()
    } else {
        format!("sha256:{}", secret::sha256_hex(username))
    }
}

/// A user or group name from outside: not empty, bounded, no control, invisible or
/// direction-changing characters (which would make one name look like another), no comma
/// (a proxy may join a repeated header's values with one).
fn acceptable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name
            .chars()
            .any(|c| crate::audit::is_invisible(c) || c == char::REPLACEMENT_CHARACTER || c == ',')
}
