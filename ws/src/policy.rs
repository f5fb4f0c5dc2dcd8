//! The operator's log-in policy, as the gateway consults it: authorize an attempt before the
//! credential goes anywhere, filter the persona list a browser sees, record outcomes. flockd
//! implements it on top of its plugins (which run on their own threads with a time budget and
//! fail closed); [`AllowAll`] is the default without plugins.

use crate::json::Persona;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

/// A log-in attempt, before its credential is passed on (the credential is not part of it).
#[derive(Clone, Debug)]
pub struct LoginAttempt {
    /// The normalized appliance name.
    pub appliance: String,
    pub persona: String,
    pub client: SocketAddr,
    /// The page's origin, as the browser sent it.
    pub origin: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// Not now: the browser may try again after this long.
    RetryAfter(Duration),
}

/// How a log-in attempt ended, for audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Wrong credentials, refused by policy, or failed otherwise.
    Failed,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub trait Policy: Send + Sync + 'static {
    fn authorize_login(&self, attempt: LoginAttempt) -> BoxFuture<Verdict>;
    /// The personas `client` may see; `None` when the policy could not decide (the gateway then
    /// fails closed and shows none).
    fn filter_personas(
        &self,
        appliance: String,
        client: SocketAddr,
        personas: Vec<Persona>,
    ) -> BoxFuture<Option<Vec<Persona>>>;
    /// Fire and forget.
    fn audit_login(&self, attempt: &LoginAttempt, outcome: Outcome);
}

/// No policy: every attempt is authorized, every persona shown, nothing recorded.
pub struct AllowAll;

impl Policy for AllowAll {
    fn authorize_login(&self, _: LoginAttempt) -> BoxFuture<Verdict> {
        Box::pin(std::future::ready(Verdict::Allow))
    }
    fn filter_personas(
        &self,
        _: String,
        _: SocketAddr,
        personas: Vec<Persona>,
    ) -> BoxFuture<Option<Vec<Persona>>> {
        Box::pin(std::future::ready(Some(personas)))
    }
    fn audit_login(&self, _: &LoginAttempt, _: Outcome) {}
}
