//! What a delivery failure's `error_code` means to an operator, and whether
//! retrying the message can succeed. Status-derived codes reuse delivery's
//! own classification ([`super::status::classify`]): a code whose status
//! delivery retries is transient; the others fail again with the same body
//! unless something outside the message changes (credentials, URL, catalog),
//! or fail again whatever happens (eSight refuses the message itself).

use super::status::{Outcome, classify, error_code_for_status};

/// Whether a retry of a message failed with this code can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAdvice {
    /// It can: the cause was passing (eSight down or busy).
    CanSucceed,
    /// It fails again unless this is done first.
    FailsAgainUnless(&'static str),
    /// It fails again: eSight refuses the message itself.
    FailsAgain(&'static str),
}

impl RetryAdvice {
    /// `can_succeed`, `after_fix` or `fails_again` (the API's `retry` field).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CanSucceed => "can_succeed",
            Self::FailsAgainUnless(_) => "after_fix",
            Self::FailsAgain(_) => "fails_again",
        }
    }

    /// Why a retry would fail again, in words (`None` when it can succeed).
    pub fn note(self) -> Option<&'static str> {
        match self {
            Self::CanSucceed => None,
            Self::FailsAgainUnless(why) | Self::FailsAgain(why) => Some(why),
        }
    }
}

/// A failure code, explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCause {
    /// What happened, for people (without the message's own details).
    pub reason: &'static str,
    /// What the operator can do.
    pub fix: &'static str,
    /// Whether a retry can succeed.
    pub retry: RetryAdvice,
}

const CATALOG_FIX: &str = "add it to eSight's catalog (or correct the producer's data), then retry";

/// Explains `code` (a `messages.error_code` of a failed message).
pub fn describe(code: &str) -> FailureCause {
    match code {
        "NoMeterId" => FailureCause {
            reason: "the meter is not in eSight's catalog",
            fix: CATALOG_FIX,
            retry: RetryAdvice::FailsAgainUnless("the meter must first be added to eSight's catalog"),
        },
        "NoSiteId" => FailureCause {
            reason: "the site is not in eSight's catalog",
            fix: CATALOG_FIX,
            retry: RetryAdvice::FailsAgainUnless("the site must first be added to eSight's catalog"),
        },
        "InvalidJson" => FailureCause {
            reason: "the stored message cannot be rewritten for eSight",
            fix: "ask the producer to send a corrected message",
            retry: RetryAdvice::FailsAgain("the stored body is unusable; a retry sends the same body"),
        },
        "RetriesExhausted" => FailureCause {
            reason: "eSight was unreachable or busy until delivery.max_attempts or delivery.max_age ran out",
            fix: "retry once eSight answers again",
            retry: RetryAdvice::CanSucceed,
        },
        _ => describe_status_code(code),
    }
}

/// The status-table codes (and `UntrackedError`), through delivery's own
/// classification of the status behind the code.
fn describe_status_code(code: &str) -> FailureCause {
    let status = (100..=599).find(|s| error_code_for_status(*s) == code && code != "UntrackedError");
    match status.map(|s| (s, classify(s))) {
        Some((_, Outcome::Retry | Outcome::Delivered)) => FailureCause {
            reason: "eSight was unavailable",
            fix: "retry once eSight answers again",
            retry: RetryAdvice::CanSucceed,
        },
        Some((401 | 403, _)) => FailureCause {
            reason: "eSight refused the delivery credentials",
            fix: "correct esight.post_username / esight.post_password (SIGHUP reloads them), then retry",
            retry: RetryAdvice::FailsAgainUnless("the eSight credentials must be corrected first"),
        },
        Some((404 | 405 | 410, _)) => FailureCause {
            reason: "eSight has no consumption endpoint at the configured address",
            fix: "correct esight.consumption_url and restart, then retry",
            retry: RetryAdvice::FailsAgainUnless("esight.consumption_url must be corrected first"),
        },
        Some((423, _)) => FailureCause {
            reason: "eSight reported the meter's data as locked",
            fix: "ask eSight's operators to unlock it, then retry",
            retry: RetryAdvice::FailsAgainUnless("eSight must unlock the data first"),
        },
        Some(_) => FailureCause {
            reason: "eSight refused the message's content",
            fix: "ask the producer to send a corrected message",
            retry: RetryAdvice::FailsAgain("eSight refuses this content; a retry sends the same body"),
        },
        None if code == "UntrackedError" => FailureCause {
            reason: "eSight answered with an unexpected status (a redirect or an unknown code)",
            fix: "check esight.consumption_url (it must be the final address), then retry",
            retry: RetryAdvice::FailsAgainUnless("esight.consumption_url must be corrected first"),
        },
        None => FailureCause {
            reason: "delivery failed",
            fix: "read a message's attempt log for the cause",
            retry: RetryAdvice::FailsAgainUnless("the cause in the attempt log must be fixed first"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_causes_can_succeed() {
        for code in ["RetriesExhausted", "ServiceUnavailable", "TooManyRequests", "InternalServerError"] {
            assert_eq!(describe(code).retry, RetryAdvice::CanSucceed, "{code}");
        }
    }

    #[test]
    fn catalog_credentials_and_address_failures_need_a_fix_first() {
        for code in
            ["NoMeterId", "NoSiteId", "Unauthorized", "Forbidden", "NotFound", "UntrackedError", "Locked"]
        {
            assert!(matches!(describe(code).retry, RetryAdvice::FailsAgainUnless(_)), "{code}");
        }
    }

    #[test]
    fn refused_content_fails_again() {
        for code in ["InvalidJson", "BadRequest", "UnprocessableEntity", "RequestEntityTooLarge", "Conflict"]
        {
            let cause = describe(code);
            assert!(matches!(cause.retry, RetryAdvice::FailsAgain(_)), "{code}");
            assert_eq!(cause.retry.as_str(), "fails_again");
            assert!(cause.retry.note().is_some());
        }
    }

    #[test]
    fn unknown_codes_are_explained_without_promising_success() {
        let cause = describe("SomethingNew");
        assert_eq!(cause.retry.as_str(), "after_fix");
        assert!(!cause.reason.is_empty() && !cause.fix.is_empty());
    }

    #[test]
    fn every_final_failure_of_delivery_is_explained_specifically() {
        for status in 100..=599u16 {
            if let Outcome::Fail(code) = classify(status) {
                assert_ne!(describe(code).reason, "delivery failed", "{status} {code}");
            }
        }
    }
}
