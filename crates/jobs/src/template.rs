//! Message templates: text with `{{column}}` placeholders, filled from a CSV row.
//!
//! Parsed once per job into literal pieces and placeholders, then bound to the header's
//! column positions, so rendering a row is a few copies with no look-ups by name.

use std::fmt;

/// The longest template taken, in bytes: far more than any SMS needs, and small enough that
/// a template is never a way to make the server hold much memory.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Column(String),
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without its `}}`.
    #[error("the template has a \"{{{{\" with no closing \"}}}}\"")]
    Unclosed,
    /// `{{}}` or `{{ }}`.
    #[error("the template has an empty placeholder \"{{{{}}}}\": name a column inside it")]
    Empty,
    /// Longer than [`MAX_TEMPLATE_BYTES`].
    #[error("the template is {0} bytes long; the most taken is 65536 (64 KiB)")]
    TooLong(usize),
    /// A placeholder names a column the file does not have.
    #[error("the template uses {{{{{missing}}}}}, but the file has no column \"{missing}\" (its columns: {columns})")]
    MissingColumn {
        /// The placeholder.
        missing: String,
        /// The header's columns, comma-separated.
        columns: String,
    },
}

impl Template {
    /// Parses `Hi {{name}}, ...`. Placeholder names are trimmed and matched to the header
    /// case-insensitively.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLong(text.len()));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let name = after[..end].trim();
            if name.is_empty() {
                return Err(TemplateError::Empty);
            }
            pieces.push(Piece::Column(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces })
    }

    /// The column names it uses, in order of first use.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.pieces {
            if let Piece::Column(c) = p {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(c)) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Binds the placeholders to positions in `header` (already trimmed).
    pub fn bind(&self, header: &[String]) -> Result<Bound, TemplateError> {
        let mut pieces = Vec::with_capacity(self.pieces.len());
        for p in &self.pieces {
            pieces.push(match p {
                Piece::Text(t) => BoundPiece::Text(t.clone()),
                Piece::Column(c) => {
                    let i = header
                        .iter()
                        .position(|h| h.eq_ignore_ascii_case(c))
                        .ok_or_else(|| TemplateError::MissingColumn {
                            missing: c.clone(),
                            columns: header.join(", "),
                        })?;
                    BoundPiece::Column(i)
                }
            });
        }
        Ok(Bound { pieces })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => f.write_str(t)?,
                Piece::Column(c) => write!(f, "{{{{{c}}}}}")?,
            }
        }
        Ok(())
    }
}

/// A template bound to a header's column positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pieces: Vec<BoundPiece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BoundPiece {
    Text(String),
    Column(usize),
}

impl Bound {
    /// The text for one row; `field(i)` gives column `i`'s value (a missing one renders as
    /// nothing, which the caller has already refused as a broken row). `None` as soon as
    /// the text passes `max_bytes`: a row cannot make the server build a text of any size
    /// (a 64 KiB template of `{{b}}` over a 1 MiB column would be 30 GB).
    pub fn render<'a>(
        &self,
        field: impl Fn(usize) -> Option<&'a str>,
        max_bytes: usize,
    ) -> Option<String> {
        let mut out = String::new();
        for p in &self.pieces {
            let piece = match p {
                BoundPiece::Text(t) => t.as_str(),
                BoundPiece::Column(i) => field(*i).unwrap_or(""),
            };
            if out.len() + piece.len() > max_bytes {
                return None;
            }
            out.push_str(piece);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cols: &[&str]) -> Vec<String> {
        cols.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn renders_placeholders_from_columns() {
        let t = Template::parse("Hi {{name}}, you owe {{ Amount }} by {{due}}.").unwrap();
        assert_eq!(t.columns(), vec!["name", "Amount", "due"]);
        let b = t.bind(&header(&["to", "NAME", "amount", "due"])).unwrap();
        let row = ["+15551234567", "Ann", "$5", "Friday"];
        assert_eq!(
            b.render(|i| row.get(i).copied(), 1000).as_deref(),
            Some("Hi Ann, you owe $5 by Friday.")
        );
        assert_eq!(b.render(|i| row.get(i).copied(), 10), None, "over the cap");
    }

    #[test]
    fn text_without_placeholders_and_edge_braces() {
        let t = Template::parse("Plain { text } here").unwrap();
        assert!(t.columns().is_empty());
        let b = t.bind(&header(&["to"])).unwrap();
        assert_eq!(
            b.render(|_| None, 100).as_deref(),
            Some("Plain { text } here")
        );
        let t = Template::parse("{{a}}{{a}}").unwrap();
        assert_eq!(t.columns(), vec!["a"]);
        assert_eq!(t.to_string(), "{{a}}{{a}}");
    }

    #[test]
    fn refuses_broken_templates_and_missing_columns() {
        assert_eq!(Template::parse("Hi {{name"), Err(TemplateError::Unclosed));
        assert_eq!(Template::parse("Hi {{ }}"), Err(TemplateError::Empty));
        let long = "{{b}}".repeat(MAX_TEMPLATE_BYTES / 5 + 1);
        assert_eq!(
            Template::parse(&long),
            Err(TemplateError::TooLong(long.len()))
        );
        let t = Template::parse("Hi {{nme}}").unwrap();
        let e = t.bind(&header(&["to", "name"])).unwrap_err();
        assert_eq!(
            e,
            TemplateError::MissingColumn {
                missing: "nme".into(),
                columns: "to, name".into()
            }
        );
        assert!(e.to_string().contains("{{nme}}"), "{e}");
    }
}
