//! The configured accounts and the sign-in password check.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::jwt::sha256_hex;

#[derive(Debug)]
pub struct Account {
    /// Stable per email (derived from it), so tokens survive a simulator restart in tests.
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninError {
    NotRegistered,
    WrongPassword,
}

#[derive(Debug, Default)]
pub struct AccountBook {
    by_email: HashMap<String, Arc<Account>>,
    by_id: HashMap<String, Arc<Account>>,
}

fn user_id_for(email: &str) -> String {
    let digest = Sha256::digest(email.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl AccountBook {
    pub fn new(accounts: &[(String, String)]) -> Self {
        let mut book = AccountBook::default();
        for (email, password) in accounts {
            let key = email.trim().to_ascii_lowercase();
            let acc = Arc::new(Account {
                id: user_id_for(&key),
                name: key.split('@').next().unwrap_or(&key).to_string(),
                email: email.trim().to_string(),
                password_sha256: sha256_hex(password),
            });
            book.by_id.insert(acc.id.clone(), acc.clone());
            book.by_email.insert(key, acc);
        }
        book
    }

    pub fn by_email(&self, email: &str) -> Option<&Arc<Account>> {
        self.by_email.get(&email.trim().to_ascii_lowercase())
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Account>> {
        self.by_id.get(id)
    }

    pub fn emails(&self) -> impl Iterator<Item = &str> {
        self.by_email.values().map(|a| a.email.as_str())
    }

    /// Upstream expects the hex digest, never the plaintext; a plaintext password is "incorrect".
    pub fn check_signin(
        &self,
        email: &str,
        password_sha256: &str,
    ) -> Result<&Arc<Account>, SigninError> {
        let acc = self.by_email(email).ok_or(SigninError::NotRegistered)?;
        if acc.password_sha256 == password_sha256.trim() {
            Ok(acc)
        } else {
            Err(SigninError::WrongPassword)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> AccountBook {
        AccountBook::new(&[("A@Example.com".into(), "pw".into())])
    }

    #[test]
    fn signin_requires_sha256_hex() {
        let b = book();
        let ok = b.check_signin("a@example.com", &sha256_hex("pw")).unwrap();
        assert_eq!(ok.email, "A@Example.com");
        assert_eq!(
            b.check_signin("a@example.com", "pw").unwrap_err(),
            SigninError::WrongPassword
        );
        assert_eq!(
            b.check_signin("b@example.com", &sha256_hex("pw"))
                .unwrap_err(),
            SigninError::NotRegistered
        );
    }

    #[test]
    fn ids_are_stable_uuids() {
        let a = book();
        let b = book();
        let ia = &a.by_email("a@example.com").unwrap().id;
        assert_eq!(ia, &b.by_email("a@example.com").unwrap().id);
        assert!(uuid::Uuid::parse_str(ia).is_ok());
        assert!(a.by_id(ia).is_some());
    }
}
