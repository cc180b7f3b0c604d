//! The errors of the storage layer. Database driver types stop here: the service sees only
//! these variants.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; `constraint` names the rule (or the column) for logs.
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// A stored value could not be read back as the type it should be.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// SQLite through rusqlite (the audit chain scan).
    #[error("database unavailable")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db_error) = &error
            && db_error.is_unique_violation()
        {
            let constraint = db_error
                .constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db_error.message().to_owned());
            return StoreError::Conflict { constraint };
        }
        if let sqlx::Error::RowNotFound = error {
            return StoreError::NotFound;
        }
        StoreError::Unavailable(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(error)
    }
}
