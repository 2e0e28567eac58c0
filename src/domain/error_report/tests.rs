//! Unit tests for eSight error reports.

use super::*;

const TEMPLATE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/errorjson/report-template.json"));
const INVALID: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/errorjson/invalid.json"));

fn code_of(raw: &str) -> ReportCode {
    ErrorReport::parse(raw.as_bytes()).expect_err(raw).code
}

#[test]
fn the_template_parses_and_correlates() {
    let raw = TEMPLATE.replace("<id>", "0190b2c4-7d1e-7000-8000-000000000001");
    let report = ErrorReport::parse(raw.as_bytes()).unwrap();
    assert_eq!(report.esight_id(), "64f0c2a9e1b2c3d4e5f60718");
    assert_eq!(report.message_id(), "electricity_lu_20210131T0000_0190b2c4-7d1e-7000-8000-000000000001");
    assert_eq!(report.correlated_id(), Some("0190b2c4-7d1e-7000-8000-000000000001"));
    assert_eq!(report.received_ts(), Some("2021-01-31T00:20:00Z"));
    assert_eq!(report.errors().len(), 1);
    let error = &report.errors()[0];
    assert_eq!(error.error_code(), Some("E102"));
    assert_eq!(error.error_message(), Some("value out of range"));
    assert_eq!(error.datapoint_key(), Some("activeEnergyImport"));
    assert_eq!(error.value(), Some("10.25"));
    assert_eq!(error.ts(), Some("2021-01-31T00:15:00Z"));
}

#[test]
fn the_template_placeholder_itself_is_the_raw_suffix() {
    let report = ErrorReport::parse(TEMPLATE.as_bytes()).unwrap();
    assert_eq!(report.correlated_id(), Some("<id>"));
}

#[test]
fn the_invalid_sample_is_invalid_json_received() {
    let err = ErrorReport::parse(INVALID).unwrap_err();
    assert_eq!(err.code, ReportCode::InvalidJsonReceived);
    assert_eq!(err.code.as_str(), "InvalidJsonReceived");
}

#[test]
fn empty_reports() {
    for raw in ["", "  \n", "null", " null ", "{}", "{ \n }"] {
        assert_eq!(code_of(raw), ReportCode::EmptyJson, "{raw:?}");
    }
    assert_eq!(ReportCode::EmptyJson.as_str(), "EmptyJson");
}

#[test]
fn malformed_reports() {
    let ok_header = r#"{"messageId":"m_1"}"#;
    let report = |id: &str, header: &str, errors: &str| {
        format!(r#"{{"_id":{id},"header":{header},"errors":{errors}}}"#)
    };
    for raw in [
        "nope".to_owned(),
        "{".to_owned(),
        "[]".to_owned(),
        "[{}]".to_owned(),
        "\"x\"".to_owned(),
        "0".to_owned(),
        r#"{"a":1}"#.to_owned(),
        r#"{"_id":"x","header":{"messageId":"m_1"}}"#.to_owned(),
        r#"{"_id":"x","errors":[]}"#.to_owned(),
        r#"{"header":{"messageId":"m_1"},"errors":[]}"#.to_owned(),
        report("42", ok_header, "[]"),
        report("\"\"", ok_header, "[]"),
        report("\" \"", ok_header, "[]"),
        report("null", ok_header, "[]"),
        report("\"x\"", "\"h\"", "[]"),
        report("\"x\"", "[]", "[]"),
        report("\"x\"", "{}", "[]"),
        report("\"x\"", r#"{"messageId":7}"#, "[]"),
        report("\"x\"", r#"{"messageId":""}"#, "[]"),
        report("\"x\"", r#"{"messageId":"a","messageId":"b"}"#, "[]"),
        report("\"x\"", ok_header, "{}"),
        report("\"x\"", ok_header, "null"),
        report("\"x\"", ok_header, "[1]"),
        report("\"x\"", ok_header, "[{}, \"e\"]"),
        report("\"x\"", ok_header, r#"[{"errorCode":"a","errorCode":"b"}]"#),
        report("\"x\"", ok_header, "[]") + " trailing",
        report("\"x\"", ok_header, "[]").replacen('{', r#"{"_id":"y","#, 1),
    ] {
        assert_eq!(code_of(&raw), ReportCode::InvalidJsonReceived, "{raw}");
    }
    let err = ErrorReport::parse(br#"{"_id":"x","header":{"messageId":"m_1"},"errors":[{},"secret"]}"#)
        .unwrap_err();
    assert_eq!(err.message, "errors[1] must be an object");
}

#[test]
fn optional_fields_are_lenient() {
    let raw = r#"{"_id":"a\u0062c","extra":{"x":1e400},"header":{"messageId":"m_7","received_tsIso8601":1612051200},
        "errors":[{}, {"errorCode":102,"errorMessage":null,"datapointKey":["k"],"value":"12.5","tsIso8601":"not a time","more":1},
                  {"value":null}, {"value":1e400}]}"#;
    let report = ErrorReport::parse(raw.as_bytes()).unwrap();
    assert_eq!(report.esight_id(), "abc");
    assert_eq!(report.received_ts(), Some("1612051200"));
    let errors = report.errors();
    assert_eq!(errors.len(), 4);
    assert_eq!(
        (
            errors[0].error_code(),
            errors[0].error_message(),
            errors[0].datapoint_key(),
            errors[0].value(),
            errors[0].ts()
        ),
        (None, None, None, None, None)
    );
    assert_eq!(errors[1].error_code(), Some("102"));
    assert_eq!(errors[1].error_message(), None);
    assert_eq!(errors[1].datapoint_key(), Some("[\"k\"]"));
    assert_eq!(errors[1].value(), Some("\"12.5\""));
    assert_eq!(errors[1].ts(), Some("not a time"));
    assert_eq!(errors[2].value(), None, "null reads as absent");
    assert_eq!(errors[3].value(), Some("1e400"));
}

#[test]
fn an_empty_errors_array_is_accepted() {
    let report = ErrorReport::parse(br#"{"_id":"x","header":{"messageId":"m_1"},"errors":[]}"#).unwrap();
    assert!(report.errors().is_empty());
    assert_eq!(report.received_ts(), None);
}

#[test]
fn correlation_takes_the_suffix_after_the_last_underscore() {
    for (message_id, expected) in [
        ("electricity_lu_20210131T0015_42", Some("42")),
        ("a_b_c", Some("c")),
        ("_x", Some("x")),
        ("no-underscore", None),
        ("trailing_", None),
        ("m_ 7", Some(" 7")),
    ] {
        let raw = format!(r#"{{"_id":"x","header":{{"messageId":"{message_id}"}},"errors":[]}}"#);
        let report = ErrorReport::parse(raw.as_bytes()).unwrap();
        assert_eq!(report.correlated_id(), expected, "{message_id}");
    }
}

#[test]
fn errors_display_code_and_message() {
    let err = ErrorReport::parse(b"{}").unwrap_err();
    assert_eq!(err.to_string(), "EmptyJson: the report is empty");
}
