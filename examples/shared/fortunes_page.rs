//! The Fortunes page of the TechEmpower benchmark, shared by `examples/techempower/` and the
//! reference programs (`reference_percore.rs`, `reference_deadpool.rs`), so that the ratios
//! between them measure the serving, not two ways of rendering: messages borrowed from the
//! rows, ids written without a `String` each, HTML escaped by runs. Included with `#[path]`.

/// A `fortune` row, its message borrowed from the row it was read from (or `'static`, for
/// the one added at request time): read, sorted and escaped without a copy of each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fortune<'a> {
    pub(crate) id: i32,
    pub(crate) message: &'a str,
}

/// The page for the `fortune` table's `rows` (`id`, `message`): one more fortune added at
/// request time, all sorted by message, escaped and rendered. The messages are borrowed
/// from the rows, not copied.
pub(crate) fn page(rows: &[tokio_postgres::Row]) -> Result<String, tokio_postgres::Error> {
    let mut fortunes = Vec::with_capacity(rows.len() + 1);
    for row in rows {
        fortunes.push(Fortune {
            id: row.try_get(0)?,
            message: row.try_get(1)?,
        });
    }
    fortunes.push(Fortune {
        id: 0,
        message: "Additional fortune added at request time.",
    });
    fortunes.sort_by(|a, b| a.message.cmp(b.message));
    Ok(render_fortunes(&fortunes))
}

/// The page's HTML for `fortunes`, in their order, each message escaped.
pub(crate) fn render_fortunes(fortunes: &[Fortune<'_>]) -> String {
    const HEAD: &str = "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>";
    const TAIL: &str = "</table></body></html>";
    let rows: usize = fortunes.iter().map(|f| f.message.len() + 40).sum();
    let mut html = String::with_capacity(HEAD.len() + rows + TAIL.len());
    html.push_str(HEAD);
    for fortune in fortunes {
        html.push_str("<tr><td>");
        push_int(&mut html, fortune.id);
        html.push_str("</td><td>");
        escape_into(fortune.message, &mut html);
        html.push_str("</td></tr>");
    }
    html.push_str(TAIL);
    html
}

/// Writes `n` in decimal onto `out`, without a `String` of its own.
pub(crate) fn push_int(out: &mut String, n: i32) {
    let mut digits = [0u8; 11];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    // ASCII digits and a sign: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// HTML-escapes `text` onto `out`: the runs between special characters are copied whole.
pub(crate) fn escape_into(text: &str, out: &mut String) {
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            _ => continue,
        };
        // The special characters are ASCII: `start..at` falls on character boundaries.
        out.push_str(&text[start..at]);
        out.push_str(entity);
        start = at + 1;
    }
    out.push_str(&text[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_renders() {
        let mut out = String::new();
        escape_into(r#"<a href="x">Tom & Jerry's</a> フ"#, &mut out);
        assert_eq!(
            out,
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#x27;s&lt;/a&gt; フ"
        );
        for n in [0, 7, 10, 12, -5, i32::MAX, i32::MIN] {
            let mut out = String::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        let html = render_fortunes(&[Fortune {
            id: 3,
            message: "a<b",
        }]);
        assert!(
            html.contains("<tr><td>3</td><td>a&lt;b</td></tr>"),
            "{html}"
        );
    }
}
