use thiserror::Error;

/// Which check refused a sign-in: named in the 401's message and in the `auth.refused` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No provider of that name is configured.
    Provider,
    /// Not a JWT at all (segments, base64, JSON).
    Format,
    /// An algorithm other than RS256, ES256 or EdDSA (`none` and HS* among them).
    Algorithm,
    /// No key of the provider's key set has the token's `kid`, even after a refetch.
    Key,
    Signature,
    Issuer,
    Audience,
    Expiry,
    NotBefore,
    /// The token has no `jti`, or its `jti` was already used.
    Jti,
    BoundClaims,
    /// The principal template names a claim the token lacks, or yields an unusable name.
    Principal,
    /// OpenID Connect: the callback's `state` is unknown or expired (a forged or stale callback).
    State,
    /// OpenID Connect: the provider refused the code, or its ID token failed verification
    /// (signature, issuer, audience, expiry, nonce).
    IdToken,
    /// OpenID Connect: the person is in none of `allowed_groups`.
    AllowedGroups,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Provider => "provider",
            Check::Format => "format",
            Check::Algorithm => "algorithm",
            Check::Key => "key",
            Check::Signature => "signature",
            Check::Issuer => "issuer",
            Check::Audience => "audience",
            Check::Expiry => "expiry",
            Check::NotBefore => "not_before",
            Check::Jti => "jti",
            Check::BoundClaims => "bound_claims",
            Check::Principal => "principal",
            Check::State => "state",
            Check::IdToken => "id_token",
            Check::AllowedGroups => "allowed_groups",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Error)]
pub enum IdentityError {
    /// The presented identity failed a check: a 401 whose message names the check.
    #[error("{check} check failed: {message}")]
    Refused { check: Check, message: String },
    /// The provider's keys cannot be had: new sign-ins are refused until it answers again.
    #[error("identity provider {provider} cannot be reached: {message}")]
    Unavailable {
        provider: String,
        message: String,
        #[source]
        source: Option<reqwest::Error>,
    },
}

impl IdentityError {
    pub fn refused(check: Check, message: impl Into<String>) -> Self {
        IdentityError::Refused {
            check,
            message: message.into(),
        }
    }

    /// The check that failed, if the identity was refused (not for an unreachable provider).
    pub fn check(&self) -> Option<Check> {
        match self {
            IdentityError::Refused { check, .. } => Some(*check),
            IdentityError::Unavailable { .. } => None,
        }
    }
}
