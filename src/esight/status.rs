//! What an HTTP status from eSight's consumption endpoint means: the
//! contract's "eSight status codes" table and the delivery outcome.
//!
//! Outcome rules: `2xx` delivered; `408`, `429` and every `5xx` retried
//! (with backoff); every other status fails at once with the table's code.
//! That includes `1xx` and `3xx`: the HTTP client follows no redirect and
//! handles `100 Continue` itself, so such a final status means a
//! misconfigured `consumption_url` — retrying would only burn attempts, and
//! the operator can retry failed messages after fixing it. Statuses outside
//! 100–599 are treated the same way (`UntrackedError`).

/// `error_code` recorded for a failed delivery, from eSight's status, as the
/// original service named them; `UntrackedError` for any status not in the
/// table (including 2xx, which never fail).
pub fn error_code_for_status(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        411 => "LengthRequired",
        412 => "PreconditionFailed",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        416 => "RequestedRangeNotSatisfiable",
        422 => "UnprocessableEntity",
        423 => "Locked",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        501 => "NotImplemented",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        507 => "InsufficientStorage",
        509 => "BandwidthLimitExceeded",
        _ => "UntrackedError",
    }
}

/// What to do with a message after eSight answered a delivery with a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `2xx`: the message is delivered.
    Delivered,
    /// `408`, `429`, `5xx`: try again later (when attempts run out the
    /// message fails with `RetriesExhausted`, not a status code).
    Retry,
    /// Anything else: the message fails permanently with this code.
    Fail(&'static str),
}

impl Outcome {
    /// The `outcome` label of `energyload_delivery_attempts_total`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Fail(_) => "failed",
        }
    }
}

/// Classifies eSight's answer to a delivery. A `401` is `Fail` here; the
/// worker re-authenticates once before it gets that far (see the contract).
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry,
        _ => Outcome::Fail(error_code_for_status(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: [(u16, &str); 22] = [
        (400, "BadRequest"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (404, "NotFound"),
        (405, "MethodNotAllowed"),
        (406, "NotAcceptable"),
        (409, "Conflict"),
        (410, "Gone"),
        (411, "LengthRequired"),
        (412, "PreconditionFailed"),
        (413, "RequestEntityTooLarge"),
        (415, "UnsupportedMediaType"),
        (416, "RequestedRangeNotSatisfiable"),
        (422, "UnprocessableEntity"),
        (423, "Locked"),
        (429, "TooManyRequests"),
        (500, "InternalServerError"),
        (501, "NotImplemented"),
        (503, "ServiceUnavailable"),
        (504, "GatewayTimeout"),
        (507, "InsufficientStorage"),
        (509, "BandwidthLimitExceeded"),
    ];

    #[test]
    fn every_table_row_has_its_code() {
        for (status, code) in TABLE {
            assert_eq!(error_code_for_status(status), code, "{status}");
        }
    }

    #[test]
    fn statuses_outside_the_table_are_untracked() {
        for status in [
            0, 100, 200, 204, 301, 302, 402, 407, 408, 414, 418, 421, 424, 451, 502, 505, 508, 510, 599, 600,
            999,
        ] {
            assert_eq!(error_code_for_status(status), "UntrackedError", "{status}");
        }
    }

    #[test]
    fn every_table_row_is_classified() {
        for (status, code) in TABLE {
            let expected = match status {
                429 | 500..=599 => Outcome::Retry,
                _ => Outcome::Fail(code),
            };
            assert_eq!(classify(status), expected, "{status}");
        }
    }

    #[test]
    fn success_is_delivered() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(classify(status), Outcome::Delivered);
        }
    }

    #[test]
    fn timeouts_throttling_and_server_errors_are_retried() {
        for status in [408, 429, 500, 502, 503, 505, 511, 599] {
            assert_eq!(classify(status), Outcome::Retry, "{status}");
        }
    }

    #[test]
    fn informational_redirects_and_odd_statuses_fail() {
        for status in [100, 101, 199, 300, 301, 304, 307, 399, 418, 0, 600, 999] {
            assert_eq!(classify(status), Outcome::Fail("UntrackedError"), "{status}");
        }
        assert_eq!(classify(400), Outcome::Fail("BadRequest"));
    }

    #[test]
    fn metric_labels_match_the_contract() {
        assert_eq!(classify(200).metric_label(), "delivered");
        assert_eq!(classify(503).metric_label(), "retry");
        assert_eq!(classify(404).metric_label(), "failed");
    }
}
