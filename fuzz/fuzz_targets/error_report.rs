//! The eSight error-report parser (`domain::error_report::ErrorReport::parse`)
//! on arbitrary bytes.
//!
//! Properties beyond "no panic":
//! - a refusal carries one of the two contract codes;
//! - an accepted report has a non-blank `_id` and `header.messageId`, and its
//!   correlated id, if any, is the non-empty tail of the messageId after its
//!   last `_`;
//! - a report rebuilt from the parsed fields (as JSON) parses to the same
//!   report, so nothing the parser keeps depends on how it was spelt.
#![no_main]

use energyload::domain::error_report::{ErrorReport, ReportCode};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let report = match ErrorReport::parse(data) {
        Ok(report) => report,
        Err(e) => {
            assert!(matches!(e.code, ReportCode::EmptyJson | ReportCode::InvalidJsonReceived));
            return;
        }
    };
    assert!(!report.esight_id().trim().is_empty());
    assert!(!report.message_id().trim().is_empty());
    if let Some(id) = report.correlated_id() {
        assert!(!id.is_empty() && !id.contains('_'));
        assert!(report.message_id().ends_with(&format!("_{id}")));
    }

    // Rebuild: strings stay strings; `value` is raw JSON text already. A
    // value serde_json cannot hold as a `Value` (such as `1e400`) is kept as
    // text but cannot be rebuilt this way: nothing to compare then.
    let values: Option<Vec<Option<Value>>> = report
        .errors()
        .iter()
        .map(|e| match e.value() {
            Some(raw) => serde_json::from_str(raw).ok().map(Some),
            None => Some(None),
        })
        .collect();
    let Some(values) = values else { return };
    let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::String(s.to_owned()));
    let errors: Vec<Value> = report
        .errors()
        .iter()
        .zip(&values)
        .map(|(e, value)| {
            let mut item = json!({
                "errorCode": text(e.error_code()),
                "errorMessage": text(e.error_message()),
                "datapointKey": text(e.datapoint_key()),
                "tsIso8601": text(e.ts()),
            });
            if let Some(value) = value {
                item["value"] = value.clone();
            }
            item
        })
        .collect();
    let rebuilt = json!({
        "_id": report.esight_id(),
        "header": {"messageId": report.message_id(), "received_tsIso8601": text(report.received_ts())},
        "errors": errors,
    });
    let again = ErrorReport::parse(rebuilt.to_string().as_bytes()).expect("a rebuilt report parses");
    assert_eq!(again.esight_id(), report.esight_id());
    assert_eq!(again.message_id(), report.message_id());
    assert_eq!(again.received_ts(), report.received_ts());
    assert_eq!(again.errors().len(), report.errors().len());
    for ((a, b), value) in again.errors().iter().zip(report.errors()).zip(&values) {
        assert_eq!(a.error_code(), b.error_code());
        assert_eq!(a.error_message(), b.error_message());
        assert_eq!(a.datapoint_key(), b.datapoint_key());
        assert_eq!(a.ts(), b.ts());
        // `value` is kept as its raw text: exactly what was written.
        assert_eq!(a.value(), value.as_ref().map(Value::to_string).as_deref());
    }
});
