//! Diagnostics: what every stage reports, rendered rustc-style or as JSON.
//!
//! A [`Diag`] is a `miette::Diagnostic` (code, severity, help, labels, source)
//! and [`RustcHandler`] is the `miette::ReportHandler` that draws it:
//!
//! ```text
//! error[unknown-key]: unknown key `vacum` in step `nightly`
//!   --> plans/bad.yaml:12:5
//!    |
//! 12 |     vacum: {}
//!    |     ^^^^^ unknown key
//!    |
//!    = hint: did you mean `vacuum`?
//! ```
//!
//! Labels may point into several files (an overlay and its base plan); those
//! in another file than the primary one are drawn as `note` sections, and are
//! exposed to miette as `related()` diagnostics. Output has no colour, so it
//! reads the same in a terminal, a CI log and a snapshot.

use std::fmt::{self, Write as _};
use std::ops::Range;

use serde::Serialize;

use crate::plan::node::Pos;
use crate::plan::source::{FileId, Sources};

/// How bad a finding is. Warnings never make a plan invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A span in one file with an optional text under it.
#[derive(Debug, Clone)]
pub struct Label {
    pub file: FileId,
    pub span: Range<usize>,
    pub text: Option<String>,
}

/// One finding: a code, a message (a lowercase fragment), the place it points
/// at, further labels, and a hint saying what to do.
#[derive(Debug, Clone)]
pub struct Diag {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub primary: Option<Label>,
    pub secondary: Vec<Label>,
    pub hint: Option<String>,
}

impl Diag {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            hint: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    /// Points the diagnostic at `pos`, with `text` under the underline.
    pub fn at(mut self, pos: Pos, text: impl Into<Option<String>>) -> Self {
        self.primary = Some(Label {
            file: pos.file,
            span: pos.range(),
            text: text.into(),
        });
        self
    }

    /// Adds another labelled place (drawn after the primary one).
    pub fn also(mut self, pos: Pos, text: impl Into<String>) -> Self {
        self.secondary.push(Label {
            file: pos.file,
            span: pos.range(),
            text: Some(text.into()),
        });
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Every finding of one load, kept in the order found.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diag>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diag) {
        self.items.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diag::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    /// Sorts by file and position so output is stable and reads top-down;
    /// findings without a place come first.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| {
            d.primary
                .as_ref()
                .map(|l| (1, l.file, l.span.start))
                .unwrap_or((0, FileId(0), 0))
        });
    }
}

/// The JSON form of one diagnostic, as cli.md and the issue define it.
#[derive(Debug, Serialize)]
pub struct JsonDiag {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub hint: Option<String>,
}

/// `{"valid": bool, "diagnostics": [...]}`.
#[derive(Debug, Serialize)]
pub struct JsonReport {
    pub valid: bool,
    pub diagnostics: Vec<JsonDiag>,
}

pub fn to_json(diags: &Diagnostics, sources: &Sources) -> JsonReport {
    let diagnostics = diags
        .items
        .iter()
        .map(|d| {
            let place = d.primary.as_ref().map(|l| {
                let f = sources.get(l.file);
                let (line, col) = f.line_col(l.span.start);
                (f.name.clone(), line, col)
            });
            JsonDiag {
                severity: d.severity,
                code: d.code,
                message: d.message.clone(),
                file: place.as_ref().map(|p| p.0.clone()),
                line: place.as_ref().map(|p| p.1),
                column: place.as_ref().map(|p| p.2),
                hint: d.hint.clone(),
            }
        })
        .collect();
    JsonReport {
        valid: !diags.has_errors(),
        diagnostics,
    }
}

/// A [`Diag`] bound to the sources it points into: the `miette::Diagnostic`.
#[derive(Debug)]
pub struct Bound<'a> {
    pub diag: &'a Diag,
    pub sources: &'a Sources,
    /// Labels of this (possibly `related`) diagnostic, all in one file.
    labels: Vec<Label>,
    related: Vec<Bound<'a>>,
    is_note: bool,
}

impl<'a> Bound<'a> {
    pub fn new(diag: &'a Diag, sources: &'a Sources) -> Self {
        let primary_file = diag.primary.as_ref().map(|l| l.file);
        let mut labels: Vec<Label> = diag.primary.iter().cloned().collect();
        let mut related: Vec<Bound<'a>> = Vec::new();
        for l in &diag.secondary {
            if Some(l.file) == primary_file {
                labels.push(l.clone());
            } else if let Some(r) = related.iter_mut().find(|r| r.labels[0].file == l.file) {
                r.labels.push(l.clone());
            } else {
                related.push(Bound {
                    diag,
                    sources,
                    labels: vec![l.clone()],
                    related: Vec::new(),
                    is_note: true,
                });
            }
        }
        Bound {
            diag,
            sources,
            labels,
            related,
            is_note: false,
        }
    }
}

impl fmt::Display for Bound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_note {
            f.write_str("related place")
        } else {
            f.write_str(&self.diag.message)
        }
    }
}

impl std::error::Error for Bound<'_> {}

impl miette::Diagnostic for Bound<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        (!self.is_note).then(|| Box::new(self.diag.code) as Box<dyn fmt::Display>)
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match (self.is_note, self.diag.severity) {
            (true, _) => miette::Severity::Advice,
            (false, Severity::Error) => miette::Severity::Error,
            (false, Severity::Warning) => miette::Severity::Warning,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        if self.is_note {
            return None;
        }
        self.diag.hint.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        let file = self.labels.first()?.file;
        Some(&self.sources.get(file).named as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let file = self.sources.get(self.labels.first()?.file);
        Some(Box::new(self.labels.iter().enumerate().map(move |(i, l)| {
            // Spans are offsets into the text as written; miette draws the
            // masked text.
            let start = file.shown(l.span.start);
            let span = (start, file.shown(l.span.start + l.span.len()) - start);
            if i == 0 {
                miette::LabeledSpan::new_primary_with_span(l.text.clone(), span)
            } else {
                miette::LabeledSpan::new_with_span(l.text.clone(), span)
            }
        })))
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
    }
}

/// Draws any `miette::Diagnostic` the way rustc does, without colour. The file
/// name comes from the source's `SpanContents::name` (a `NamedSource`).
#[derive(Debug, Default)]
pub struct RustcHandler;

impl RustcHandler {
    fn render(&self, d: &dyn miette::Diagnostic, out: &mut String) -> fmt::Result {
        let sev = match d.severity() {
            Some(miette::Severity::Warning) => "warning",
            Some(miette::Severity::Advice) => "note",
            _ => "error",
        };
        match d.code() {
            Some(code) => writeln!(out, "{sev}[{code}]: {d}")?,
            None => writeln!(out, "{sev}: {d}")?,
        }
        let labels: Vec<miette::LabeledSpan> = d.labels().map(|l| l.collect()).unwrap_or_default();
        let mut gutter = 0;
        let mut blocks = Vec::new();
        let mut name = None;
        if let Some(src) = d.source_code() {
            for (i, label) in labels.iter().enumerate() {
                // With context lines, miette returns whole lines around the
                // span; find the one holding the span's start.
                let Ok(contents) = src.read_span(label.inner(), 1, 1) else {
                    continue;
                };
                if name.is_none() {
                    name = contents.name().map(str::to_string);
                }
                let region = String::from_utf8_lossy(contents.data()).into_owned();
                let region_start = contents.span().offset();
                let mut line_no = contents.line() + 1;
                let mut line_start = region_start;
                let mut text = "";
                for line in region.split_inclusive('\n') {
                    if label.offset() < line_start + line.len()
                        || line_start + line.len() >= region_start + region.len()
                    {
                        text = line.trim_end_matches(['\n', '\r']);
                        break;
                    }
                    line_start += line.len();
                    line_no += 1;
                }
                let col_bytes = label.offset().saturating_sub(line_start).min(text.len());
                let col = text.get(..col_bytes).map_or(col_bytes, |s| s.chars().count());
                let end = (col_bytes + label.len()).min(text.len());
                let width = text.get(col_bytes..end).map_or(1, |s| s.chars().count().max(1));
                gutter = gutter.max(line_no.to_string().len());
                let (shown, col0, width) = excerpt(text, col, width);
                blocks.push((
                    i,
                    line_no,
                    col + 1,
                    shown,
                    col0,
                    width,
                    label.label().map(str::to_string),
                ));
            }
        }
        let pad = " ".repeat(gutter);
        let name = name.unwrap_or_else(|| "<input>".to_string());
        for (n, (i, line_no, col, text, col0, width, label_text)) in blocks.iter().enumerate() {
            if n == 0 {
                writeln!(out, "{pad}--> {name}:{line_no}:{col}")?;
            } else {
                writeln!(out, "{pad}::: {name}:{line_no}:{col}")?;
            }
            writeln!(out, "{pad} |")?;
            writeln!(out, "{line_no:>gutter$} | {text}")?;
            let mark = if *i == 0 { "^" } else { "-" };
            let under = format!("{}{}", " ".repeat(*col0), mark.repeat(*width));
            match label_text {
                Some(t) => writeln!(out, "{pad} | {under} {t}")?,
                None => writeln!(out, "{pad} | {under}")?,
            }
        }
        if let Some(help) = d.help() {
            if !blocks.is_empty() {
                writeln!(out, "{pad} |")?;
            }
            writeln!(out, "{pad} = hint: {help}")?;
        }
        if let Some(related) = d.related() {
            for r in related {
                self.render(r, out)?;
            }
        }
        Ok(())
    }
}

impl miette::ReportHandler for RustcHandler {
    fn debug(&self, d: &dyn miette::Diagnostic, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.render(d, &mut out)?;
        f.write_str(&out)
    }
}

/// The source line as shown under a diagnostic: whole when short, else a
/// window of [`EXCERPT_CHARS`] around the column with `…` at the cut ends,
/// so a 10 MB line prints a few hundred bytes. Returns the text, the
/// marker's column in it and the marker's width.
fn excerpt(text: &str, col: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= EXCERPT_CHARS {
        return (text.to_string(), col, width);
    }
    let start = col.saturating_sub(EXCERPT_CHARS / 3);
    let end = (start + EXCERPT_CHARS).min(chars.len());
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    let col0 = col - start + usize::from(start > 0);
    (shown, col0, width.min(end.saturating_sub(col)).max(1))
}

const EXCERPT_CHARS: usize = 160;

/// Renders every diagnostic, as `plan validate` prints them.
pub fn render_text(diags: &Diagnostics, sources: &Sources) -> String {
    let mut out = String::new();
    for d in &diags.items {
        let _ = RustcHandler.render(&Bound::new(d, sources), &mut out);
        out.push('\n');
    }
    out
}

/// Closing line: `error: plan is invalid: 3 errors, 1 warning`.
pub fn summary(diags: &Diagnostics) -> String {
    let errors = diags.error_count();
    let warnings = diags.items.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    if errors > 0 {
        format!(
            "error: plan is invalid: {}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    } else {
        format!("plan is valid ({})", plural(warnings, "warning"))
    }
}
