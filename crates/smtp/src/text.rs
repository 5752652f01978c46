//! From an e-mail to the text of an SMS (docs/email.md), without I/O.
//!
//! [`read_mail`] parses the message with `mail-parser` (MIME structure, transfer encodings
//! and every charset), takes the text/plain body (or the HTML body reduced to text where
//! there is no plain one), ignores attachments, and then [`clean`] removes what a reader of
//! an SMS does not want: the signature after a `-- ` line, quoted replies with the
//! "On … wrote:" line above them, a forwarded original, and untidy whitespace.

use mail_parser::{MessageParser, PartType};
use textgate_core::encoding::{Body, BodyError};

/// What an e-mail says, as far as an SMS cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The Subject, decoded.
    pub subject: Option<String>,
    /// The cleaned text; may be empty.
    pub text: String,
}

/// Parses a whole message (headers and body, as received after DATA).
pub fn read_mail(raw: &[u8]) -> Mail {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Mail {
            subject: None,
            text: String::new(),
        };
    };
    let subject = msg.subject().map(str::to_string);
    // `text_body` lists the parts a reader would see as the text: for multipart/alternative
    // the plain part, and the HTML part where there is no plain one. Attachments (including
    // text files sent as attachments) are never in it.
    let mut text = String::new();
    for part in msg.text_bodies() {
        let piece = match &part.body {
            PartType::Text(t) => t.to_string(),
            PartType::Html(h) => html_to_text(h),
            _ => continue,
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&piece);
    }
    Mail {
        subject,
        text: clean(&text),
    }
}

/// Tags after which a browser starts a new line; `mail-parser`'s reducer breaks only at
/// `<br>` and `</p>`, so the others are turned into `<br>` first.
const BLOCK_TAGS: &[&str] = &[
    "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre",
];

/// HTML reduced to text: quoted replies (`<blockquote>`, however nested) are dropped, block
/// elements end lines, entities are decoded and markup, styles and scripts are removed.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut depth = 0usize;
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        if depth == 0 {
            out.push_str(&rest[..lt]);
        }
        let tag_text = &rest[lt..];
        let Some(gt) = tag_text.find('>') else {
            // An unterminated tag: mail-parser's reducer will drop it.
            if depth == 0 {
                out.push_str(tag_text);
            }
            rest = "";
            break;
        };
        let tag = &tag_text[..=gt];
        let inner = tag[1..tag.len() - 1].trim();
        let closing = inner.starts_with('/');
        let name: String = inner
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if name == "blockquote" {
            if closing {
                depth = depth.saturating_sub(1);
            } else if !inner.ends_with('/') {
                depth += 1;
            }
        } else if depth == 0 {
            if closing && BLOCK_TAGS.contains(&name.as_str()) {
                out.push_str("<br>");
            } else {
                out.push_str(tag);
            }
        }
        rest = &tag_text[gt + 1..];
    }
    if depth == 0 {
        out.push_str(rest);
    }
    mail_parser::decoders::html::html_to_text(&out)
}

/// Whether a line is the separator of a signature (RFC 3676 §4.3: "-- "); many mail
/// programs trim the trailing space, so "--" counts too.
fn is_signature_separator(line: &str) -> bool {
    line == "-- " || line == "--"
}

/// Whether a line starts a forwarded or replied-to original that Outlook-style mailers put
/// below the reply without `>` quoting.
fn is_original_marker(line: &str) -> bool {
    let t = line.trim();
    let dashes = t.trim_matches('-').trim();
    (t.starts_with("-----") && dashes.eq_ignore_ascii_case("original message"))
        || (t.len() >= 20 && t.chars().all(|c| c == '_'))
}

/// Whether a line introduces a quotation: "On Mon, 1 Jan 2024, Bob <bob@x> wrote:" (also
/// split over two lines by the mailer, handled by the caller) and a few translations.
fn is_attribution(line: &str) -> bool {
    let t = line.trim_end().to_lowercase();
    [
        "wrote:",
        "writes:",
        "schrieb:",
        "a écrit :",
        "a écrit:",
        "escribió:",
        "scrisse:",
    ]
    .iter()
    .any(|end| t.ends_with(end))
}

/// How attribution lines start ("On …", and the German, French and Spanish forms).
const ATTRIBUTION_STARTS: &[&str] = &["On ", "Am ", "Le ", "El "];

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// Removes the signature, quoted replies and their attribution line, and tidies whitespace:
/// spaces and tabs collapsed, invisible characters removed, lines trimmed, runs of blank
/// lines made one, and no blank lines at either end.
pub fn clean(text: &str) -> String {
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<&str> = Vec::new();
    for line in normalised.split('\n') {
        if is_signature_separator(line) || is_original_marker(line) {
            break;
        }
        lines.push(line);
    }
    // Drop quoted lines, and an attribution line whose quotation follows it (after blank
    // lines, or at the very end once the quotation is gone).
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if is_quoted(line) {
            continue;
        }
        if is_attribution(line) {
            let after = lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .copied();
            if after.is_none_or(is_quoted) {
                // "On Mon, 1 Jan 2024 at 10:00, Bob\n<bob@example.com> wrote:" is one
                // attribution that the mailer wrapped.
                let starts = |l: &str| {
                    ATTRIBUTION_STARTS
                        .iter()
                        .any(|s| l.trim_start().starts_with(s))
                };
                if !starts(line) && kept.last().is_some_and(|prev| starts(prev)) {
                    kept.pop();
                }
                continue;
            }
        }
        kept.push(line);
    }
    tidy(&kept)
}

fn tidy(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut blank_pending = false;
    for line in lines {
        let mut tidied = String::with_capacity(line.len());
        let mut space = false;
        for c in line.chars() {
            match c {
                // Zero-width characters and byte order marks carry nothing in an SMS.
                '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{ad}' => {}
                c if c.is_whitespace() => space = true,
                c if c.is_control() => {}
                c => {
                    if space && !tidied.is_empty() {
                        tidied.push(' ');
                    }
                    space = false;
                    tidied.push(c);
                }
            }
        }
        if tidied.is_empty() {
            blank_pending = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_pending {
                out.push('\n');
            }
        }
        blank_pending = false;
        out.push_str(&tidied);
    }
    out
}

/// The longest start of `text` (cut at a character, trailing whitespace removed) that fits
/// in `max_parts` SMS parts. Used when `[smtp] truncate` is on.
pub fn truncate_to_fit(text: &str, max_parts: u16) -> Result<Body, BodyError> {
    match Body::new(text, max_parts) {
        Err(BodyError::TooLong { .. }) => {}
        other => return other,
    }
    // No part holds more than 160 characters, so nothing longer can fit: cutting there
    // first keeps the search cheap for a huge text.
    let bound = usize::from(max_parts.max(1)) * 160;
    let chars: Vec<(usize, char)> = text.char_indices().take(bound + 1).collect();
    let prefix = |n: usize| -> &str {
        let end = chars.get(n).map(|(i, _)| *i).unwrap_or(text.len());
        text[..end].trim_end()
    };
    // Fits(n) is monotone in n: find the largest n that fits.
    let (mut lo, mut hi) = (0usize, chars.len().min(bound));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if Body::new(prefix(mid), max_parts).is_ok() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Body::new(prefix(lo), max_parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(raw: &str) -> Mail {
        read_mail(raw.replace('\n', "\r\n").as_bytes())
    }

    #[test]
    fn plain_text_with_signature_and_quote_removed() {
        let m = mail(
            "From: bob@example.com\nSubject: Hi\n\n\
             Running late,   see you at 10.\n\n\n\
             On Mon, 1 Jan 2024 at 09:00, Alice <alice@example.com> wrote:\n\
             > Are you coming?\n>\n> A.\n\
             -- \nBob Smith\nACME Corp\n",
        );
        assert_eq!(m.subject.as_deref(), Some("Hi"));
        assert_eq!(m.text, "Running late, see you at 10.");
    }

    #[test]
    fn wrapped_attribution_and_interleaved_quotes() {
        let m = mail(
            "Subject: x\n\nYes.\n\nOn Mon, 1 Jan 2024 at 09:00, Alice Long-Name\n<alice@example.com> wrote:\n\n> Lunch?\n",
        );
        assert_eq!(m.text, "Yes.");
        let m = mail("Subject: x\n\n> Lunch?\nYes.\n> Where?\nHere.\n");
        assert_eq!(m.text, "Yes.\nHere.");
        // "wrote:" in the text itself, not followed by a quote, stays.
        let m = mail("Subject: x\n\nHe wrote:\nthe report is done\n");
        assert_eq!(m.text, "He wrote:\nthe report is done");
    }

    #[test]
    fn outlook_original_is_cut() {
        let m = mail(
            "Subject: x\n\nOK, done.\n\n-----Original Message-----\nFrom: Alice\nSent: Monday\n\nPlease do it.\n",
        );
        assert_eq!(m.text, "OK, done.");
    }

    #[test]
    fn multipart_alternative_takes_the_plain_part() {
        let m = mail(
            "Subject: alt\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b1\"\n\n\
             --b1\nContent-Type: text/plain; charset=utf-8\n\nPlain version\n\
             --b1\nContent-Type: text/html; charset=utf-8\n\n<p>HTML <b>version</b></p>\n--b1--\n",
        );
        assert_eq!(m.text, "Plain version");
    }

    #[test]
    fn html_only_is_reduced_to_text() {
        let m = mail(
            "Subject: html\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n\
             <html><head><style>p {color: red}</style></head><body>\
             <div>Server&nbsp;<b>db1</b> is down &amp; paging</div><div>Call ops</div>\
             <div class=\"gmail_quote\">On Mon, Alice wrote:<blockquote>old <blockquote>older</blockquote> text</blockquote></div>\
             </body></html>\n",
        );
        assert_eq!(m.text, "Server db1 is down & paging\nCall ops");
    }

    #[test]
    fn charsets_are_decoded() {
        // ISO-8859-1, quoted-printable: "Café à 10h".
        let m = mail(
            "Subject: =?ISO-8859-1?Q?caf=E9?=\nMIME-Version: 1.0\nContent-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nCaf=E9 =E0 10h\n",
        );
        assert_eq!(m.subject.as_deref(), Some("café"));
        assert_eq!(m.text, "Café à 10h");
        // Shift_JIS, 8-bit: "こんにちは".
        let mut raw = b"Subject: sjis\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=Shift_JIS\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
        raw.extend_from_slice(&[0x82, 0xb1, 0x82, 0xf1, 0x82, 0xc9, 0x82, 0xbf, 0x82, 0xcd]);
        raw.extend_from_slice(b"\r\n");
        assert_eq!(read_mail(&raw).text, "こんにちは");
        // Windows-1252, base64: "“Quotes” €5".
        let m = mail(
            "Subject: w\nMIME-Version: 1.0\nContent-Type: text/plain; charset=windows-1252\nContent-Transfer-Encoding: base64\n\nk1F1b3Rlc5QggDU=\n",
        );
        assert_eq!(m.text, "\u{201c}Quotes\u{201d} €5");
    }

    #[test]
    fn attachments_are_ignored() {
        let m = mail(
            "Subject: att\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"m\"\n\n\
             --m\nContent-Type: text/plain\n\nSee the report.\n\
             --m\nContent-Type: text/plain; name=\"notes.txt\"\nContent-Disposition: attachment; filename=\"notes.txt\"\n\nSECRET NOTES\n\
             --m\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=\"r.pdf\"\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--m--\n",
        );
        assert_eq!(m.text, "See the report.");
    }

    #[test]
    fn whitespace_is_tidied() {
        assert_eq!(
            clean("\n\n  a \t b\u{a0}\u{200b}c  \n\n\n\nd\n\n"),
            "a b c\n\nd"
        );
        assert_eq!(clean("-- \nonly a signature"), "");
        assert_eq!(clean(""), "");
    }

    #[test]
    fn garbage_is_no_text() {
        assert_eq!(read_mail(b"").text, "");
        assert_eq!(read_mail(&[0xff, 0xfe, 0x00, 0x01]).subject, None);
    }

    #[test]
    fn truncation_fits_the_parts() {
        let long = "word ".repeat(200);
        let b = truncate_to_fit(&long, 2).unwrap();
        assert_eq!(b.segments(), 2);
        assert!(long.starts_with(b.text()));
        assert!(b.text().len() >= 300, "{}", b.text().len());
        assert!(!b.text().ends_with(' '));
        // UCS-2 text: 67 units a part.
        let cyr = "я".repeat(500);
        let b = truncate_to_fit(&cyr, 3).unwrap();
        assert_eq!(b.text().chars().count(), 201);
        // A text that fits is untouched, and an empty one stays an error.
        assert_eq!(truncate_to_fit("hi", 1).unwrap().text(), "hi");
        assert_eq!(truncate_to_fit("", 1), Err(BodyError::Empty));
    }

    proptest::proptest! {
        /// Arbitrary bytes as a message, and arbitrary text through the cleaner and the
        /// HTML reducer: no panic, and the result is tidy.
        #[test]
        fn arbitrary_mail_never_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            let m = read_mail(&raw);
            proptest::prop_assert_eq!(m.text.trim(), m.text.as_str());
            proptest::prop_assert!(!m.text.contains("\n\n\n"));
        }

        #[test]
        fn arbitrary_html_and_text_never_panic(s in "[<>a-z/ \n&;#>-]{0,300}") {
            let _ = html_to_text(&s);
            let c = clean(&s);
            proptest::prop_assert!(!c.contains("  "));
            proptest::prop_assert_eq!(c.trim(), c.as_str());
        }
    }
}
