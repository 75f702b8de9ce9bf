//! Identity for jitgate: the `[identity]` config and workload identity (a CI job's or agent's
//! JWT, checked against its provider's JWKS, traded for a short-lived principal). No storage:
//! the server keeps the tokens it issues.

pub mod config;
mod error;
pub mod jwks;
pub mod oidc;
pub mod workload;

pub use config::{IdentityConfig, JwtProvider, OidcConfig, RawIdentity};
pub use error::{Check, IdentityError};
pub use workload::{Verified, Workload};
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "testing-oidc")]
pub mod testing_oidc;
