//! Logging: `RUST_LOG` filters (default `info`), pretty or JSON lines by configuration; with
//! the `otlp` feature and `otlp_endpoint` set, the same spans (`job`, `deliberation`,
//! `llm_call`, each RPC's, with their `task_id`) are also exported to an OpenTelemetry
//! collector over OTLP/HTTP.
//!
//! A log line is one event, begun by the logger: no value logged — a task, a prompt, a
//! model's answer, all of which other principals write — can start a line of its own or
//! reach the terminal of whoever tails the log as an escape sequence. Pretty lines write the
//! control characters of every field and message as escapes ([`EscapedFields`]); JSON lines
//! are escaped by `serde_json`, and [`JsonSafe`] escapes the few it leaves raw.
//!
//! A pretty line names each field once: the `rpc`, `job` and `deliberation` spans all carry
//! `task_id`, and an event inside them may too, so the compact format would repeat it (`
//! task_id="odd1" task_id=odd1 task_id="odd1"`). [`RecordSpanFields`] keeps every span's
//! fields by name, and [`OncePerLine`] writes the event's fields, then each span field whose
//! name the line has not shown yet, outermost span first.

use std::fmt;
use std::io;

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{Compact, DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};
use crate::control_chars::{Escaped, json_escaped};
use crate::error::Result;

/// What must outlive the subscriber: the span exporter, flushed by [`Telemetry::shutdown`].
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered (OTLP); a no-op without an exporter.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the OTLP span exporter");
        }
    }
}

/// Installs the global subscriber; a second call is a no-op (tests start several servers).
pub fn init_subscriber(format: LogFormat) {
    let _ = Registry::default().with(log_lines(format)).with(filter()).try_init();
}

/// Installs the global subscriber for `config`: log lines as [`init_subscriber`], plus the
/// OTLP exporter when `otlp_endpoint` is set.
///
/// # Errors
/// [`ServerError::Config`](crate::ServerError::Config) on `otlp_endpoint` when the exporter
/// cannot be built, or when this binary was built without the `otlp` feature.
pub fn init_telemetry(config: &Config) -> Result<Telemetry> {
    let Some(endpoint) = &config.otlp_endpoint else {
        init_subscriber(config.log_format);
        return Ok(Telemetry::default());
    };
    otlp::init(config.log_format, endpoint)
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"))
}

fn log_lines(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    log_lines_to(format, ansi, io::stderr)
}

/// Log lines in `format` written to `out`, coloured when `ansi`.
fn log_lines_to<M>(format: LogFormat, ansi: bool, out: M) -> Box<dyn Layer<Registry> + Send + Sync>
where
    M: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer().with_ansi(ansi);
    match format {
        LogFormat::Json => lines.json().flatten_event(true).with_writer(JsonSafe(out)).boxed(),
        LogFormat::Pretty => RecordSpanFields
            .and_then(
                lines
                    .event_format(OncePerLine::default())
                    .fmt_fields(EscapedFields::default())
                    .with_writer(out),
            )
            .boxed(),
    }
}

/// The fields of one span, each as `name=value` with its control characters escaped, in the
/// order they were set; a field recorded again keeps its place with its new value.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, String)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, text: String) {
        match self.0.iter_mut().find(|(known, _)| *known == name) {
            Some(slot) => slot.1 = text,
            None => self.0.push((name, text)),
        }
    }
}

impl Visit for SpanFields {
    /// As tracing-subscriber's default writes a field (`name=Debug`, `r#` dropped, `log.*`
    /// left out), through [`Escaped`].
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        let mut text = String::new();
        let _ = write!(Escaped(&mut text), "{}={value:?}", name.strip_prefix("r#").unwrap_or(name));
        self.set(name, text);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// Keeps each span's [`SpanFields`] for [`OncePerLine`], and gives the fmt layer an empty
/// record of them (it then neither formats nor, through [`EscapedFields::add_fields`], appends
/// them): the span fields of a line are written once, by [`OncePerLine`].
#[derive(Debug, Clone, Copy)]
struct RecordSpanFields;

impl<S> Layer<S> for RecordSpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        let mut extensions = span.extensions_mut();
        extensions.insert(fields);
        extensions.insert(FormattedFields::<EscapedFields>::new(String::new()));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(fields);
        }
    }
}

/// The compact line (timestamp, level, span names, target, message and the event's fields),
/// then the fields of the spans it is in, each name once: one the event has, or an outer span
/// had, is not repeated.
#[derive(Debug)]
struct OncePerLine {
    plain: Format<Compact>,
    coloured: Format<Compact>,
}

impl Default for OncePerLine {
    fn default() -> Self {
        let compact = tracing_subscriber::fmt::format().compact();
        Self { plain: compact.clone().with_ansi(false), coloured: compact.with_ansi(true) }
    }
}

impl<S, N> FormatEvent<S, N> for OncePerLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        // The spans' own fields are empty (see `RecordSpanFields`): the compact format writes
        // none of them.
        let mut line = String::new();
        let compact = if ansi { &self.coloured } else { &self.plain };
        compact.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(line.strip_suffix('\n').unwrap_or(&line))?;
        let mut shown: Vec<&'static str> = event.fields().map(|field| field.name()).collect();
        for span in ctx.event_scope().into_iter().flat_map(tracing_subscriber::registry::Scope::from_root) {
            let extensions = span.extensions();
            let Some(fields) = extensions.get::<SpanFields>() else { continue };
            for (name, text) in &fields.0 {
                if shown.contains(name) {
                    continue;
                }
                shown.push(name);
                if ansi {
                    write!(writer, " \x1b[2m{text}\x1b[0m")?;
                } else {
                    write!(writer, " {text}")?;
                }
            }
        }
        writeln!(writer)
    }
}

/// The fields of events and spans (the message among them) as tracing-subscriber's default
/// writes them, passed through [`Escaped`]: a `%value` or a message is written raw by the
/// default, so a newline in it would start a line that reads as the logger's own, and ESC
/// would reach a terminal. The default is given a writer without colour, so that everything
/// reaching [`Escaped`] is data to escape, never a colour code of its own; field names are
/// therefore not italic at a terminal, while the timestamp, level and target keep their
/// colours.
#[derive(Debug)]
struct EscapedFields(DefaultFields);

impl Default for EscapedFields {
    fn default() -> Self {
        Self(DefaultFields::new())
    }
}

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut escaped = Escaped(&mut writer);
        self.0.format_fields(Writer::new(&mut escaped), fields)
    }

    /// Span fields recorded later are kept by [`RecordSpanFields`], not appended here.
    fn add_fields(&self, _current: &'writer mut FormattedFields<Self>, _fields: &Record<'_>) -> fmt::Result {
        Ok(())
    }
}

/// The writer of JSON log lines, with [`json_escaped`] applied to each: `serde_json` escapes C0
/// controls, so a line is always one line, but leaves the C1 controls (an 8-bit CSI) and the
/// bidirectional overrides raw, for the terminal of whoever tails the log to act on.
#[derive(Debug, Clone, Copy)]
struct JsonSafe<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonSafe<M> {
    type Writer = JsonSafe<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonSafe(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        JsonSafe(self.0.make_writer_for(meta))
    }
}

impl<W: io::Write> io::Write for JsonSafe<W> {
    /// The fmt layer writes each event whole, so `line` is UTF-8; were it cut inside a
    /// character, it would be passed on as is (JSON still, since C0 are escaped upstream).
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(line) {
            Ok(text) => self.0.write_all(json_escaped(text).as_bytes())?,
            Err(_) => self.0.write_all(line)?,
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    use super::{Telemetry, filter, log_lines};
    use crate::config::LogFormat;
    use crate::error::{Result, ServerError};

    /// The collector's path for spans, appended to `otlp_endpoint` (as the OpenTelemetry spec
    /// does with `OTEL_EXPORTER_OTLP_ENDPOINT`).
    const TRACES_PATH: &str = "/v1/traces";

    pub(super) fn init(format: LogFormat, endpoint: &str) -> Result<Telemetry> {
        // reqwest is built without a bundled crypto provider: https needs ring installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'));
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| ServerError::config("otlp_endpoint", e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("orchestrator").build())
            .build();
        let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("orchestrator"));
        let _ = tracing_subscriber::registry().with(log_lines(format)).with(spans).with(filter()).try_init();
        tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
        Ok(Telemetry { provider: Some(provider) })
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    use super::Telemetry;
    use crate::config::LogFormat;
    use crate::error::{Result, ServerError};

    pub(super) fn init(_format: LogFormat, _endpoint: &str) -> Result<Telemetry> {
        Err(ServerError::config(
            "otlp_endpoint",
            "this binary was built without OTLP support; rebuild with `cargo build --features otlp`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::control_chars::is_control;

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn an_otlp_endpoint_without_the_feature_is_a_configuration_error() {
        let config = Config { otlp_endpoint: Some("http://127.0.0.1:4318".into()), ..Config::default() };
        let error = init_telemetry(&config).unwrap_err().to_string();
        assert!(error.starts_with("otlp_endpoint: this binary was built without OTLP support"), "{error}");
    }

    /// Log lines kept in memory.
    #[derive(Debug, Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// A value whose second line, written raw, would read as an audit record, and which tries
    /// to retitle, colour and reverse the terminal of whoever tails the log.
    const FORGED: &str = "x\n2026-12-07T00:00:00.000000Z  INFO orchestrator::audit: rpc allowed principal=admin\
                          \x1b]0;pwned\x07\u{9b}31m\u{202e}";

    /// What `log` logs, in `format`.
    fn logged(format: LogFormat, ansi: bool, log: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber = Registry::default().with(log_lines_to(format, ansi, buffer.clone()));
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    /// `log` without the colour codes (`ESC [ digits ; m`) the logger writes itself.
    fn without_colours(log: &str) -> String {
        let mut rest = log;
        let mut plain = String::new();
        while let Some(at) = rest.find("\x1b[") {
            plain.push_str(&rest[..at]);
            let code = &rest[at + 2..];
            let end = code.find(|c: char| !c.is_ascii_digit() && c != ';').unwrap_or(code.len());
            assert!(code[end..].starts_with('m'), "not a colour: {:?}", &rest[at..]);
            rest = &code[end + 1..];
        }
        plain.push_str(rest);
        plain
    }

    /// One event with [`FORGED`] in its message, in a field of every kind, and in its span.
    fn forged_event() {
        let span = tracing::info_span!("job", task = %FORGED);
        let _entered = span.enter();
        let error = io::Error::other(FORGED);
        tracing::info!(
            target: "orchestrator::test",
            shown = %FORGED,
            debug = ?FORGED,
            text = FORGED,
            error = &error as &dyn std::error::Error,
            "{FORGED}"
        );
    }

    #[test]
    fn no_message_or_field_can_start_a_pretty_log_line_or_send_an_escape_sequence() {
        for ansi in [false, true] {
            let log = logged(LogFormat::Pretty, ansi, forged_event);
            assert_eq!(log.lines().count(), 1, "{log}");
            assert_eq!(
                log.matches(r"x\n2026-12-07T00:00:00.000000Z  INFO orchestrator::audit").count(),
                6,
                "{log}"
            );
            assert!(log.contains(r"principal=admin\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}"), "{log}");
            assert!(!without_colours(&log).trim_end_matches('\n').contains(is_control), "{log:?}");
        }
    }

    #[test]
    fn a_pretty_line_names_each_field_once_however_many_spans_carry_it() {
        for ansi in [false, true] {
            let log = logged(LogFormat::Pretty, ansi, || {
                let rpc = tracing::info_span!("rpc", task_id = tracing::field::Empty, method = "Deliberate");
                let _rpc = rpc.enter();
                rpc.record("task_id", tracing::field::display("odd1"));
                let job = tracing::info_span!("job", task_id = %"odd1");
                let _job = job.enter();
                let deliberation = tracing::info_span!("deliberation", task_id = "odd1", role = "DEV");
                let _deliberation = deliberation.enter();
                tracing::info!(target: "orchestrator::test", "proposals in");
                tracing::warn!(target: "orchestrator::test", task_id = "odd1", "deliberation failed");
            });
            let plain = without_colours(&log);
            let lines: Vec<&str> = plain.lines().collect();
            assert_eq!(lines.len(), 2, "{plain}");
            for line in &lines {
                assert_eq!(line.matches("task_id=").count(), 1, "{line}");
                assert!(line.contains("rpc:job:deliberation:"), "the spans are named: {line}");
            }
            // The rpc span's task_id, recorded after its method, comes after it.
            assert!(
                lines[0].ends_with("proposals in method=\"Deliberate\" task_id=odd1 role=\"DEV\""),
                "{}",
                lines[0]
            );
            assert!(
                lines[1].ends_with("deliberation failed task_id=\"odd1\" method=\"Deliberate\" role=\"DEV\""),
                "{}",
                lines[1]
            );
        }
    }

    #[test]
    fn json_log_lines_hold_any_value_whole_with_every_control_escaped() {
        let log = logged(LogFormat::Json, false, forged_event);
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(!log.trim_end_matches('\n').contains(is_control), "{log:?}");
        let event: serde_json::Value = serde_json::from_str(&log).unwrap();
        assert_eq!(event["shown"], FORGED);
        assert_eq!(event["text"], FORGED);
        assert_eq!(event["message"], FORGED);
        assert_eq!(event["span"]["task"], FORGED);
    }
}
