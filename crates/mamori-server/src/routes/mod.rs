//! Routes, one module per resource, each with its handlers beside its paths.

pub mod access_logs;
pub mod accounts;
pub mod app_api;
pub mod audit;
pub mod authz;
pub mod health;
pub mod lifecycle;
pub mod local_accounts;
pub mod me;
pub mod operator;
pub mod org_apps;
pub mod orgs;
pub mod personal_tokens;
pub mod purge;
pub mod recovery;
pub mod sessions;
pub mod teams;
pub mod two_step;

use mamori_api_types::Account;
use mamori_service::AccountView;

pub fn account_body(view: AccountView) -> Account {
    Account {
        id: view.id.to_string(),
        email: view.email,
        display_name: view.display_name,
        email_verified: view.email_verified,
        created_at: view.created_at.to_rfc3339(),
        updated_at: view.updated_at.to_rfc3339(),
    }
}
