//! Unit tests for ingest bodies: single messages, arrays, indexes, limits.

use bytes::Bytes;

use super::*;

const VALID_1: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/messages/valid-1.json"));
const VALID_3: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/messages/valid-3.json"));
const NO_SITE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/messages/invalid-NoSiteIDInJson.json"
));

fn text(raw: &[u8]) -> &str {
    std::str::from_utf8(raw).unwrap()
}

fn codes(items: &[BatchItem]) -> Vec<(usize, Option<ValidationCode>)> {
    items.iter().map(|(i, r)| (*i, r.as_ref().err().map(|e| e.code))).collect()
}

#[test]
fn a_single_message_is_index_zero_with_the_whole_body() {
    let body = Bytes::from_static(VALID_1);
    let items = parse_batch(body.clone()).unwrap();
    assert_eq!(codes(&items), [(0, None)]);
    let message = items[0].1.as_ref().unwrap();
    assert_eq!(message.raw(), &body);
    assert_eq!(message.raw().as_ptr(), body.as_ptr(), "shares the body buffer");
}

#[test]
fn a_single_invalid_message_is_a_rejected_item() {
    let items = parse_batch(Bytes::from_static(NO_SITE)).unwrap();
    assert_eq!(codes(&items), [(0, Some(ValidationCode::NoSiteIDInJson))]);
    for body in ["42", "\"s\"", "null", "{}", " {\"messageType\":\"c\"} "] {
        let items = parse_batch(Bytes::from(body)).unwrap();
        assert_eq!(codes(&items), [(0, Some(ValidationCode::InvalidJson))], "{body}");
    }
}

#[test]
fn mixed_array_keeps_indexes_and_item_bytes() {
    let body = format!(
        "[\n  {},\n  42,\n  {} ,{},\n  {{\"messageType\":\"c\"}}\n]\n",
        text(VALID_1),
        text(NO_SITE),
        text(VALID_3)
    );
    let body = Bytes::from(body);
    let items = parse_batch(body.clone()).unwrap();
    assert_eq!(
        codes(&items),
        [
            (0, None),
            (1, Some(ValidationCode::InvalidJson)),
            (2, Some(ValidationCode::NoSiteIDInJson)),
            (3, None),
            (4, Some(ValidationCode::InvalidJson)),
        ]
    );
    let first = items[0].1.as_ref().unwrap();
    assert_eq!(first.raw().as_ref(), VALID_1, "the exact span, no surrounding whitespace or comma");
    assert_eq!(first.message_id(), "electricity_lu_20210131T0000");
    let fourth = items[3].1.as_ref().unwrap();
    assert_eq!(fourth.raw().as_ref(), VALID_3);
    let offset = fourth.raw().as_ptr() as usize - body.as_ptr() as usize;
    assert_eq!(&body[offset..offset + VALID_3.len()], VALID_3, "a slice of the body, not a copy");
    assert_eq!(fourth.content_hash(), content_hash(VALID_3));
}

#[test]
fn empty_and_nested_arrays() {
    assert!(parse_batch(Bytes::from_static(b" [ ] ")).unwrap().is_empty());
    let items = parse_batch(Bytes::from_static(b"[[]]")).unwrap();
    assert_eq!(codes(&items), [(0, Some(ValidationCode::InvalidJson))]);
}

#[test]
fn a_body_that_is_not_json_is_refused_whole() {
    for body in ["{", "[", "[1,", "[1] x", "{\"a\":1} x", "nope", "[{\"a\":tru}]", "\u{feff}{}"] {
        let err = parse_batch(Bytes::from(body)).unwrap_err();
        assert!(matches!(err, BatchError::InvalidJson { .. }), "{body}: {err:?}");
        assert_eq!(err.code(), "InvalidJson");
    }
    let err = parse_batch(Bytes::from_static(b"[\n1,\n2 3]")).unwrap_err();
    assert_eq!(err, BatchError::InvalidJson { line: 3, column: 3 });
}

/// An empty body (`curl -d @missing-file` sends one) is refused whole with
/// the contract's code, and a message that says it was empty rather than
/// pointing at "line 1, column 0".
#[test]
fn an_empty_body_is_refused_as_empty() {
    for body in ["", "  ", "\n\r\t "] {
        let err = parse_batch(Bytes::from(body)).unwrap_err();
        assert_eq!(err, BatchError::Empty, "{body:?}");
        assert_eq!(err.code(), "InvalidJson");
        assert!(err.to_string().starts_with("the body is empty"), "{err}");
    }
    for body in [" x", "\u{a0}"] {
        assert!(
            matches!(parse_batch(Bytes::from(body)).unwrap_err(), BatchError::InvalidJson { .. }),
            "{body:?}"
        );
    }
}

#[test]
fn at_most_a_thousand_items() {
    let item = text(VALID_1);
    let many = |n: usize| Bytes::from(format!("[{}]", vec![item; n].join(",")));
    let items = parse_batch(many(MAX_BATCH_ITEMS)).unwrap();
    assert_eq!(items.len(), 1000);
    assert!(items.iter().enumerate().all(|(i, (index, r))| i == *index && r.is_ok()));
    let err = parse_batch(many(MAX_BATCH_ITEMS + 1)).unwrap_err();
    assert_eq!(err, BatchError::TooManyItems);
    assert_eq!(err.code(), "BadRequest");
    let truncated = Bytes::from(format!("[{}", vec!["1"; 1001].join(",")));
    assert_eq!(parse_batch(truncated).unwrap_err(), BatchError::TooManyItems, "stops counting early");
}
