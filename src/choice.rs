//! Closed sets of named values: an enum whose values are chosen by name on
//! the command line, in experiment TOML files and in the server's JSON.
//!
//! [`choices!`](crate::choices) gives such an enum [`Choice`] plus
//! `FromStr` and `Display`, so that front ends parse and print names
//! without the library depending on any of them.

use crate::error::{Error, Result};

/// An enum chosen by name.
pub trait Choice: Copy + PartialEq + 'static {
    /// What the value is, for error messages (`quality`, `timbre`).
    const KIND: &'static str;
    /// Every value with its name and a one-line description, in the order
    /// shown to users.
    const ALL: &'static [(Self, &'static str, &'static str)];

    /// The value's name.
    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _, _)| *v == self)
            .map_or("", |(_, n, _)| n)
    }

    /// The value named `text` (ASCII case ignored); the error lists the
    /// names.
    fn from_name(text: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(text.trim()))
            .map(|(v, _, _)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, n, _)| *n).collect();
                Error::param(
                    Self::KIND,
                    format!("`{text}`: expected one of {}", names.join(", ")),
                )
            })
    }
}

/// Implements [`Choice`], `FromStr` and `Display` for an enum:
///
/// ```
/// #[derive(Debug, Clone, Copy, PartialEq)]
/// enum Speed { Fast, Slow }
/// ragafusion::choices!(Speed, "speed", [
///     Fast => "fast": "the quick way",
///     Slow => "slow": "the careful way",
/// ]);
/// assert_eq!("FAST".parse::<Speed>().unwrap(), Speed::Fast);
/// assert_eq!(Speed::Slow.to_string(), "slow");
/// ```
#[macro_export]
macro_rules! choices {
    ($ty:ty, $kind:literal, [$($variant:ident => $name:literal : $help:literal),+ $(,)?]) => {
        impl $crate::choice::Choice for $ty {
            const KIND: &'static str = $kind;
            const ALL: &'static [(Self, &'static str, &'static str)] =
                &[$((<$ty>::$variant, $name, $help)),+];
        }
        impl ::std::str::FromStr for $ty {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                <Self as $crate::choice::Choice>::from_name(s)
            }
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Colour {
        Red,
        DeepBlue,
    }
    crate::choices!(Colour, "colour", [
        Red => "red": "warm",
        DeepBlue => "deep-blue": "cold",
    ]);

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for (v, n, _) in Colour::ALL {
            assert_eq!(v.to_string(), *n);
            assert_eq!(n.parse::<Colour>().unwrap(), *v);
        }
        assert_eq!(" Deep-Blue ".parse::<Colour>().unwrap(), Colour::DeepBlue);
        let e = "green".parse::<Colour>().unwrap_err().to_string();
        assert!(e.contains("colour") && e.contains("red, deep-blue"), "{e}");
    }
}
