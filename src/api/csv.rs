//! CSV for record exports (RFC 4180): each cell quoted when it must be, and text that a
//! spreadsheet would run as a formula (`=`, `+`, `-`, `@`, a tab or a carriage return first)
//! made inert with a leading `'`. Names, URIs and User-Agents come from callers and the
//! network; an export opened in a spreadsheet must not run what they wrote.

/// One CSV document, built row by row.
#[derive(Debug, Default)]
pub(super) struct Csv {
    text: String,
}

/// One cell: text from outside (guarded against formulas) or a figure (written as it is).
pub(super) enum Cell<'a> {
    Text(&'a str),
    Figure(String),
    Empty,
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(text: &'a str) -> Self {
        Cell::Text(text)
    }
}

impl<'a> From<&'a Option<String>> for Cell<'a> {
    fn from(text: &'a Option<String>) -> Self {
        text.as_deref().map_or(Cell::Empty, Cell::Text)
    }
}

impl Cell<'_> {
    pub(super) fn figure(value: impl std::fmt::Display) -> Self {
        Cell::Figure(value.to_string())
    }

    pub(super) fn maybe(value: Option<impl std::fmt::Display>) -> Self {
        value.map_or(Cell::Empty, Cell::figure)
    }
}

impl Csv {
    /// A document whose first row names the columns.
    pub(super) fn with_header(columns: &[&str]) -> Csv {
        let mut csv = Csv::default();
        csv.row(columns.iter().map(|c| Cell::Text(c)));
        csv
    }

    pub(super) fn row<'a>(&mut self, cells: impl IntoIterator<Item = Cell<'a>>) {
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            match cell {
                Cell::Text(t) => push_text(&mut self.text, t),
                Cell::Figure(f) => push_quoted(&mut self.text, &f),
                Cell::Empty => {}
            }
        }
        self.text.push_str("\r\n");
    }

    pub(super) fn into_string(self) -> String {
        self.text
    }
}

/// Text a spreadsheet would take for a formula gets a leading `'`.
fn push_text(out: &mut String, text: &str) {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        push_quoted(out, &format!("'{text}"));
    } else {
        push_quoted(out, text);
    }
}

/// Quoted when it holds a comma, a quote or a line break (quotes doubled).
fn push_quoted(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::{Cell, Csv};

    #[test]
    fn cells_are_quoted_when_they_must_be() {
        let mut csv = Csv::with_header(&["a", "b", "c", "d"]);
        csv.row([
            Cell::Text("plain"),
            Cell::Text("a, b"),
            Cell::Text("say \"hi\"\nbye"),
            Cell::Empty,
        ]);
        assert_eq!(
            csv.into_string(),
            "a,b,c,d\r\nplain,\"a, b\",\"say \"\"hi\"\"\nbye\",\r\n"
        );
    }

    #[test]
    fn formulas_are_made_inert_and_figures_kept() {
        let mut csv = Csv::default();
        csv.row([
            Cell::Text("=HYPERLINK(\"http://x\",\"y\")"),
            Cell::Text("+1"),
            Cell::Text("-2"),
            Cell::Text("@SUM(A1)"),
            Cell::Text("\tx"),
            Cell::figure(-3),
            Cell::maybe(Some(4.5)),
            Cell::maybe(None::<u8>),
        ]);
        assert_eq!(
            csv.into_string(),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",'+1,'-2,'@SUM(A1),'\tx,-3,4.5,\r\n"
        );
    }
}
