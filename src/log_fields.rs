//! The text log's fields, written as tracing-subscriber's [`DefaultFields`] writes them
//! without colour (`name=value`, values in their `Debug` form, a space between), but more
//! cheaply: every request opens a span whose three fields (method, path, request id) the
//! text formatter writes into a string when the span opens, and the default visitor spent
//! about a seventh of a `/healthz` answer's own CPU on it (the colour wrappers it paints
//! each name with even when colour is off, and the string regrown at every piece).
//!
//! [`DefaultFields`]: tracing_subscriber::fmt::format::DefaultFields
//!
//! [`FastFields`] writes plain fields into a buffer on the stack and hands it over in one
//! piece. What it does not write itself — the `message` field (which the default visitor
//! escapes), errors (with their sources), `r#` names, and any field when colour is on —
//! goes to [`DefaultVisitor`], so the text is the same byte for byte.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The fields formatter for the text log (see the [module docs](self)); give it to
/// `tracing_subscriber::fmt().fmt_fields(..)`.
///
/// ```
/// let subscriber = tracing_subscriber::fmt()
///     .with_ansi(false)
///     .fmt_fields(pgbridge::log_fields::FastFields)
///     .finish();
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(status = 200, path = "/healthz", "finished processing request");
/// });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct FastFields;

impl<'a> MakeVisitor<Writer<'a>> for FastFields {
    type Visitor = FastVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Self::Visitor {
        FastVisitor {
            plain: !writer.has_ansi_escapes(),
            writer,
            buffer: Buffer::default(),
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// The visitor of [`FastFields`].
#[derive(Debug)]
pub struct FastVisitor<'a> {
    writer: Writer<'a>,
    /// No colour: plain fields are written here.
    plain: bool,
    buffer: Buffer,
    is_empty: bool,
    result: fmt::Result,
}

impl FastVisitor<'_> {
    /// Whether `name` is written here; else [`DefaultVisitor`] writes it.
    fn writes(&self, name: &str) -> bool {
        self.plain && name != "message" && !name.starts_with("r#")
    }

    /// Writes what the buffer holds to the writer.
    fn flush(&mut self) {
        if self.result.is_ok() && !self.buffer.is_empty() {
            self.result = self.buffer.drain_to(&mut self.writer);
        }
    }

    /// `[ ]name=` into the buffer.
    fn begin(&mut self, name: &str) -> fmt::Result {
        if !std::mem::take(&mut self.is_empty) {
            self.buffer.write_char(' ')?;
        }
        self.buffer.write_str(name)?;
        self.buffer.write_char('=')
    }

    /// The field as [`DefaultVisitor`] writes it, after what the buffer holds.
    fn delegate(&mut self, visit: impl FnOnce(&mut DefaultVisitor<'_>)) {
        self.flush();
        if self.result.is_err() {
            return;
        }
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        visit(&mut default);
        self.result = default.finish();
        self.is_empty = false;
    }
}

impl Visit for FastVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        // What the `log` bridge adds (`log.target`, `log.module_path`, `log.file` are
        // strings): already written by the event formatter.
        if field.name().starts_with("log.") {
            return;
        }
        if !self.writes(field.name()) {
            return self.delegate(|v| v.record_str(field, value));
        }
        self.result = self
            .begin(field.name())
            .and_then(|()| write!(self.buffer, "{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        self.delegate(|v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // What the `log` bridge adds: already written by the event formatter.
        if name.starts_with("log.") {
            return;
        }
        if !self.writes(name) {
            return self.delegate(|v| v.record_debug(field, value));
        }
        self.result = self
            .begin(name)
            .and_then(|()| write!(self.buffer, "{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for FastVisitor<'_> {
    fn finish(mut self) -> fmt::Result {
        self.flush();
        self.result
    }
}

impl VisitFmt for FastVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.flush();
        &mut self.writer
    }
}

/// Text gathered on the stack, passed on in pieces of up to its size.
#[derive(Debug)]
struct Buffer {
    bytes: [u8; 256],
    len: usize,
    /// Where full pieces go while the buffer is written (a field longer than the buffer).
    spill: String,
}

impl Default for Buffer {
    fn default() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
            spill: String::new(),
        }
    }
}

impl Buffer {
    fn is_empty(&self) -> bool {
        self.len == 0 && self.spill.is_empty()
    }

    fn as_str(&self) -> &str {
        // Only whole `str`s are copied in.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    /// Writes everything to `writer` and empties the buffer.
    fn drain_to(&mut self, writer: &mut Writer<'_>) -> fmt::Result {
        if !self.spill.is_empty() {
            writer.write_str(&self.spill)?;
            self.spill.clear();
        }
        let result = writer.write_str(self.as_str());
        self.len = 0;
        result
    }
}

impl fmt::Write for Buffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > self.bytes.len() {
            let held = std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default();
            self.spill.push_str(held);
            self.len = 0;
            if s.len() > self.bytes.len() {
                self.spill.push_str(s);
                return Ok(());
            }
        }
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::DefaultFields;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Failure;
    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&std::fmt::Error)
        }
    }

    /// Log lines as `fields` writes them (no time, no colour).
    fn lines<N>(fields: N) -> String
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(fields)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let method = http::Method::GET;
            let long = "x".repeat(300);
            let span = tracing::info_span!(
                "request",
                method = %method,
                path = %"/notes/1",
                request_id = %"7f3c-11",
                later = tracing::field::Empty
            );
            let _entered = span.enter();
            span.record("later", 5);
            tracing::info!(latency = %"1 ms", status = 200, "finished processing request");
            tracing::warn!(r#type = "quoted \"text\"", ok = true, long = %long, "a\nmessage");
            tracing::error!(
                error = &Failure as &(dyn std::error::Error + 'static),
                "failed"
            );
            tracing::debug!(path = ?"/x", n = -3_i64, f = 1.5_f64);
            // A `log` record (the driver's), as the bridge turns it into an event.
            let _ = tracing_log::LogTracer::init();
            log::info!(target: "tokio_postgres::connection", "WARNING: terminating connection");
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn writes_what_the_default_fields_write() {
        let fast = lines(FastFields);
        assert_eq!(fast, lines(DefaultFields::new()));
        assert!(fast.contains("request{method=GET path=/notes/1 request_id=7f3c-11 later=5}"));
        assert!(fast.contains("WARNING: terminating connection"));
        assert!(!fast.contains("log.target"), "{fast}");
    }
}
