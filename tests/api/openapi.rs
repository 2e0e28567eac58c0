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
