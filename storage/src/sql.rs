//! Raw SQL the query builder does not write for both databases.

use sea_orm::{DatabaseBackend, Value};

/// A `VALUES (…), (…)` list of bound parameters, one tuple per row, for
/// `UPDATE … FROM (VALUES …) AS v` (its columns are `v.column1` … `v.columnN` on PostgreSQL
/// and SQLite alike): the SQL text and the values to bind, in order.
pub(crate) fn values_list<const N: usize>(
    backend: DatabaseBackend,
    rows: impl IntoIterator<Item = [Value; N]>,
) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut values = Vec::new();
    for row in rows {
        text.push_str(if values.is_empty() { "(" } else { ", (" });
        for (column, value) in row.into_iter().enumerate() {
            if column > 0 {
                text.push_str(", ");
            }
            values.push(value);
            match backend {
                DatabaseBackend::Postgres => text.push_str(&format!("${}", values.len())),
                _ => text.push('?'),
            }
        }
        text.push(')');
    }
    (text, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let rows = || {
            [
                [Value::from(1i64), Value::from("a")],
                [Value::from(2i64), Value::from("b")],
            ]
        };
        let (text, values) = values_list(DatabaseBackend::Postgres, rows());
        assert_eq!(text, "($1, $2), ($3, $4)");
        assert_eq!(values.len(), 4);
        let (text, _) = values_list(DatabaseBackend::Sqlite, rows());
        assert_eq!(text, "(?, ?), (?, ?)");
    }
}
