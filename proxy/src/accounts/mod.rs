//! Google accounts as credentials: the accounts file the operator owns, OAuth tokens and project discovery,
//! the browser login that adds an account, and the import of other gateways' account exports.

mod answers;
pub mod cluster;
pub mod credentials;
pub mod file;
pub mod import;
pub mod login;
