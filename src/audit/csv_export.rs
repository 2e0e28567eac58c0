//! The audit log as CSV, shared by the API download (`format=csv`) and
//! `energyload audit export --format csv`: one writer (the `csv` crate, RFC
//! 4180 quoting) and one rule against formula injection.
//!
//! Audit cells carry attacker-chosen text (`X-MSISDN`, attempted usernames,
//! paths). A spreadsheet treats a cell starting with `=`, `+`, `-`, `@`, TAB
//! or CR as a formula, so such cells are neutralised the OWASP way: a single
//! quote `'` is put in front (`=HYPERLINK(…)` becomes `'=HYPERLINK(…)`). This
//! applies to every cell alike, so an MSISDN `+352…` reads `'+352…` in the
//! export (the JSON list and export keep the value as stored). Cells are
//! quoted only when needed, so a plain event line stays as it was.

use std::borrow::Cow;
use std::io::Write;

use crate::clock::format_millis;
use crate::storage::audit::AuditRow;

/// The header line's columns, in order.
pub const COLUMNS: [&str; 11] =
    ["id", "ts", "type", "ip", "msisdn", "user_id", "username", "api_key_id", "request_id", "path", "detail"];

/// Characters that make a spreadsheet read a cell as a formula when first.
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell` with a `'` in front when it starts like a formula.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_TRIGGERS) { Cow::Owned(format!("'{cell}")) } else { Cow::Borrowed(cell) }
}

/// Writes the header and `rows` (in the order given) as CSV to `out`.
pub fn write<'a, W: Write>(out: W, rows: impl IntoIterator<Item = &'a AuditRow>) -> Result<(), csv::Error> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(out);
    w.write_record(COLUMNS)?;
    for r in rows {
        let opt = |v: &'a Option<String>| v.as_deref().unwrap_or("");
        let ts = format_millis(r.ts);
        let id = r.id.to_string();
        let cells = [
            id.as_str(),
            ts.as_str(),
            r.event_type.as_str(),
            opt(&r.ip),
            opt(&r.msisdn),
            opt(&r.user_id),
            opt(&r.username),
            opt(&r.api_key_id),
            opt(&r.request_id),
            opt(&r.path),
            r.detail.as_str(),
        ];
        w.write_record(cells.iter().map(|c| neutralise(c).into_owned()))?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_get_a_quote_and_others_stay() {
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(bad), format!("'{bad}"));
        }
        for fine in ["", "alice", "203.0.113.9", "{\"a\":1}", "'=already", " =1"] {
            assert_eq!(neutralise(fine), fine);
        }
    }

    #[test]
    fn cells_with_separators_quotes_and_newlines_round_trip() {
        let row = AuditRow {
            id: 7,
            ts: 0,
            event_type: "login_failure".into(),
            msisdn: Some("=HYPERLINK(\"http://x\",\"a,b\")".into()),
            username: Some("line1\nline2".into()),
            detail: "{\"k\":\"v,w\"}".into(),
            ..Default::default()
        };
        let mut out = Vec::new();
        write(&mut out, [&row]).unwrap();
        let mut reader = csv::ReaderBuilder::new().from_reader(out.as_slice());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 1);
        assert_eq!(&records[0][4], "'=HYPERLINK(\"http://x\",\"a,b\")");
        assert_eq!(&records[0][6], "line1\nline2");
        assert_eq!(&records[0][10], "{\"k\":\"v,w\"}");
    }
}
