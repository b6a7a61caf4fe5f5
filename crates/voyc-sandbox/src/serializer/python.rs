//! The few pieces of Python that DRF's fields lean on, as CPython 3.12 does them: what
//! `str()` makes of a parsed JSON value, what `str.strip()` and regular expressions' `\s`
//! take for whitespace, what `\d` and `int()` take for a digit, and what `int()` accepts.
//! Written from CPython's documented behaviour and checked against it (the tests' cases were
//! run through CPython 3.12).

use serde_json::Value;

/// The first code point of each run of ten decimal digits (Unicode category Nd, 0 to 9) in
/// Unicode 15.0, CPython 3.12's: what `\d` in a `str` pattern matches and `int()` reads.
/// Every run is ten code points long, in order, so a digit's value is its distance from its
/// run's first code point.
const DIGIT_ZEROS: [u32; 68] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950,
    0x1FBF0,
];

/// The value of a decimal digit of any script (`٣` is 3, `３` is 3), as `\d` and `int()` see it.
pub fn decimal_digit(c: char) -> Option<u32> {
    let code = u32::from(c);
    let run = DIGIT_ZEROS
        .partition_point(|&zero| zero <= code)
        .checked_sub(1)?;
    let value = code - DIGIT_ZEROS[run];
    (value < 10).then_some(value)
}

/// `str.isspace()`, which `str.strip()` and `\s` use: Unicode's whitespace and also the four
/// ASCII separators U+001C to U+001F.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `text.strip()`.
pub fn strip(text: &str) -> &str {
    text.trim_matches(is_space)
}

/// `int(text)` for base 10: optional whitespace around (Unicode's, without U+001C to U+001F),
/// an optional sign, and digits of any script with single underscores between them. `None`
/// where `int()` raises `ValueError`. The value saturates at the bounds of `i128`, far beyond
/// anything that is compared here.
pub fn int(text: &str) -> Option<i128> {
    let text = text.trim_matches(char::is_whitespace);
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut value: i128 = 0;
    let mut seen_digit = false;
    let mut after_underscore = false;
    for c in digits.chars() {
        if c == '_' {
            if !seen_digit || after_underscore {
                return None;
            }
            after_underscore = true;
            continue;
        }
        let digit = decimal_digit(c)?;
        value = value.saturating_mul(10).saturating_add(i128::from(digit));
        seen_digit = true;
        after_underscore = false;
    }
    (seen_digit && !after_underscore).then_some(if negative { -value } else { value })
}

/// `str(value)` of what Python's `json` module makes of a JSON value: `None`, `True`, `2`,
/// `2.0`, `1e+16`, a string as itself, and lists and dicts as their `repr`.
pub fn str_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => repr(other),
    }
}

/// `repr(value)` of a parsed JSON value.
fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(n), _, _) => n.to_string(),
            (_, Some(n), _) => n.to_string(),
            (_, _, Some(f)) => float_repr(f),
            _ => number.to_string(),
        },
        Value::String(text) => repr_str(text),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{}: {}", repr_str(key), repr(value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// `repr(f)` of a float: the shortest digits that read back as `f`, in positional form with
/// at least one decimal (`2.0`, `0.0001`) unless the exponent is below -4 or 16 and above
/// (`1e-05`, `1.5e+16`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("Rust's {:e} always has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    if f != 0.0 && !(-4..16).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let positional = format!("{f}");
    if positional.contains('.') {
        positional
    } else {
        positional + ".0"
    }
}

/// `repr(text)`: in single quotes (double ones when the text holds a single quote and no
/// double quote), with backslashes, that quote, and characters that do not print escaped.
/// Exact for ASCII; beyond it, only the C1 controls, the space and line separators and the
/// common format characters count as not printing (Python asks the Unicode database).
fn repr_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if prints(c) => out.push(c),
            c => {
                let code = u32::from(c);
                match code {
                    0..=0xff => out.push_str(&format!("\\x{code:02x}")),
                    0x100..=0xffff => out.push_str(&format!("\\u{code:04x}")),
                    _ => out.push_str(&format!("\\U{code:08x}")),
                }
            }
        }
    }
    out.push(quote);
    out
}

/// `c.isprintable()`, exactly for ASCII and approximately beyond (see [`repr_str`]).
fn prints(c: char) -> bool {
    match u32::from(c) {
        0x20..=0x7e => true,
        0..=0x1f | 0x7f..=0xa0 | 0xad => false,
        0x1680 | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f => false,
        0x3000 | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff | 0xf0000.. => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digits_of_every_script_have_their_value() {
        assert_eq!(decimal_digit('7'), Some(7));
        assert_eq!(decimal_digit('٣'), Some(3)); // ARABIC-INDIC DIGIT THREE
        assert_eq!(decimal_digit('３'), Some(3)); // FULLWIDTH DIGIT THREE
        assert_eq!(decimal_digit('\u{1D7FF}'), Some(9)); // MATHEMATICAL MONOSPACE DIGIT NINE
        for not_a_digit in ['a', '/', ':', '²', '½', 'Ⅳ', '\u{66a}'] {
            assert_eq!(decimal_digit(not_a_digit), None, "{not_a_digit:?}");
        }
    }

    #[test]
    fn strip_takes_the_ascii_separators_for_whitespace_and_int_does_not() {
        assert_eq!(strip("\u{1f} a\u{3000}\n"), "a");
        assert_eq!(int("\u{2003}2\n"), Some(2));
        assert_eq!(int("\u{1c}2"), None);
    }

    #[test]
    fn int_reads_what_python_reads() {
        for (text, value) in [
            ("2", 2),
            ("+2", 2),
            ("-0", 0),
            (" 007 ", 7),
            ("1_000", 1000),
            ("٣", 3),
            ("99999999999999999999999999999999999999999999", i128::MAX),
        ] {
            assert_eq!(int(text), Some(value), "{text:?}");
        }
        for text in [
            "", " ", "1__0", "_1", "1_", "+", "- 1", "2.0", "1e3", "0x10", "True",
        ] {
            assert_eq!(int(text), None, "{text:?}");
        }
    }

    #[test]
    fn floats_read_as_python_prints_them() {
        for (f, text) in [
            (2.0, "2.0"),
            (2.5, "2.5"),
            (-0.0, "-0.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (123.456, "123.456"),
        ] {
            assert_eq!(float_repr(f), text, "{f}");
        }
    }

    #[test]
    fn str_of_a_json_value_is_pythons() {
        assert_eq!(str_of(&json!("Ann")), "Ann");
        assert_eq!(str_of(&json!(true)), "True");
        assert_eq!(str_of(&json!(null)), "None");
        assert_eq!(str_of(&json!(17)), "17");
        assert_eq!(str_of(&json!(2.0)), "2.0");
        assert_eq!(str_of(&json!(["a", 1, false])), "['a', 1, False]");
        assert_eq!(
            str_of(&json!({"name": "Ann's", "q": "\"\n"})),
            r#"{'name': "Ann's", 'q': '"\n'}"#
        );
        assert_eq!(str_of(&json!(["\u{0}\u{7f}\u{a0}é"])), r"['\x00\x7f\xa0é']");
    }
}
