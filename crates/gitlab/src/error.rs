//! Client errors. Each renders what happened, the likely cause and the fix.

/// An error talking to GitLab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("placeholder")]
    Placeholder,
}
