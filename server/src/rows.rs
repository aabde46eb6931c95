//! Arrow rows as the JSON arrays ksqlDB's query endpoints send.

use datafusion::arrow::array::ArrayRef;

use crate::error::ServerError;

/// Row `row` of `columns` as a JSON array: `[1,"a",null]`.
pub fn json_row(columns: &[ArrayRef], row: usize) -> Result<String, ServerError> {
    let mut out = String::from("[");
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        sluice_engine::format::json::write_value(&mut out, c.as_ref(), row)
            .map_err(|e| ServerError::Internal(format!("cannot render a row: {e}")))?;
    }
    out.push(']');
    Ok(out)
}

/// Every row of `columns`, or the first `limit`.
pub fn json_rows(columns: &[ArrayRef], limit: Option<usize>) -> Result<Vec<String>, ServerError> {
    let rows = columns.first().map(|c| c.len()).unwrap_or(0);
    let rows = limit.map_or(rows, |l| rows.min(l));
    (0..rows).map(|r| json_row(columns, r)).collect()
}
