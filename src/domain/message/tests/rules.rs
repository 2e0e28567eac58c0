//! Unit tests for each validation rule's edge cases.

use super::*;

#[test]
fn gateway_type_urn_rules() {
    let with = |urn: &str| msg(&header("\"m\"", urn, "\"S:M\""), DATA);
    for (urn, code) in [
        ("1", NoGatewayTypeUrn),
        ("{}", NoGatewayTypeUrn),
        ("\"\"", NoGatewayTypeUrn),
        ("\"  \"", NoGatewayTypeUrn),
        ("\"urn:other:thing\"", NoLocalMarket),
        ("\"URN:ESIGHT:ASSETS:EDM:lu:e\"", NoLocalMarket),
        ("\"urn:esight:assets:edm\"", NoLocalMarket),
        ("\"urn:esight:assets:edm:\"", NoLocalMarket),
        ("\"urn:esight:assets:edm::e\"", NoLocalMarket),
        ("\"urn:esight:assets:edm: :e\"", NoLocalMarket),
        ("\"urn:esight:assets:edm:lu\"", NoDataFeedType),
        ("\"urn:esight:assets:edm:lu:\"", NoDataFeedType),
        ("\"urn:esight:assets:edm:lu: \"", NoDataFeedType),
        ("\"urn:esight:assets:edm:lu:e:x\"", NoDataFeedType),
    ] {
        assert_eq!(code_of(&with(urn)), code, "{urn}");
    }
    let m = Message::parse(with(r#""urn:esight:assets:edm:L\u0055:gas meter""#).as_bytes()).unwrap();
    assert_eq!((m.local_market(), m.data_feed_type()), ("LU", "gas meter"));
    assert_eq!(m.gateway_type_urn(), "urn:esight:assets:edm:LU:gas meter");
}

#[test]
fn gateway_urn_rules() {
    let with = |urn: &str| msg(&header("\"m\"", "\"urn:esight:assets:edm:lu:e\"", urn), DATA);
    for (urn, code) in [
        ("null", NoGatewayUrn),
        ("[\"a:b\"]", NoGatewayUrn),
        ("\"\"", NoGatewayUrn),
        ("\" \"", NoGatewayUrn),
        ("\"LU_VPC_Elec_1\"", NoSiteIDInJson),
        ("\":M\"", NoSiteIDInJson),
        ("\"a:b::M\"", NoSiteIDInJson),
        ("\"a: :M\"", NoSiteIDInJson),
        ("\":\"", NoSiteIDInJson),
        ("\"S:\"", NoMeterIDInJson),
        ("\"a:S: \"", NoMeterIDInJson),
    ] {
        assert_eq!(code_of(&with(urn)), code, "{urn}");
    }
    for (urn, site, meter) in [
        ("\"S:M\"", "S", "M"),
        ("\"urn:x:y:S:M\"", "S", "M"),
        ("\"::S:M\"", "S", "M"),
        ("\"a:S\\u003aM\"", "S", "M"),
        ("\"a:Sité:Mé\"", "Sité", "Mé"),
    ] {
        let m = Message::parse(with(urn).as_bytes()).unwrap();
        assert_eq!((m.site_id(), m.meter_id()), (site, meter), "{urn}");
    }
}

#[test]
fn message_id_rules() {
    let with = |id: &str| msg(&header(id, "\"urn:esight:assets:edm:lu:e\"", "\"S:M\""), DATA);
    for id in ["null", "1", "true", "{}", "[]", "\"\"", "\" \\t\""] {
        assert_eq!(code_of(&with(id)), NoMessageId, "{id}");
    }
    assert_eq!(
        code_of(&msg(
            r#"{"gatewayTypeUrn":"urn:esight:assets:edm:lu:e","gatewayUrn":"S:M","messageId":1e400}"#,
            DATA
        )),
        NoMessageId
    );
    let m = Message::parse(with(r#"" a\"b\\c\u00e9 ""#).as_bytes()).unwrap();
    assert_eq!(m.message_id(), " a\"b\\cé ");
}

#[test]
fn datapoint_rules() {
    let with = |data: &str| msg(HEADER, data);
    let ts = r#""tsIso8601":"2021-01-31T00:15:00Z""#;
    for data in [
        "{}".to_owned(),
        r#"{"datapointValues":null}"#.to_owned(),
        r#"{"datapointValues":{}}"#.to_owned(),
        r#"{"datapointValues":"x"}"#.to_owned(),
        r#"{"datapointValues":1e400}"#.to_owned(),
        r#"{"datapointValues":[]}"#.to_owned(),
        datapoint("1"),
        datapoint("1e400"),
        datapoint("[]"),
        datapoint("null"),
        datapoint(&format!(r#"{{"value":1,{ts}}}"#)),
        datapoint(&format!(r#"{{"datapointKey":1,"value":1,{ts}}}"#)),
        datapoint(&format!(r#"{{"datapointKey":"","value":1,{ts}}}"#)),
        datapoint(&format!(r#"{{"datapointKey":"k",{ts}}}"#)),
        datapoint(&format!(r#"{{"datapointKey":"k","value":null,{ts}}}"#)),
        datapoint(r#"{"datapointKey":"k","value":1}"#),
        datapoint(r#"{"datapointKey":"k","value":1,"tsIso8601":1612051200}"#),
        datapoint(r#"{"datapointKey":"k","value":1,"tsIso8601":"2021-01-31"}"#),
        datapoint(r#"{"datapointKey":"k","value":1,"tsIso8601":"2021-01-31T00:15:00"}"#),
        datapoint(r#"{"datapointKey":"k","value":1,"tsIso8601":"2021-02-30T00:15:00Z"}"#),
        datapoint(&format!(r#"{{"datapointKey":"k","datapointKey":"j","value":1,{ts}}}"#)),
        datapoint(&format!(r#"{{"datapointKey":"k","value":1,{ts}}},7"#)),
    ] {
        assert_eq!(code_of(&with(&data)), NoDatapointValues, "{data}");
    }
    for value in ["0", "-0", "10.0", "1e400", "\"12.5\"", "true", "[1]", "{\"a\":null}"] {
        let data = datapoint(&format!(r#"{{"datapointKey":"k","value":{value},{ts},"q":1e400}}"#));
        assert!(Message::parse(with(&data).as_bytes()).is_ok(), "{value}");
    }
    for ts in ["2021-01-31T00:15:00.123+01:00", "2021-01-31t00:15:00z", r#"2021-01-31T00:15:00\u005A"#] {
        let data = datapoint(&format!(r#"{{"datapointKey":"k","value":1,"tsIso8601":"{ts}"}}"#));
        assert!(Message::parse(with(&data).as_bytes()).is_ok(), "{ts}");
    }
}

#[test]
fn datapoint_messages_name_the_first_bad_item() {
    let good = r#"{"datapointKey":"k","value":1,"tsIso8601":"2021-01-31T00:15:00Z"}"#;
    let data = format!(r#"{{"datapointValues":[{good},{good},{{"datapointKey":"k","value":1}},1e400]}}"#);
    let err = Message::parse(msg(HEADER, &data).as_bytes()).unwrap_err();
    assert_eq!(err.message, "gatewayData.datapointValues[2] has no RFC 3339 tsIso8601");
    let data = format!(r#"{{"datapointValues":[{good},1e400,{good}]}}"#);
    let err = Message::parse(msg(HEADER, &data).as_bytes()).unwrap_err();
    assert_eq!(err.message, "gatewayData.datapointValues[1] is not an object");
}
