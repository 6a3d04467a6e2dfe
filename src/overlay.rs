//! Settings given by name over other settings: a front end's flags or form
//! fields arrive as one JSON object whose keys are the settings' own field
//! names, and are laid over defaults or a saved file.
//!
//! A value that is null, `false` or an empty list counts as not given (an
//! unset optional flag, a switch left off, a repeatable flag never used),
//! so it keeps the value underneath.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Whether `v` was given: not null, `false` or an empty list.
pub fn given(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false)) && v.as_array().is_none_or(|a| !a.is_empty())
}

/// The given fields of `fields` (a JSON object), by name.
pub fn given_fields(fields: &Value) -> Map<String, Value> {
    fields
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| given(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `base` with each given field of `fields` in place of its own. A field
/// `T` does not have, or a value of the wrong type, is refused when `T`
/// denies unknown fields; the error names `what` and the field.
pub fn overlay<T: Serialize + DeserializeOwned>(
    base: &T,
    fields: &Value,
    what: &'static str,
) -> Result<T> {
    let mut merged = serde_json::to_value(base).map_err(|e| Error::param(what, e.to_string()))?;
    let Some(obj) = merged.as_object_mut() else {
        return Err(Error::param(what, "is not a set of named fields"));
    };
    obj.extend(given_fields(fields));
    serde_json::from_value(merged).map_err(|e| Error::param(what, e.to_string()))
}

/// A value of `T` read from a front end's fields of the same names (a
/// verb's flags read into the library job they describe).
pub fn from_fields<T: DeserializeOwned>(fields: &impl Serialize, what: &'static str) -> Result<T> {
    let v = serde_json::to_value(fields).map_err(|e| Error::param(what, e.to_string()))?;
    serde_json::from_value(v).map_err(|e| Error::param(what, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct S {
        steps: u32,
        name: Option<String>,
        fast: bool,
        tags: Vec<String>,
    }

    fn base() -> S {
        S {
            steps: 3,
            name: Some("a".into()),
            fast: true,
            tags: vec!["x".into()],
        }
    }

    #[test]
    fn only_given_fields_replace_the_base() {
        let kept = overlay(
            &base(),
            &json!({"name": null, "fast": false, "tags": []}),
            "s",
        );
        assert_eq!(kept.unwrap(), base());
        let set = overlay(&base(), &json!({"steps": 9, "tags": ["y", "z"]}), "s").unwrap();
        assert_eq!(set.steps, 9);
        assert_eq!(set.tags, ["y", "z"]);
        assert_eq!(set.name.as_deref(), Some("a"));
    }

    #[test]
    fn unknown_fields_and_wrong_types_name_the_field() {
        let e = overlay(&base(), &json!({"stpes": 9}), "s").unwrap_err();
        assert!(e.to_string().contains("stpes"), "{e}");
        let e = overlay(&base(), &json!({"steps": "many"}), "s").unwrap_err();
        assert!(e.to_string().contains("s"), "{e}");
        assert!(from_fields::<S>(&json!({"steps": 1}), "s").is_err());
    }

    #[test]
    fn given_values() {
        for v in [json!(0), json!(true), json!(""), json!(["a"]), json!({})] {
            assert!(given(&v), "{v}");
        }
        for v in [json!(null), json!(false), json!([])] {
            assert!(!given(&v), "{v}");
        }
    }
}
