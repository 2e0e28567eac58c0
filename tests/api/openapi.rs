//! The OpenAPI document and the router stay in step: every routed
//! path/method is documented and every documented one is routed.

use std::collections::BTreeSet;

use crate::common::spawn_app;

#[test]
fn openapi_document_matches_the_route_table() {
    let app = spawn_app();
    let r = app.get("/openapi.json");
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = energyload::api::ROUTES
        .iter()
        .map(|r| (r.verb.as_str().to_string(), r.path.replace("{*", "{")))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routed but not documented: {undocumented:?}");
    assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");
}

#[test]
fn every_documented_reference_resolves() {
    let doc: serde_json::Value = serde_json::from_str(energyload::api::OPENAPI_JSON).unwrap();
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let pointer = target.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
    }
}

#[test]
fn audit_event_types_are_documented_and_offered_by_the_admin_page() {
    let doc: serde_json::Value = serde_json::from_str(energyload::api::OPENAPI_JSON).unwrap();
    let mut documented = BTreeSet::new();
    let text = doc.to_string();
    // The enum of the audit event's `type` property.
    for schema in text.split("\"enum\":[").skip(1) {
        let list: Vec<&str> =
            schema.split(']').next().unwrap().split(',').map(|s| s.trim_matches('"')).collect();
        if list.contains(&"login_success") {
            documented.extend(list.into_iter().map(String::from));
        }
    }
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/admin/js/pages/audit.js"))
            .unwrap();
    let offered = page.split("const TYPES = [").nth(1).unwrap().split("];").next().unwrap();
    let all: BTreeSet<String> =
        energyload::audit::EventType::ALL.iter().map(|t| t.as_str().to_string()).collect();
    assert_eq!(documented, all, "assets/openapi.json's audit event types");
    for t in &all {
        assert!(offered.contains(&format!("'{t}'")), "the audit page's type filter lacks {t}");
    }
}
