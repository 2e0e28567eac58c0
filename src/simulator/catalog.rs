//! The site and meter catalog the simulator serves: by default the sample
//! catalog compiled into the binary, or lists read from files
//! (`[{"SiteCode": "..."}]`, `[{"MeterCode": "..."}]`, extra fields kept).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::SimError;

/// The compiled-in sample site list.
pub(crate) const SAMPLE_SITES_JSON: &str = include_str!("../../assets/esight-sim/sites.json");
/// The compiled-in sample meter list.
pub(crate) const SAMPLE_METERS_JSON: &str = include_str!("../../assets/esight-sim/meters.json");

/// A site list and a meter list, each kept both as codes and as the compact
/// JSON answered on every request. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Catalog {
    sites: Arc<CodeList>,
    meters: Arc<CodeList>,
}

#[derive(Debug)]
struct CodeList {
    codes: Vec<String>,
    json: Bytes,
}

impl Catalog {
    /// The sample catalog compiled into the binary.
    pub fn sample() -> Self {
        Self::from_json(SAMPLE_SITES_JSON, SAMPLE_METERS_JSON)
            .expect("the compiled-in sample catalog is valid")
    }

    /// Parses a site list and a meter list.
    pub fn from_json(sites: &str, meters: &str) -> Result<Self, SimError> {
        Ok(Self {
            sites: Arc::new(parse_list(sites, "SiteCode", "site list")?),
            meters: Arc::new(parse_list(meters, "MeterCode", "meter list")?),
        })
    }

    /// Reads the lists from files; `None` takes the sample list.
    pub fn from_files(sites: Option<&Path>, meters: Option<&Path>) -> Result<Self, SimError> {
        let read = |path: Option<&Path>, sample: &str| match path {
            None => Ok(sample.to_string()),
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| SimError::Catalog { what: p.display().to_string(), reason: e.to_string() }),
        };
        let sites_text = read(sites, SAMPLE_SITES_JSON)?;
        let meters_text = read(meters, SAMPLE_METERS_JSON)?;
        let named = |e: SimError, path: Option<&Path>| match (e, path) {
            (SimError::Catalog { reason, .. }, Some(p)) => {
                SimError::Catalog { what: p.display().to_string(), reason }
            }
            (e, _) => e,
        };
        Ok(Self {
            sites: Arc::new(parse_list(&sites_text, "SiteCode", "site list").map_err(|e| named(e, sites))?),
            meters: Arc::new(
                parse_list(&meters_text, "MeterCode", "meter list").map_err(|e| named(e, meters))?,
            ),
        })
    }

    /// A catalog made of bare codes.
    pub fn from_codes<S, M>(sites: S, meters: M) -> Self
    where
        S: IntoIterator,
        S::Item: Into<String>,
        M: IntoIterator,
        M::Item: Into<String>,
    {
        Self {
            sites: Arc::new(list_from_codes(sites.into_iter().map(Into::into), "SiteCode")),
            meters: Arc::new(list_from_codes(meters.into_iter().map(Into::into), "MeterCode")),
        }
    }

    /// The site codes, in file order.
    pub fn site_codes(&self) -> &[String] {
        &self.sites.codes
    }

    /// The meter codes, in file order.
    pub fn meter_codes(&self) -> &[String] {
        &self.meters.codes
    }

    /// The body of `GET /sites`.
    pub(crate) fn sites_json(&self) -> Bytes {
        self.sites.json.clone()
    }

    /// The body of `GET /meters`.
    pub(crate) fn meters_json(&self) -> Bytes {
        self.meters.json.clone()
    }
}

/// Parses `[{"<field>": "<code>", ...}, ...]`.
fn parse_list(text: &str, field: &str, what: &str) -> Result<CodeList, SimError> {
    let bad = |reason: String| SimError::Catalog { what: what.to_string(), reason };
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Array(items) = &value else {
        return Err(bad("must be a JSON array".into()));
    };
    let mut codes = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item.get(field) {
            Some(Value::String(code)) => codes.push(code.clone()),
            _ => return Err(bad(format!("item {index} has no string \"{field}\""))),
        }
    }
    let json = serde_json::to_vec(&value).map_err(|e| bad(e.to_string()))?;
    Ok(CodeList { codes, json: Bytes::from(json) })
}

fn list_from_codes(codes: impl Iterator<Item = String>, field: &str) -> CodeList {
    let codes: Vec<String> = codes.collect();
    let items: Vec<Value> = codes.iter().map(|c| serde_json::json!({ field: c })).collect();
    let json = serde_json::to_vec(&items).unwrap_or_else(|_| b"[]".to_vec());
    CodeList { codes, json: Bytes::from(json) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_catalog_names_the_sample_site_and_meter() {
        let c = Catalog::sample();
        assert!(c.site_codes().iter().any(|s| s == "LU_VPC"));
        assert!(c.meter_codes().iter().any(|m| m == "LU_VPC_Elec_1"));
        let served: Value = serde_json::from_slice(&c.sites_json()).unwrap();
        assert_eq!(served[0]["SiteCode"], "LU_VPC");
    }

    #[test]
    fn lists_without_the_code_field_are_refused() {
        let err = Catalog::from_json(r#"[{"Code": "X"}]"#, "[]").unwrap_err();
        assert!(err.to_string().contains("SiteCode"), "{err}");
        assert!(Catalog::from_json("{}", "[]").is_err());
        assert!(Catalog::from_json("[]", "nope").is_err());
    }

    #[test]
    fn codes_build_the_same_shape() {
        let c = Catalog::from_codes(["A_1"], ["M1", "M2"]);
        let served: Value = serde_json::from_slice(&c.meters_json()).unwrap();
        assert_eq!(served, serde_json::json!([{"MeterCode": "M1"}, {"MeterCode": "M2"}]));
        assert_eq!(c.site_codes(), ["A_1"]);
    }
}
