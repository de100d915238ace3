//! Google accounts as credentials: the accounts file the operator owns, OAuth tokens and project discovery,
//! and the browser login that adds an account.

pub mod credentials;
pub mod file;
pub mod login;
