//! The end of a run: the summary on stdout, `--json`, `--plot`.

use super::cli::Common;
use super::kind::{self, Outcome};
use super::plot::{self, Chart};
use super::report::{self, Report};

/// Reports a finished run: summary, JSON, plot.
pub fn finish(r: Report, c: &Common) -> crate::Result<Outcome> {
    print!("{}", report::summary(&r));
    if let Some(path) = &c.json {
        let text = serde_json::to_string_pretty(&report::to_json(&r))
            .map_err(|e| kind::io("cannot encode the JSON", e.into()))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| kind::io(format_args!("cannot write {}", path.display()), e))?;
    }
    if let Some(path) = &c.plot {
        std::fs::write(path, plot::svg(&Chart::of(&r)))
            .map_err(|e| kind::io(format_args!("cannot write {}", path.display()), e))?;
    }
    Ok(Outcome::Done)
}
