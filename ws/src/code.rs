//! The typed errors a browser sees, and the websocket close code that follows each.

use flock_proto::login::Failure;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    UnknownAppliance,
    ApplianceUnreachable,
    BadCredentials,
    Denied,
    Malformed,
    TooLarge,
    Timeout,
    Busy,
    /// The appliance has no room for this log-in now (it answered 508).
    ApplianceBusy,
    OwnerDown,
    /// The policy says not now; the error carries `retry_after_ms`.
    RateLimited,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::UnknownAppliance => "unknown-appliance",
            Code::ApplianceUnreachable => "appliance-unreachable",
            Code::BadCredentials => "bad-credentials",
            Code::Denied => "denied",
            Code::Malformed => "malformed",
            Code::TooLarge => "too-large",
            Code::Timeout => "timeout",
            Code::Busy => "busy",
            Code::ApplianceBusy => "appliance-busy",
            Code::OwnerDown => "owner-down",
            Code::RateLimited => "rate-limited",
        }
    }

    /// See the crate docs for the reasoning.
    pub fn close_code(self) -> CloseCode {
        match self {
            Code::UnknownAppliance | Code::BadCredentials | Code::Denied | Code::Malformed => {
                CloseCode::Policy
            }
            Code::TooLarge => CloseCode::Size,
            Code::ApplianceUnreachable | Code::OwnerDown | Code::Timeout => CloseCode::Error,
            Code::Busy | Code::ApplianceBusy | Code::RateLimited => CloseCode::Again,
        }
    }

    /// The code and a human message for a failure the core reported.
    pub fn from_failure(f: Failure) -> (Code, &'static str) {
        match f {
            Failure::UnknownAppliance => (
                Code::UnknownAppliance,
                "no appliance of that name is registered",
            ),
            Failure::Unreachable => (Code::ApplianceUnreachable, "the appliance did not answer"),
            Failure::BadCredentials => (Code::BadCredentials, "too many wrong credentials"),
            Failure::Denied => (Code::Denied, "the log-in was refused"),
            Failure::Timeout => (Code::Timeout, "the appliance went silent"),
            Failure::Busy => (
                Code::Busy,
                "the server is at its session bound; try again later",
            ),
            Failure::ApplianceBusy => (
                Code::ApplianceBusy,
                "the appliance is busy (too many log-ins at once); try again later",
            ),
            Failure::Malformed => (Code::Malformed, "the request made no sense in this state"),
            Failure::OwnerDown => (
                Code::OwnerDown,
                "the server owning this appliance's name cannot be reached",
            ),
        }
    }
}
