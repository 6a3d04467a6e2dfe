//! Command-line flags whose values are a library [`Choice`]: clap lists
//! the names and their descriptions in `--help`, and the library parses.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use ragafusion::choice::Choice;

/// The value parser of a flag taking one of `T`'s names.
pub(super) fn choice<T: Choice + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(
        T::ALL
            .iter()
            .map(|(_, name, help)| PossibleValue::new(*name).help(*help)),
    )
    .try_map(|s| T::from_name(&s))
}
