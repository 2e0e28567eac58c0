//! A strict reader of the Prometheus text exposition format (0.0.4), for
//! tests: `# HELP` / `# TYPE` at most once per family and before its
//! samples, each family's samples in one group, valid metric and label
//! names, escaped label values, float values (`+Inf`, `-Inf`, `NaN`), no
//! series twice; counters named `_total` and never negative; histograms with
//! `_bucket` lines in increasing `le` order, cumulative counts that never
//! decrease, a `+Inf` bucket equal to `_count`, and a `_sum`.

use std::collections::BTreeMap;

/// Label names and values of one series.
pub type Labels = BTreeMap<String, String>;

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The sample's name (for histograms: with `_bucket`, `_sum` or `_count`).
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// One metric family: its type, help text and samples.
#[derive(Debug, Default)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// The `# HELP` text (unescaped).
    pub help: String,
    /// The samples, in order.
    pub samples: Vec<Sample>,
}

impl Family {
    /// The value of the sample named `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == wanted).map(|s| s.value)
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
            s.parse().map_err(|_| format!("value {s:?}"))
        }
        _ => Err(format!("value {s:?}")),
    }
}

/// Undoes the HELP text escapes (`\\` and `\n`).
fn unescape_help(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Parses `{a="x",b="y"}` (the braces included); returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or_else(|| format!("label in {s:?}"))?;
        if !is_name(name, false) || name.starts_with("__") {
            return Err(format!("label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("escape {other:?} in {s:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice in {s:?}"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample name belongs to, given the family being read.
fn family_of<'a>(sample: &'a str, current: Option<(&'a str, &str)>) -> &'a str {
    if let Some((family, "histogram")) = current {
        for suffix in ["_bucket", "_sum", "_count"] {
            if sample.strip_suffix(suffix) == Some(family) {
                return family;
            }
        }
    }
    sample
}

/// Parses and checks a whole exposition; families by name.
pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a line feed".into());
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut seen_series = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name, rest) =
                (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !matches!(keyword, Some("HELP") | Some("TYPE")) {
                continue;
            }
            if !is_name(name, true) {
                return Err(at(format!("metric name {name:?}")));
            }
            let family = families.entry(name.to_string()).or_default();
            if !family.samples.is_empty() {
                return Err(at("HELP/TYPE after the family's samples".into()));
            }
            if current.as_deref() != Some(name) && (!family.kind.is_empty() || !family.help.is_empty()) {
                return Err(at("the family was declared earlier".into()));
            }
            if keyword == Some("TYPE") {
                if !family.kind.is_empty() {
                    return Err(at("TYPE twice".into()));
                }
                if !matches!(rest, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                    return Err(at(format!("type {rest:?}")));
                }
                family.kind = rest.to_string();
            } else {
                if !family.help.is_empty() {
                    return Err(at("HELP twice".into()));
                }
                family.help = unescape_help(rest);
            }
            current = Some(name.to_string());
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(at(format!("metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (Labels::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if fields.clone().count() > 1 || fields.next().is_some_and(|t| t.parse::<i64>().is_err()) {
            return Err(at("trailing text after the value".into()));
        }
        let declared = current.as_deref().map(|c| (c, families[c].kind.as_str()));
        let family = family_of(name, declared);
        if current.as_deref() != Some(family) {
            return Err(at(format!("sample of {family} outside its family's group")));
        }
        if !seen_series.insert(format!("{name}{labels:?}")) {
            return Err(at("series twice".into()));
        }
        families.get_mut(family).unwrap().samples.push(Sample { name: name.to_string(), labels, value });
    }
    for (name, family) in &families {
        check_family(name, family)?;
    }
    Ok(families)
}

fn check_family(name: &str, family: &Family) -> Result<(), String> {
    match family.kind.as_str() {
        "" => Err(format!("{name} has no TYPE")),
        "counter" if !name.ends_with("_total") => Err(format!("counter {name} is not named _total")),
        "counter" => match family.samples.iter().find(|s| s.value < 0.0 || s.value.is_nan()) {
            Some(s) => Err(format!("counter {name} is {}", s.value)),
            None => Ok(()),
        },
        "histogram" => check_histogram(name, family),
        _ => Ok(()),
    }
}

/// The samples of one histogram series: `(le, count)` buckets, sum, count.
#[derive(Default)]
struct HistogramSeries(Vec<(f64, f64)>, Option<f64>, Option<f64>);

fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    // Group by the labels other than `le`.
    let mut series: BTreeMap<Labels, HistogramSeries> = BTreeMap::new();
    for s in &family.samples {
        let mut labels = s.labels.clone();
        let le = labels.remove("le");
        let entry = series.entry(labels).or_default();
        match s.name.strip_prefix(name) {
            Some("_bucket") => {
                let le = le.ok_or_else(|| format!("{name}_bucket without le"))?;
                entry.0.push((parse_value(&le)?, s.value));
            }
            Some("_sum") => entry.1 = Some(s.value),
            Some("_count") => entry.2 = Some(s.value),
            _ => return Err(format!("{} in histogram {name}", s.name)),
        }
    }
    for (labels, HistogramSeries(buckets, sum, count)) in series {
        let what = format!("{name}{labels:?}");
        let (Some(sum), Some(count)) = (sum, count) else {
            return Err(format!("{what}: _sum and _count are both required"));
        };
        if !buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
            return Err(format!("{what}: buckets not in increasing le order with cumulative counts"));
        }
        match buckets.last() {
            Some((le, n)) if le.is_infinite() && *n == count => {}
            _ => return Err(format!("{what}: the last bucket must be le=\"+Inf\" and equal _count {count}")),
        }
        if sum < 0.0 || sum.is_nan() {
            return Err(format!("{what}: _sum {sum}"));
        }
    }
    Ok(())
}

#[test]
fn the_reader_refuses_what_the_format_forbids() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    assert!(parse(ok).is_ok());
    for (bad, why) in [
        ("# TYPE a_total counter\na_total 1", "no final line feed"),
        ("a_total 1\n", "no TYPE"),
        ("# TYPE a_total counter\na_total -1\n", "negative counter"),
        ("# TYPE a counter\na 1\n", "counter without _total"),
        ("# TYPE a gauge\na{x=\"1} 1\n", "unterminated label"),
        ("# TYPE a gauge\na 1\na 2\n", "series twice"),
        ("# TYPE a gauge\n# TYPE b gauge\na 1\n", "sample outside its group"),
        ("# TYPE a gauge\na one\n", "not a number"),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "decreasing buckets",
        ),
        ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", "+Inf != count"),
        ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", "no +Inf bucket"),
    ] {
        assert!(parse(bad).is_err(), "accepted ({why}): {bad:?}");
    }
}
