//! Local users of mode `local`, as `kterm user add|passwd|disable|enable|list` manages them.
//! Each change is audited (client `cli`).

use crate::audit::{Action, Audit, Event, Outcome};
use crate::error::{Error, Result};
use crate::store::{Store, UserRecord};

use super::password;

/// User names: 1 to 64 of `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "user name {name:?} must be 1 to 64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit"
        )))
    }
}

async fn hash(password: &str) -> Result<String> {
    password::check_policy(password)?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))?
}

pub async fn add(store: &Store, name: &str, password: &str) -> Result<()> {
    validate_name(name)?;
    let hash = hash(password).await?;
    if !store.insert_user(name, &hash).await? {
        return Err(Error::Conflict(format!("user {name} exists; use `kterm user passwd`")));
    }
    audit(store, name, "user added").await;
    Ok(())
}

pub async fn passwd(store: &Store, name: &str, password: &str) -> Result<()> {
    let hash = hash(password).await?;
    if !store.set_password(name, &hash).await? {
        return Err(no_such_user(name));
    }
    audit(store, name, "password changed; login sessions ended").await;
    Ok(())
}

pub async fn set_disabled(store: &Store, name: &str, disabled: bool) -> Result<()> {
    if !store.set_user_disabled(name, disabled).await? {
        return Err(no_such_user(name));
    }
    let what = if disabled { "user disabled; login sessions ended" } else { "user enabled" };
    audit(store, name, what).await;
    Ok(())
}

pub async fn list(store: &Store) -> Result<Vec<UserRecord>> {
    store.list_users().await
}

fn no_such_user(name: &str) -> Error {
    Error::NotFound(format!("no user {name:?}; add one with `kterm user add`"))
}

async fn audit(store: &Store, name: &str, what: &str) {
    let event =
        Event::new(Action::UserAdmin, Outcome::Ok).user(name).client(Some("cli")).detail(what);
    Audit::new(store.clone()).record(event).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("alice@example.com").is_ok());
        for bad in ["", "-x", "a b", "a/b", "é", "x'; --", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
