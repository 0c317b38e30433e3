//! A plain text table with aligned columns.

/// Rows of cells under a header; numeric-looking cells align right.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles (put the unit in the title, e.g. `COUNT (pkts)`).
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Has the table no rows?
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders with two spaces between columns; the last column is not padded.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..cols)
            .map(|i| {
                !self.rows.is_empty()
                    && self.rows.iter().all(|r| {
                        r.get(i)
                            .is_some_and(|c| c.chars().all(|ch| ch.is_ascii_digit()))
                    })
            })
            .collect();
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(cols) {
                if i > 0 {
                    line.push_str("  ");
                }
                if i + 1 == cols {
                    line.push_str(c);
                } else if numeric[i] {
                    line.push_str(&format!("{c:>w$}", w = width[i]));
                } else {
                    line.push_str(&format!("{c:<w$}", w = width[i]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["COUNT", "REASON"]);
        t.row(vec!["5".into(), "NO_SOCKET".into()]);
        t.row(vec!["120".into(), "OTHERHOST".into()]);
        let s = t.render();
        assert_eq!(s.lines().nth(1).unwrap(), "    5  NO_SOCKET");
        assert_eq!(s.lines().nth(2).unwrap(), "  120  OTHERHOST");
    }
}
