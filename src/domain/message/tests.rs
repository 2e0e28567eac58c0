//! Unit tests for message validation: the sample files, each rule's edge
//! cases and the order in which codes win.

use super::*;
use ValidationCode::*;

mod rules;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/messages/", $name))
    };
}

/// A valid compact message whose parts can be swapped by the tests below.
fn msg(header: &str, gateway_data: &str) -> String {
    format!(r#"{{"messageType":"consumption","header":{header},"gatewayData":{gateway_data}}}"#)
}

const HEADER: &str = r#"{"messageId":"m1","gatewayTypeUrn":"urn:esight:assets:edm:lu:electricity","gatewayUrn":"urn:esight:gateways:edm:lu:VPC:LU_VPC_Elec_1"}"#;
const DATA: &str =
    r#"{"datapointValues":[{"datapointKey":"k","value":1,"tsIso8601":"2021-01-31T00:15:00Z"}]}"#;

fn header(message_id: &str, type_urn: &str, urn: &str) -> String {
    format!(r#"{{"messageId":{message_id},"gatewayTypeUrn":{type_urn},"gatewayUrn":{urn}}}"#)
}

fn datapoint(item: &str) -> String {
    format!(r#"{{"datapointValues":[{item}]}}"#)
}

fn code_of(raw: &str) -> ValidationCode {
    Message::parse(raw.as_bytes()).expect_err(raw).code
}

#[test]
fn each_invalid_sample_fails_with_its_code() {
    let samples: [(&[u8], ValidationCode); 7] = [
        (fixture!("invalid-InvalidJson.json"), InvalidJson),
        (fixture!("invalid-NoDatapointValues.json"), NoDatapointValues),
        (fixture!("invalid-NoGatewayTypeUrn.json"), NoGatewayTypeUrn),
        (fixture!("invalid-NoGatewayUrn.json"), NoGatewayUrn),
        (fixture!("invalid-NoLocalMarket.json"), NoLocalMarket),
        (fixture!("invalid-NoMessageId.json"), NoMessageId),
        (fixture!("invalid-NoSiteIDInJson.json"), NoSiteIDInJson),
    ];
    for (raw, code) in samples {
        let err = Message::parse(raw).unwrap_err();
        assert_eq!(err.code, code, "{}", err.message);
        assert_eq!(err.code.as_str(), format!("{code:?}"));
    }
}

#[test]
fn valid_samples_parse_with_their_fields() {
    let cases: [(&[u8], [&str; 7], usize); 5] = [
        (
            fixture!("valid-1.json"),
            [
                "electricity_lu_20210131T0000",
                "lu",
                "electricity",
                "VPC",
                "LU_VPC_Elec_1",
                "urn:esight:assets:edm:lu:electricity",
                "urn:esight:gateways:edm:lu:VPC:LU_VPC_Elec_1",
            ],
            4,
        ),
        (
            fixture!("valid-2.json"),
            [
                "electricity_hu_20210131T0000",
                "hu",
                "electricity",
                "1001",
                "HU_1001_Elec_2",
                "urn:esight:assets:edm:hu:electricity",
                "urn:esight:gateways:edm:hu:1001:HU_1001_Elec_2",
            ],
            96,
        ),
        (
            fixture!("valid-3.json"),
            [
                "temperature_lu_20210131T0000",
                "lu",
                "temperature",
                "VPC",
                "LU_VPC_Temp_7",
                "urn:esight:assets:edm:lu:temperature",
                "urn:esight:gateways:edm:lu:VPC:LU_VPC_Temp_7",
            ],
            12,
        ),
        (
            fixture!("unknown-meter.json"),
            [
                "electricity_lu_x1",
                "lu",
                "electricity",
                "VPC",
                "LU_VPC_Elec_99",
                "urn:esight:assets:edm:lu:electricity",
                "urn:esight:gateways:edm:lu:VPC:LU_VPC_Elec_99",
            ],
            4,
        ),
        (
            fixture!("unknown-site.json"),
            [
                "electricity_de_x2",
                "de",
                "electricity",
                "BER",
                "LU_VPC_Elec_2",
                "urn:esight:assets:edm:de:electricity",
                "urn:esight:gateways:edm:de:BER:LU_VPC_Elec_2",
            ],
            4,
        ),
    ];
    for (raw, [id, market, feed, site, meter, type_urn, urn], count) in cases {
        let m = Message::parse(raw).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(m.message_id(), id);
        assert_eq!(m.local_market(), market);
        assert_eq!(m.data_feed_type(), feed);
        assert_eq!(m.site_id(), site);
        assert_eq!(m.meter_id(), meter);
        assert_eq!(m.gateway_type_urn(), type_urn);
        assert_eq!(m.gateway_urn(), urn);
        assert_eq!(m.datapoint_count(), count, "{id}");
        assert_eq!(m.raw().as_ref(), raw);
        assert_eq!(Message::from_bytes(Bytes::copy_from_slice(raw)).unwrap(), m);
        assert_eq!(m.content_hash(), content_hash(raw));
    }
}

#[test]
fn the_first_failing_check_wins() {
    let no_data = r#"{"datapointValues":[]}"#;
    let bad_urns = header("\"\"", "\"urn:x\"", "\"M\"");
    // Every check fails: InvalidJson wins even over header problems.
    assert_eq!(code_of(r#"{"header":{},"gatewayData":{}}"#), InvalidJson);
    assert_eq!(code_of(&format!(r#"{{"messageType":"c","header":{bad_urns}}}"#)), InvalidJson);
    // Each later check only shows once the earlier ones pass.
    assert_eq!(code_of(&msg(r#"{"gatewayUrn":"x"}"#, no_data)), NoGatewayTypeUrn);
    assert_eq!(code_of(&msg(&bad_urns, no_data)), NoLocalMarket);
    let h = header("\"\"", "\"urn:esight:assets:edm:lu\"", "\"M\"");
    assert_eq!(code_of(&msg(&h, no_data)), NoDataFeedType);
    let h = header("\"\"", "\"urn:esight:assets:edm:lu:e\"", "null");
    assert_eq!(code_of(&msg(&h, no_data)), NoGatewayUrn);
    let h = header("\"\"", "\"urn:esight:assets:edm:lu:e\"", "\"M\"");
    assert_eq!(code_of(&msg(&h, no_data)), NoSiteIDInJson);
    let h = header("\"\"", "\"urn:esight:assets:edm:lu:e\"", "\"S:\"");
    assert_eq!(code_of(&msg(&h, no_data)), NoMeterIDInJson);
    let h = header("\"\"", "\"urn:esight:assets:edm:lu:e\"", "\"S:M\"");
    assert_eq!(code_of(&msg(&h, no_data)), NoMessageId);
    let h = header("\"id\"", "\"urn:esight:assets:edm:lu:e\"", "\"S:M\"");
    assert_eq!(code_of(&msg(&h, no_data)), NoDatapointValues);
    assert!(Message::parse(msg(&h, DATA).as_bytes()).is_ok());
}

#[test]
fn field_order_in_the_document_does_not_change_the_winner() {
    let raw = r#"{"gatewayData":{"datapointValues":7},"header":{"gatewayUrn":"x","messageId":"","gatewayTypeUrn":"urn:esight:assets:edm:lu:e"},"messageType":"c"}"#;
    assert_eq!(code_of(raw), NoSiteIDInJson);
}

#[test]
fn invalid_json_cases() {
    for raw in [
        "",
        " ",
        "nul",
        "{",
        "{\"messageType\":\"c\",}",
        "[]",
        "42",
        "\"s\"",
        "null",
        &msg(HEADER, DATA).replace('}', "} x"),
        &msg(HEADER, DATA).replace("\"consumption\"", "1"),
        &msg(HEADER, DATA).replace("\"consumption\"", "null"),
        &msg(HEADER, DATA).replace("\"consumption\"", "[\"a\"]"),
        &msg("[]", DATA),
        &msg("\"h\"", DATA),
        &msg("null", DATA),
        &msg(HEADER, "[]"),
        &msg(HEADER, "1e400"),
        &msg(HEADER, "null"),
        &msg(&HEADER.replace("\"messageId\":\"m1\"", "\"messageId\":\"m1\",\"messageId\":\"m2\""), DATA),
        &format!(r#"{{"messageType":"a","messageType":"b","header":{HEADER},"gatewayData":{DATA}}}"#),
        &format!(r#"["consumption",{HEADER},{DATA}]"#),
    ] {
        assert_eq!(code_of(raw), InvalidJson, "{raw}");
    }
    let err = Message::parse(b"{\n  \"a\": tru }").unwrap_err();
    assert!(!err.message.contains("tru"), "{}", err.message);
}

#[test]
fn empty_message_type_and_unknown_fields_are_accepted() {
    let raw = format!(
        r#"{{"extra":{{"deep":[1e400,-0,"\u00e9"]}},"messageType":"","header":{},"gatewayData":{},"z":null}}"#,
        HEADER.replace("{", r#"{"note":{"messageId":1},"#),
        DATA.replace("{\"datapointValues\"", "{\"unit\":\"kWh\",\"datapointValues\"")
    );
    let m = Message::parse(raw.as_bytes()).unwrap();
    assert_eq!((m.message_id(), m.datapoint_count()), ("m1", 1));
}

#[test]
fn codes_have_contract_spellings_in_order() {
    let names: Vec<_> = ValidationCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "InvalidJson",
            "NoGatewayTypeUrn",
            "NoLocalMarket",
            "NoDataFeedType",
            "NoGatewayUrn",
            "NoSiteIDInJson",
            "NoMeterIDInJson",
            "NoMessageId",
            "NoDatapointValues",
        ]
    );
    let err = ValidationError::new(NoMessageId, "header.messageId must be a non-empty string");
    assert_eq!(err.to_string(), "NoMessageId: header.messageId must be a non-empty string");
}

#[test]
fn rewrite_of_a_parsed_sample_changes_only_the_message_id() {
    let raw = fixture!("valid-2.json");
    let m = Message::parse(raw).unwrap();
    let id = delivery_message_id(m.message_id(), "0190b2c4");
    let out = rewrite_message_id(m.raw(), &id).unwrap();
    let text = std::str::from_utf8(raw).unwrap();
    assert_eq!(out, text.replacen("electricity_hu_20210131T0000", &id, 1).into_bytes());
    let again = Message::parse(&out).unwrap();
    assert_eq!(again.message_id(), "electricity_hu_20210131T0000_0190b2c4");
    assert_eq!(again.datapoint_count(), 96);
}

/// Speed check that asserts no timing: it runs a few rounds in every test
/// run; for figures run
/// `PARSE_SPEED_ROUNDS=20000 cargo test --release --lib parse_speed -- --nocapture`.
#[test]
fn parse_speed() {
    let raw = Bytes::from_static(fixture!("valid-2.json"));
    let compact = serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&raw).unwrap()).unwrap();
    let compact = Bytes::from(compact);
    let rounds: u32 = std::env::var("PARSE_SPEED_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    for (name, body) in [("pretty", &raw), ("compact", &compact)] {
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(Message::from_bytes(std::hint::black_box(body.clone())).unwrap());
        }
        let parse = start.elapsed() / rounds;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(content_hash(std::hint::black_box(body)));
        }
        let hash = start.elapsed() / rounds;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(
                serde_json::from_slice::<serde_json::Value>(std::hint::black_box(body)).unwrap(),
            );
        }
        let value = start.elapsed() / rounds;
        println!(
            "{name} {} bytes: parse {parse:?}, content_hash {hash:?}, serde_json::Value {value:?}",
            body.len()
        );
    }
}
