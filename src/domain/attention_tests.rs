//! The attention rules, one at a time, and their order.

use super::*;

const GIB: u64 = 1024 * 1024 * 1024;

fn calm() -> Facts {
    Facts {
        now: 1_700_000_000_000,
        esight: EsightFacts::Reachable,
        waiting: 0,
        oldest_pending_at: None,
        paused: None,
        failures: vec![],
        invalid: vec![],
        free_disk_bytes: Some(80 * GIB),
        min_free_bytes: GIB,
        db_bytes: 10 * 1024 * 1024,
        max_db_bytes: 0,
    }
}

fn codes(items: &[Item]) -> Vec<&'static str> {
    items.iter().map(|i| i.code).collect()
}

#[test]
fn calm_facts_need_nothing() {
    assert!(assess(&calm()).is_empty());
}

#[test]
fn esight_not_configured_names_the_missing_keys_and_their_variables() {
    let f = Facts {
        esight: EsightFacts::NotConfigured { missing: vec!["token_url", "post_password"] },
        ..calm()
    };
    let items = assess(&f);
    assert_eq!(codes(&items), ["esight_not_configured"]);
    let i = &items[0];
    assert_eq!(i.severity, Severity::Warning, "nothing waits yet");
    assert!(i.fix.contains("token_url, post_password"), "{}", i.fix);
    assert!(i.fix.contains("ENERGYLOAD_ESIGHT_TOKEN_URL"), "{}", i.fix);
    assert_eq!(i.fields["missing_keys"], json!(["token_url", "post_password"]));
}

#[test]
fn esight_not_configured_is_critical_once_messages_wait() {
    let f = Facts {
        esight: EsightFacts::NotConfigured { missing: ESIGHT_KEYS.to_vec() },
        waiting: 3,
        oldest_pending_at: Some(1_699_999_000_000),
        ..calm()
    };
    let i = &assess(&f)[0];
    assert_eq!(i.severity, Severity::Critical);
    assert!(i.detail.contains("3 messages are waiting"), "{}", i.detail);
    assert_eq!(i.fields["count"], 3);
}

#[test]
fn esight_unreachable_says_since_when_the_last_error_and_the_last_success() {
    let f = Facts {
        esight: EsightFacts::Unreachable {
            since: Some(1_700_000_000_000),
            last_error: Some("connection refused".into()),
            last_success: Some(1_699_999_000_000),
        },
        ..calm()
    };
    let items = assess(&f);
    assert_eq!(codes(&items), ["esight_unreachable"]);
    let i = &items[0];
    assert_eq!(i.severity, Severity::Critical);
    assert_eq!(i.fields["since"], "2023-11-14T22:13:20.000Z");
    assert_eq!(i.fields["last_error"], "connection refused");
    assert_eq!(i.fields["last_success"], "2023-11-14T21:56:40.000Z");
    assert!(i.title.contains("since 2023-11-14T22:13:20.000Z"), "{}", i.title);
}

#[test]
fn esight_unreachable_without_any_success_says_so() {
    let f = Facts {
        esight: EsightFacts::Unreachable { since: None, last_error: None, last_success: None },
        ..calm()
    };
    let i = &assess(&f)[0];
    assert!(i.detail.contains("no success since start"), "{}", i.detail);
    assert_eq!(i.fields["last_success"], Value::Null);
}

#[test]
fn delivery_paused_says_by_whom_and_since() {
    let f = Facts {
        paused: Some(PausedFacts { by: Some("alice".into()), since: Some(1_700_000_000_000) }),
        ..calm()
    };
    let items = assess(&f);
    assert_eq!(codes(&items), ["delivery_paused"]);
    assert_eq!(items[0].severity, Severity::Warning);
    assert_eq!(items[0].fields["by"], "alice");
    assert!(items[0].title.contains("by alice since 2023-11-14"), "{}", items[0].title);
    assert!(items[0].fix.contains("Resume"), "{}", items[0].fix);
}

fn group(code: &str, count: i64, meters: i64) -> FailureFacts {
    FailureFacts {
        code: code.into(),
        count,
        newest_id: 42,
        newest_at: 1_700_000_000_000,
        newest_error: Some("meter LU_VPC_Elec_99 is not in eSight's catalog".into()),
        meters,
        meter_id: "LU_VPC_Elec_99".into(),
    }
}

#[test]
fn failing_messages_are_one_item_per_cause_with_count_reason_and_newest() {
    let f = Facts { failures: vec![group("NoMeterId", 39, 1), group("BadRequest", 2, 2)], ..calm() };
    let items = assess(&f);
    assert_eq!(codes(&items), ["failing_messages", "failing_messages"]);
    assert_eq!(items[0].title, "39 × meter LU_VPC_Elec_99 is not in eSight's catalog");
    assert_eq!(items[0].fields["cause"], "NoMeterId");
    assert_eq!(items[0].fields["count"], 39);
    assert_eq!(items[0].fields["newest"], "2023-11-14T22:13:20.000Z");
    assert_eq!(items[0].fields["retry"], "after_fix");
    assert_eq!(items[1].fields["retry"], "fails_again");
    assert!(items[1].title.starts_with("2 × eSight refused"), "{}", items[1].title);
}

#[test]
fn a_meter_group_over_several_meters_says_how_many() {
    let f = Facts { failures: vec![group("NoMeterId", 5, 3)], ..calm() };
    assert_eq!(assess(&f)[0].title, "5 × 3 meters are not in eSight's catalog (newest: LU_VPC_Elec_99)");
}

#[test]
fn exhausted_retries_say_a_retry_can_succeed() {
    let f = Facts { failures: vec![group("RetriesExhausted", 7, 2)], ..calm() };
    let i = &assess(&f)[0];
    assert_eq!(i.fields["retry"], "can_succeed");
    assert_eq!(i.fields["retry_note"], Value::Null);
}

#[test]
fn invalid_traffic_names_the_code_and_the_api_key() {
    let f = Facts {
        invalid: vec![InvalidFacts {
            code: "NoMeterIDInJson".into(),
            api_key_id: Some("k-1".into()),
            api_key_name: Some("producer-a".into()),
            count: 87,
            last_at: 1_700_000_000_000,
        }],
        ..calm()
    };
    let items = assess(&f);
    assert_eq!(codes(&items), ["invalid_traffic"]);
    let i = &items[0];
    assert_eq!(i.severity, Severity::Info);
    assert!(i.title.starts_with("87 × invalid in the last hour from API key \"producer-a\""), "{}", i.title);
    assert_eq!(i.fields["cause"], "NoMeterIDInJson");
    assert_eq!(i.fields["api_key_id"], "k-1");
    assert!(!i.title.contains("rejected"), "\"rejected\" is eSight's word");
}

#[test]
fn invalid_traffic_without_a_key_says_so() {
    let f = Facts {
        invalid: vec![InvalidFacts {
            code: "InvalidJson".into(),
            api_key_id: None,
            api_key_name: None,
            count: 1,
            last_at: 0,
        }],
        ..calm()
    };
    assert!(assess(&f)[0].title.contains("callers without an API key"));
}

#[test]
fn disk_below_the_floor_is_critical_and_near_it_a_warning() {
    let below = Facts { free_disk_bytes: Some(GIB / 2), ..calm() };
    let i = &assess(&below)[0];
    assert_eq!((i.code, i.severity), ("disk_near_cap", Severity::Critical));
    assert!(i.title.contains("512.0 MiB free"), "{}", i.title);
    let near = Facts { free_disk_bytes: Some(GIB + GIB / 2), ..calm() };
    assert_eq!(assess(&near)[0].severity, Severity::Warning);
    let fine = Facts { free_disk_bytes: Some(2 * GIB), ..calm() };
    assert!(assess(&fine).is_empty(), "twice the floor is fine");
    let unreadable = Facts { free_disk_bytes: None, ..calm() };
    assert_eq!(assess(&unreadable)[0].severity, Severity::Critical);
}

#[test]
fn database_over_80_percent_of_its_cap_is_a_warning_and_at_the_cap_critical() {
    let near = Facts { db_bytes: 81, max_db_bytes: 100, ..calm() };
    let i = &assess(&near)[0];
    assert_eq!((i.code, i.severity), ("database_near_cap", Severity::Warning));
    assert_eq!(i.fields["percent"], 81);
    let at = Facts { db_bytes: 100, max_db_bytes: 100, ..calm() };
    assert_eq!(assess(&at)[0].severity, Severity::Critical);
    assert!(assess(&Facts { db_bytes: 80, max_db_bytes: 100, ..calm() }).is_empty(), "80 % is not near");
    assert!(assess(&Facts { db_bytes: u64::MAX, max_db_bytes: 0, ..calm() }).is_empty(), "no cap");
}

#[test]
fn most_serious_first_then_in_rule_order() {
    let f = Facts {
        esight: EsightFacts::Unreachable { since: None, last_error: None, last_success: None },
        paused: Some(PausedFacts { by: None, since: None }),
        failures: vec![group("NoMeterId", 1, 1)],
        invalid: vec![InvalidFacts {
            code: "InvalidJson".into(),
            api_key_id: None,
            api_key_name: None,
            count: 1,
            last_at: 0,
        }],
        db_bytes: 100,
        max_db_bytes: 100,
        ..calm()
    };
    assert_eq!(
        codes(&assess(&f)),
        ["esight_unreachable", "database_near_cap", "delivery_paused", "failing_messages", "invalid_traffic"]
    );
}

#[test]
fn sizes_read_like_people_write_them() {
    assert_eq!(human_bytes(0), "0 bytes");
    assert_eq!(human_bytes(1023), "1023 bytes");
    assert_eq!(human_bytes(1024), "1.0 KiB");
    assert_eq!(human_bytes(83_914_735_616), "78.2 GiB");
}
