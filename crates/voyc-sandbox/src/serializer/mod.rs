//! Call 1's metadata checked the way Voyc's server checks it: Voyc is a Django REST Framework
//! service, so its view runs the body through a serializer whose fields are, as far as the API
//! document tells (reserved keys, their formats, which are required):
//!
//! ```python
//! class UploadDataSerializer(serializers.Serializer):
//!     channel_id = serializers.CharField()
//!     call_date = serializers.DateField()
//!     call_time = serializers.TimeField()
//!     agent = serializers.CharField()
//!     direction = serializers.ChoiceField(["inbound", "outbound", "internal"], required=False)
//!     language = serializers.CharField(required=False)
//!     speakers = serializers.IntegerField(min_value=1, required=False)
//! ```
//!
//! These are the sandbox's own rules, written from DRF 3.18's `rest_framework/fields.py` and
//! Django 6.1's `django/utils/dateparse.py`, never from the client's validation code: a client
//! rule that disagrees with Voyc then shows up as a refused row in our tests (and in the fuzz
//! property that every row the client calls valid is accepted here). What each rule copies:
//!
//! - Every field (`Field.validate_empty_values`): a missing required key is `required` "This
//!   field is required.", a missing optional one is skipped; `null` is `null` "This field may
//!   not be null." (no field has `allow_null`).
//! - `CharField` (`run_validation`, `to_internal_value`): a string that is empty or only
//!   whitespace once stripped (Python's `str.strip()`) is `blank` "This field may not be
//!   blank."; numbers are taken as their text; `true`/`false`, arrays and objects are
//!   `invalid` "Not a valid string."; then `ProhibitNullCharactersValidator`: a NUL is
//!   `null_characters_not_allowed` "Null characters are not allowed.".
//! - `DateField` (default `input_formats`, `iso-8601`): Django's `parse_date` (see
//!   `dateparse.rs`); anything it does not take, a day that does not exist included (its
//!   `ValueError` is caught like a `None`), and any value that is not a string is `invalid`
//!   "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.". No date is too
//!   late: a future date passes.
//! - `TimeField`: Django's `parse_time` likewise, `invalid` "Time has wrong format. Use one of
//!   these formats instead: hh:mm[:ss[.uuuuuu]].".
//! - `ChoiceField` (`to_internal_value`): `str(value)` must be one of the choices exactly (case
//!   and spaces count); otherwise `invalid_choice` `"{value}" is not a valid choice.`, with the
//!   value as Python's `str()` prints it (an empty string too: no `allow_blank`).
//! - `IntegerField` (`to_internal_value`): a string over 1000 characters is
//!   `max_string_length` "String value too large."; otherwise `int()` of `str(value)` with a
//!   trailing `\.0*\s*$` cut off (`re_decimal`), so `2`, `"2"`, `2.0`, `"2.0"` and `" 2 "` are
//!   2, and what `int()` refuses is `invalid` "A valid integer is required."; then
//!   `MinValueValidator(1)`: `min_value` "Ensure this value is greater than or equal to 1.".
//! - `Serializer.to_internal_value`: the fields are checked in the order above, each one's
//!   errors in the order DRF finds them; keys the serializer does not name are left alone (the
//!   sandbox keeps them as the conversation's metadata).
//!
//! Where Python and Rust differ before the serializer runs: a lone UTF-16 surrogate (`"\ud800"`)
//! is a JSON parse error here (Python's `json` accepts it and the `CharField`s refuse it), and
//! an integer beyond 64 bits arrives as a float (Python's stays an integer).

mod dateparse;
mod python;

use serde_json::{Map, Value};

/// One thing Voyc's serializer would refuse, with DRF's `code` and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The key at fault.
    pub field: &'static str,
    /// DRF's error code: `required`, `null`, `blank`, `invalid`, `invalid_choice`,
    /// `min_value`, `max_string_length` or `null_characters_not_allowed`.
    pub code: &'static str,
    /// DRF's message, e.g. "This field is required.".
    pub message: String,
}

/// The kinds of field call 1's serializer has.
#[derive(Clone, Copy)]
enum Kind {
    Char,
    Date,
    Time,
    Choice(&'static [&'static str]),
    /// `IntegerField(min_value=...)`.
    Integer(i128),
}

struct Field {
    name: &'static str,
    required: bool,
    kind: Kind,
}

/// The serializer's fields, in their order.
const FIELDS: [Field; 7] = [
    Field {
        name: "channel_id",
        required: true,
        kind: Kind::Char,
    },
    Field {
        name: "call_date",
        required: true,
        kind: Kind::Date,
    },
    Field {
        name: "call_time",
        required: true,
        kind: Kind::Time,
    },
    Field {
        name: "agent",
        required: true,
        kind: Kind::Char,
    },
    Field {
        name: "direction",
        required: false,
        kind: Kind::Choice(&["inbound", "outbound", "internal"]),
    },
    Field {
        name: "language",
        required: false,
        kind: Kind::Char,
    },
    Field {
        name: "speakers",
        required: false,
        kind: Kind::Integer(1),
    },
];

/// `IntegerField.MAX_STRING_LENGTH`.
const MAX_STRING_LENGTH: usize = 1000;

/// Checks call 1's body as Voyc's serializer would: every error, field by field.
pub fn validate(body: &Map<String, Value>) -> Result<(), Vec<FieldError>> {
    let errors: Vec<FieldError> = FIELDS
        .iter()
        .flat_map(|field| {
            check(field, body.get(field.name))
                .into_iter()
                .map(|(code, message)| FieldError {
                    field: field.name,
                    code,
                    message,
                })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

type Problem = (&'static str, String);

fn problem(code: &'static str, message: &str) -> Vec<Problem> {
    vec![(code, message.to_string())]
}

/// `field.run_validation(value)`: its errors, none when the value passes.
fn check(field: &Field, value: Option<&Value>) -> Vec<Problem> {
    let Some(value) = value else {
        return match field.required {
            true => problem("required", "This field is required."),
            false => Vec::new(),
        };
    };
    // CharField looks for a blank value before anything else (`str(None)` is not blank).
    if let (Kind::Char, Value::String(text)) = (field.kind, value)
        && python::strip(text).is_empty()
    {
        return problem("blank", "This field may not be blank.");
    }
    if value.is_null() {
        return problem("null", "This field may not be null.");
    }
    match field.kind {
        Kind::Char => char_field(value),
        Kind::Date => match value {
            Value::String(text) if dateparse::parse_date(text).is_some() => Vec::new(),
            _ => problem(
                "invalid",
                "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
            ),
        },
        Kind::Time => match value {
            Value::String(text) if dateparse::parse_time(text).is_some() => Vec::new(),
            _ => problem(
                "invalid",
                "Time has wrong format. Use one of these formats instead: hh:mm[:ss[.uuuuuu]].",
            ),
        },
        Kind::Choice(choices) => {
            let text = python::str_of(value);
            if choices.contains(&text.as_str()) {
                Vec::new()
            } else {
                vec![(
                    "invalid_choice",
                    format!("\"{text}\" is not a valid choice."),
                )]
            }
        }
        Kind::Integer(min) => integer_field(value, min),
    }
}

/// `CharField.to_internal_value` and its validators.
fn char_field(value: &Value) -> Vec<Problem> {
    if matches!(value, Value::Bool(_) | Value::Array(_) | Value::Object(_)) {
        return problem("invalid", "Not a valid string.");
    }
    if python::strip(&python::str_of(value)).contains('\0') {
        return problem(
            "null_characters_not_allowed",
            "Null characters are not allowed.",
        );
    }
    Vec::new()
}

/// `IntegerField.to_internal_value` and `MinValueValidator(min)`.
fn integer_field(value: &Value, min: i128) -> Vec<Problem> {
    if let Value::String(text) = value
        && text.chars().count() > MAX_STRING_LENGTH
    {
        return problem("max_string_length", "String value too large.");
    }
    let text = python::str_of(value);
    match python::int(without_decimal_zeros(&text)) {
        None => problem("invalid", "A valid integer is required."),
        Some(n) if n < min => vec![(
            "min_value",
            format!("Ensure this value is greater than or equal to {min}."),
        )],
        Some(_) => Vec::new(),
    }
}

/// `re.sub(r'\.0*\s*$', '', text)`: a trailing point with only zeros and whitespace after
/// it is cut off (the first point from which that holds).
fn without_decimal_zeros(text: &str) -> &str {
    text.match_indices('.')
        .map(|(at, _)| at)
        .find(|&at| {
            text[at + 1..]
                .trim_start_matches('0')
                .chars()
                .all(python::is_space)
        })
        .map_or(text, |at| &text[..at])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Every expected answer below is what DRF 3.18.3 on Django 6.1.3 and CPython 3.12 answered
    // for the serializer in this module's comment.

    fn valid() -> Value {
        json!({
            "channel_id": "42", "call_date": "2024-02-29", "call_time": "09:05:00",
            "agent": "Ann", "direction": "inbound", "language": "en", "speakers": 2,
            "team": "north"
        })
    }

    /// The errors for `valid()` with `field` set to `value` (or removed, for `None`).
    fn errors_with(field: &str, value: Option<Value>) -> Vec<(&'static str, &'static str, String)> {
        let mut body = valid();
        match value {
            Some(value) => body[field] = value,
            None => {
                body.as_object_mut().unwrap().remove(field);
            }
        }
        match validate(body.as_object().unwrap()) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| (e.field, e.code, e.message))
                .collect(),
        }
    }

    fn code_with(field: &str, value: Value) -> Option<&'static str> {
        let errors = errors_with(field, Some(value));
        assert!(errors.len() <= 1, "{errors:?}");
        errors.first().map(|(_, code, _)| *code)
    }

    #[test]
    fn a_complete_body_with_custom_keys_passes() {
        assert_eq!(validate(valid().as_object().unwrap()), Ok(()));
    }

    #[test]
    fn a_missing_required_key_is_required_and_a_missing_optional_one_passes() {
        for field in ["channel_id", "call_date", "call_time", "agent"] {
            assert_eq!(
                errors_with(field, None),
                [(field, "required", "This field is required.".to_string())]
            );
        }
        for field in ["direction", "language", "speakers"] {
            assert_eq!(errors_with(field, None), [], "{field}");
        }
    }

    #[test]
    fn null_is_refused_by_every_field_even_the_optional_ones() {
        for field in FIELDS.iter().map(|f| f.name) {
            assert_eq!(
                errors_with(field, Some(Value::Null)),
                [(field, "null", "This field may not be null.".to_string())]
            );
        }
    }

    #[test]
    fn every_error_of_a_body_comes_in_the_serializers_field_order() {
        let body = json!({"agent": [], "channel_id": " ", "call_date": "2024-13-01"});
        let got: Vec<_> = validate(body.as_object().unwrap())
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect();
        assert_eq!(
            got,
            [
                ("channel_id", "blank"),
                ("call_date", "invalid"),
                ("call_time", "required"),
                ("agent", "invalid"),
            ]
        );
    }

    #[test]
    fn char_fields_take_strings_and_numbers_and_refuse_blanks_booleans_and_containers() {
        for good in [
            json!("A"),
            json!(" A "),
            json!(7),
            json!(0),
            json!(2.5),
            json!("é"),
        ] {
            assert_eq!(code_with("agent", good.clone()), None, "{good}");
        }
        for blank in ["", "  ", "\t\n", "\u{3000}", "\u{1f}"] {
            assert_eq!(code_with("agent", json!(blank)), Some("blank"), "{blank:?}");
            assert_eq!(
                code_with("language", json!(blank)),
                Some("blank"),
                "{blank:?}"
            );
        }
        for bad in [
            json!(true),
            json!(false),
            json!([]),
            json!(["A"]),
            json!({"name": "Ann"}),
        ] {
            assert_eq!(
                errors_with("channel_id", Some(bad.clone())),
                [("channel_id", "invalid", "Not a valid string.".to_string())],
                "{bad}"
            );
        }
        assert_eq!(
            errors_with("agent", Some(json!("A\u{0}nn"))),
            [(
                "agent",
                "null_characters_not_allowed",
                "Null characters are not allowed.".to_string()
            )]
        );
    }

    #[test]
    fn a_date_in_any_form_django_reads_passes_and_the_future_too() {
        for good in [
            "2024-02-29",
            "2024-3-5",
            "20240305",
            "2024-W05-3",
            "2999-01-01",
        ] {
            assert_eq!(code_with("call_date", json!(good)), None, "{good}");
        }
    }

    #[test]
    fn a_date_django_cannot_read_or_that_does_not_exist_has_the_wrong_format() {
        for bad in [
            json!("2024-02-30"),
            json!("2023-02-29"),
            json!("2024-13-01"),
            json!("03/02/2024"),
            json!("2024-02-03T10:00:00"),
            json!(""),
            json!(" "),
            json!(20240203),
            json!(true),
            json!(["2024-02-03"]),
        ] {
            assert_eq!(
                errors_with("call_date", Some(bad.clone())),
                [(
                    "call_date",
                    "invalid",
                    "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
                        .to_string()
                )],
                "{bad}"
            );
        }
    }

    #[test]
    fn a_time_django_cannot_read_or_that_does_not_exist_has_the_wrong_format() {
        for good in ["09:05:00", "9:05", "09:05", "09:05:00.25", "0905", "09:05Z"] {
            assert_eq!(code_with("call_time", json!(good)), None, "{good}");
        }
        for bad in [
            json!("24:00:00"),
            json!("12:60:00"),
            json!("23:59:60"),
            json!("9h05"),
            json!(""),
            json!(930),
        ] {
            assert_eq!(
                errors_with("call_time", Some(bad.clone())),
                [(
                    "call_time",
                    "invalid",
                    "Time has wrong format. Use one of these formats instead: hh:mm[:ss[.uuuuuu]]."
                        .to_string()
                )],
                "{bad}"
            );
        }
    }

    #[test]
    fn direction_must_be_one_of_the_choices_exactly() {
        for good in ["inbound", "outbound", "internal"] {
            assert_eq!(code_with("direction", json!(good)), None);
        }
        for (bad, shown) in [
            (json!("Inbound"), "Inbound"),
            (json!(" inbound"), " inbound"),
            (json!(""), ""),
            (json!("sideways"), "sideways"),
            (json!(1), "1"),
            (json!(true), "True"),
            (json!(["inbound"]), "['inbound']"),
        ] {
            assert_eq!(
                errors_with("direction", Some(bad.clone())),
                [(
                    "direction",
                    "invalid_choice",
                    format!("\"{shown}\" is not a valid choice.")
                )],
                "{bad}"
            );
        }
    }

    #[test]
    fn speakers_is_an_integer_of_at_least_one_as_drf_reads_integers() {
        for good in [
            json!(2),
            json!("2"),
            json!(2.0),
            json!("2.0"),
            json!(" 2 "),
            json!("2."),
            json!("2.00\n"),
            json!("+3"),
            json!("1_0"),
            json!(1e10),
        ] {
            assert_eq!(code_with("speakers", good.clone()), None, "{good}");
        }
        for bad in [
            json!("2.5"),
            json!(2.5),
            json!("two"),
            json!(""),
            json!(true),
            json!([2]),
            json!(1e16),
            json!("1e3"),
            json!("2.0.0"),
        ] {
            assert_eq!(
                errors_with("speakers", Some(bad.clone())),
                [(
                    "speakers",
                    "invalid",
                    "A valid integer is required.".to_string()
                )],
                "{bad}"
            );
        }
        for low in [json!(0), json!("0"), json!(-1), json!("-2.0"), json!(0.0)] {
            assert_eq!(
                errors_with("speakers", Some(low.clone())),
                [(
                    "speakers",
                    "min_value",
                    "Ensure this value is greater than or equal to 1.".to_string()
                )],
                "{low}"
            );
        }
        assert_eq!(
            code_with("speakers", json!("1".repeat(1001))),
            Some("max_string_length")
        );
        assert_eq!(code_with("speakers", json!("1".repeat(1000))), None);
    }
}
