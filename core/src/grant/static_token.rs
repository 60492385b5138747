//! Personal access tokens and other static bearer tokens: no network, never expire.

use super::sealed::Fetch;
use crate::clock::Deadline;
use crate::error::Result;
use crate::http::Http;
use crate::secret::Secret;
use crate::token::Token;

/// A fixed token, such as a viewneo personal access token.
#[derive(Debug, Clone)]
pub struct StaticToken {
    token: Secret,
}

impl StaticToken {
    /// A static bearer token.
    pub fn new(token: impl Into<Secret>) -> Self {
        StaticToken {
            token: token.into(),
        }
    }
}

impl Fetch for StaticToken {
    fn fetch(&self, _http: &Http, _rt: Option<&Secret>, _deadline: Deadline) -> Result<Token> {
        Ok(Token::never_expiring(self.token.clone()))
    }

    fn renewable(&self) -> bool {
        false
    }

    fn initial_token(&self) -> Option<Token> {
        Some(Token::never_expiring(self.token.clone()))
    }

    fn endpoints(&self) -> Vec<&str> {
        Vec::new()
    }
}
