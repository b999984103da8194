//! Tower layers in front of every service: who may call ([`auth`], with the [`tokens`] file)
//! and honest codes for requests that cannot be decoded ([`request_errors`]).

pub mod auth;
pub mod request_errors;
pub mod tokens;

pub use auth::{AuthLayer, Authentication};
pub use request_errors::RequestErrorsLayer;
pub use tokens::{TokenFileError, TokenSet};
