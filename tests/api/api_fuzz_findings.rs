//! What schemathesis found between `assets/openapi.json` and the server
//! (issue 11), pinned through the real server: list filters the document
//! types as `date-time`, `integer`, an enum or a digit cursor are refused with
//! 400 in the contract's shape when they are not that (also when present but
//! empty), and every cursor the document allows is accepted; the bulk retry's
//! body filters are read as sent (no query-string round trip that turns `+`
//! into a space) and a filter that is not a string is refused.

use serde_json::json;

use crate::common::spawn_app;

const LISTS_WITH_TIME: [&str; 3] =
    ["/api/v1/service/send/messages", "/api/v1/service/receive/errors", "/api/v1/management/audit"];
const LISTS: [&str; 6] = [
    "/api/v1/service/send/messages",
    "/api/v1/service/receive/errors",
    "/api/v1/service/receive/quarantine",
    "/api/v1/management/users",
    "/api/v1/management/audit",
    "/api/v1/management/apikeys",
];

#[test]
fn a_time_filter_that_is_not_rfc_3339_gets_400_also_when_empty() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    for list in LISTS_WITH_TIME {
        for bad in ["until=", "since=", "until=yesterday", "since=2026-13-01T00:00:00Z", "until=2026-01-01"] {
            let r = app.authed("GET", &format!("{list}?{bad}"), &key, &token, None);
            r.assert_error(400, "BadRequest");
        }
        // The way around it: the same names with valid values are accepted.
        let ok = "since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00.5%2B01:27";
        assert_eq!(app.authed("GET", &format!("{list}?{ok}"), &key, &token, None).status, 200, "{list}");
    }
}

#[test]
fn limit_and_status_present_but_empty_or_out_of_range_get_400() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    for list in LISTS {
        if list.ends_with("apikeys") {
            continue; // not paged by the document
        }
        for bad in ["limit=", "limit=0", "limit=501", "limit=1.5", "cursor=", "cursor=x", "cursor=-1"] {
            let r = app.authed("GET", &format!("{list}?{bad}"), &key, &token, None);
            r.assert_error(400, "BadRequest");
        }
    }
    for bad in ["status=", "status=nope"] {
        let r = app.authed("GET", &format!("/api/v1/service/send/messages?{bad}"), &key, &token, None);
        r.assert_error(400, "BadRequest");
    }
    for bad in ["format=", "format=xml", "format=csv&limit=0", "format=csv&limit=", "format=csv&cursor=x"] {
        let r = app.authed("GET", &format!("/api/v1/management/audit?{bad}"), &key, &token, None);
        r.assert_error(400, "BadRequest");
    }
}

#[test]
fn every_cursor_the_document_allows_is_accepted() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    for list in LISTS {
        if list.ends_with("apikeys") {
            continue;
        }
        // Up to 19 digits, leading zeros included; beyond i64 it is past every id.
        for cursor in ["0", "007", "9223372036854775807", "9999999999999999999"] {
            let r = app.authed("GET", &format!("{list}?cursor={cursor}&limit=2"), &key, &token, None);
            assert_eq!(r.status, 200, "{list}?cursor={cursor}: {}", r.text());
        }
    }
}

#[test]
fn bulk_retry_reads_body_filters_as_sent_and_refuses_non_strings() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let path = "/api/v1/management/messages/retry";
    // A `+` offset used to become a space on the way through a query string.
    let plus = json!({"until": "2999-05-20T15:09:49.90+01:27", "since": "0674-05-20T15:09:49Z"});
    let r = app.authed("POST", path, &key, &token, Some(&plus));
    assert_eq!(r.status, 200, "{}", r.text());
    for bad in [
        json!({"until": ""}),
        json!({"until": 5}),
        json!({"since": null}),
        json!({"status": ["failed"]}),
        json!({"meter_id": 7}),
        json!({"status": "pending"}),
    ] {
        app.authed("POST", path, &key, &token, Some(&bad)).assert_error(400, "BadRequest");
    }
    // Unknown keys are ignored, whatever their type (the document's additionalProperties).
    let r = app.authed("POST", path, &key, &token, Some(&json!({"comment": 5, "status": "failed"})));
    assert_eq!(r.status, 200, "{}", r.text());
}
