//! Text output shows what came from the database without letting it act
//! on the terminal: control characters (newline, CR, ESC, other C0 and C1)
//! and Unicode bidirectional overrides are printed as escapes, so a table
//! named `"zz\n\nPlan: 0 rows to remove\e[8m"` cannot forge or hide lines
//! of a diff. JSON output is exact and never passes here.

use std::fmt::Write as _;

/// `text` with every control or bidi-override character written as an
/// escape (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`); other text unchanged.
pub fn visible(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    let u = c as u32;
    u < 0x20 || (0x7f..=0x9f).contains(&u) || matches!(u, 0x200e | 0x200f | 0x061c | 0x202a..=0x202e | 0x2066..=0x2069)
}

/// Appends one line of text output, escaped; each call is exactly one line.
pub fn line(out: &mut String, text: impl AsRef<str>) {
    out.push_str(&visible(text.as_ref()));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_shown_not_obeyed() {
        assert_eq!(visible("core_audit_log"), "core_audit_log");
        assert_eq!(visible("zz\n\nPlan: 0\u{1b}[8m"), "zz\\n\\nPlan: 0\\x1b[8m");
        assert_eq!(visible("a\rb\tc\u{7f}"), "a\\rb\\tc\\x7f");
        assert_eq!(visible("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(visible("c1\u{85}"), "c1\\u{85}");
        assert_eq!(visible("naïve ünïcode ✓"), "naïve ünïcode ✓");
        let mut out = String::new();
        line(&mut out, "x\ny");
        assert_eq!(out, "x\\ny\n");
    }
}
