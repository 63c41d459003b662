//! Multi-row statements for the commit: the rows of one kind of write go to the database in a
//! few statements of many rows each (`VALUES (..), (..), ..`) rather than one statement per
//! row, so SQLite opens its cursors, checks the transaction and resets the statement once per
//! chunk, not once per row. Chunks have a few fixed sizes, so the statement cache holds one
//! prepared statement per size and kind.

use rusqlite::{CachedStatement, ToSql, Transaction};

/// Rows per statement, largest first: `n` rows take `n / CHUNKS[0]` statements and at most a
/// few more for the rest. The largest keeps the widest row (the task insert, 27 columns)
/// far below SQLite's limit on parameters (32,766).
const CHUNKS: [usize; 4] = [256, 32, 8, 1];

/// A statement of many rows: `head`, then `row` once per row (comma-separated), then `tail`.
pub(super) struct Shape {
    pub head: &'static str,
    /// One row's placeholders, e.g. `(?, ?, ?)`.
    pub row: &'static str,
    pub tail: &'static str,
}

impl Shape {
    fn sql(&self, rows: usize) -> String {
        let mut s =
            String::with_capacity(self.head.len() + self.tail.len() + rows * (self.row.len() + 2));
        s.push_str(self.head);
        for i in 0..rows {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(self.row);
        }
        s.push_str(self.tail);
        s
    }
}

/// Binds one row's values, in the order of the row's placeholders.
pub(super) struct Binder<'s, 'c> {
    st: &'s mut CachedStatement<'c>,
    at: usize,
}

impl Binder<'_, '_> {
    pub fn bind<T: ToSql>(&mut self, value: T) -> rusqlite::Result<()> {
        self.at += 1;
        self.st.raw_bind_parameter(self.at, value)
    }
}

/// How many statements `write` runs for `n` rows.
pub(super) fn statements(mut n: usize) -> usize {
    let mut count = 0;
    while n > 0 {
        let c = CHUNKS.iter().copied().find(|c| *c <= n).unwrap_or(1);
        count += n / c;
        n %= c;
    }
    count
}

/// Writes `items` with `shape` in chunks, each row bound by `bind`; the rows changed.
pub(super) fn write<T>(
    tx: &Transaction<'_>,
    shape: &Shape,
    items: &[T],
    mut bind: impl FnMut(&mut Binder<'_, '_>, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<usize> {
    let mut changed = 0;
    let mut rest = items;
    while !rest.is_empty() {
        let n = CHUNKS
            .iter()
            .copied()
            .find(|c| *c <= rest.len())
            .unwrap_or(1);
        let (chunk, after) = rest.split_at(n);
        let mut st = tx.prepare_cached(&shape.sql(n))?;
        let mut b = Binder { st: &mut st, at: 0 };
        for item in chunk {
            bind(&mut b, item)?;
        }
        changed += st.raw_execute()?;
        rest = after;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
            .unwrap();
        let shape = Shape {
            head: "INSERT INTO t (a, b) VALUES ",
            row: "(?, ?)",
            tail: "",
        };
        for n in [0usize, 1, 7, 8, 33, 300, 601] {
            let tx = c.transaction().unwrap();
            tx.execute("DELETE FROM t", []).unwrap();
            let items: Vec<i64> = (0..n as i64).collect();
            let changed = write(&tx, &shape, &items, |b, i| {
                b.bind(i)?;
                b.bind(format!("v{i}"))
            })
            .unwrap();
            assert_eq!(changed, n);
            let (count, sum): (i64, i64) = tx
                .query_row("SELECT count(*), coalesce(sum(a), 0) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((count, sum), (n as i64, items.iter().sum::<i64>()));
            tx.commit().unwrap();
        }
    }
}
