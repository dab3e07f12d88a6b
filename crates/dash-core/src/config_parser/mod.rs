//! config_parser: reads and validates service files.
//!
//! Text in, a [`ServiceSpec`] or a list of [`Diagnostic`]s out. TOML is parsed into raw types
//! that keep every value's byte span (`toml::Spanned`), then each field is validated, so an
//! error names the file, line, column, field, the bad value and what is accepted:
//!
//! ```text
//! web.toml:4:12: replicas = -1: must be between 0 and 100000; set replicas = 1, say
//! ```
//!
//! Syntax and type errors stop the parse at the first one (that is where TOML stops); semantic
//! errors are all reported at once.

mod diagnostic;
mod job;
mod raw;
mod validate;

pub use diagnostic::{Diagnostic, Diagnostics};

use crate::ServiceSpec;

/// Upper bound on replicas of one service: large enough for any real service (and for the
/// scale simulator's 100,000-replica services), small enough that a typo
/// (`replicas = 100000000`) is caught before the scheduler tries it.
pub const MAX_REPLICAS: u32 = 100_000;

/// Parses and validates one service file. `file` is only used in messages.
pub fn parse_service(file: &str, text: &str) -> Result<ServiceSpec, Diagnostics> {
    if text.trim().is_empty() {
        return Err(Diagnostics::one(Diagnostic {
            file: file.to_string(),
            line: 1,
            column: 1,
            field: String::new(),
            message: "the file is empty".into(),
            help: Some(
                "a service needs at least `name = \"web\"` and `image = \"busybox\"`".into(),
            ),
        }));
    }
    let raw: raw::RawService = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            return Err(Diagnostics::one(diagnostic::from_toml_error(
                file, text, &e,
            )));
        }
    };
    validate::validate(file, text, raw)
}

#[cfg(test)]
mod tests;
