//! Helpers shared by the integration tests.

pub mod cli;
pub mod cluster;
pub mod test;

use std::path::{Path, PathBuf};

use dbmaint::LoadOptions;
use dbmaint::plan::diag::render_text;
use dbmaint::plan::load::Loaded;

/// A fixed clock and an empty environment, so results never depend on the machine.
pub fn options() -> LoadOptions {
    LoadOptions {
        now: "2026-01-01T00:00:00Z".to_string(),
        ..LoadOptions::default()
    }
}

/// Options from a fixture's first line: `# args: --env NAME --var k=v --target URL`.
pub fn options_for(path: &Path) -> LoadOptions {
    let mut opts = options();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if let Some(args) = text.lines().next().and_then(|l| l.strip_prefix("# args:")) {
        let words: Vec<&str> = args.split_whitespace().collect();
        for pair in words.chunks(2) {
            match pair {
                ["--env", v] => opts.env = Some((*v).to_string()),
                ["--var", v] => opts.vars.push((*v).to_string()),
                ["--target", v] => opts.target = Some((*v).to_string()),
                other => panic!("unknown fixture argument {other:?} in {}", path.display()),
            }
        }
    }
    opts
}

/// The diagnostics as `plan validate` prints them.
pub fn rendered(loaded: &Loaded) -> String {
    render_text(&loaded.diags, &loaded.sources)
}

/// Codes of every diagnostic, in order.
pub fn codes(loaded: &Loaded) -> Vec<&'static str> {
    loaded.diags.items.iter().map(|d| d.code).collect()
}

/// `(file, line, column)` of the first diagnostic with `code`.
pub fn place(loaded: &Loaded, code: &str) -> (String, usize, usize) {
    let d = loaded
        .diags
        .items
        .iter()
        .find(|d| d.code == code)
        .unwrap_or_else(|| panic!("no `{code}` in {:?}", codes(loaded)));
    let label = d.primary.as_ref().expect("diagnostic has a place");
    let file = loaded.sources.get(label.file);
    let (line, col) = file.line_col(label.span.start);
    (file.name.clone(), line, col)
}

/// The `.yaml` files directly in `dir`, sorted.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}
