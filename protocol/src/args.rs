//! Single-pass decoding of a request body into a function's argument type.
//!
//! A request body is `{"args": [...], "kwargs": {...}}`. A function declares
//! how it takes its arguments with [`ArgsShape`]: positionally as a tuple of a
//! known arity, or as one struct whose fields are the keyword names (filled
//! from `kwargs`, or from `args` in field order). Arguments are decoded
//! straight from the body bytes into the target type, with no intermediate
//! value tree.

use crate::codec::{check_value_count, rmpv_depth, serde_depth};
use rmpv::Value;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserializer;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

/// How a function takes its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgsShape {
    /// A tuple of exactly this many positional arguments; keyword arguments are refused.
    Positional {
        /// Number of parameters.
        arity: usize,
    },
    /// One struct (or map) filled from keyword arguments. When its field names
    /// are known, positional arguments fill fields in order first, keyword
    /// arguments fill the rest, and unknown or repeated names are refused.
    Keyword {
        /// The struct's field names, in declaration order (`None` for maps).
        fields: Option<&'static [&'static str]>,
    },
}

/// Why a request body did not decode into a function's arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// The body is not a MessagePack map with array `args` and map `kwargs`.
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// The body is well formed but the arguments do not fit the function.
    #[error("{0}")]
    Mismatch(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Malformed,
    Mismatch,
}

/// Decodes `body` into `T` according to `shape`.
pub fn decode_args<T: DeserializeOwned>(body: &[u8], shape: ArgsShape) -> Result<T, ArgsError> {
    check_value_count(body).map_err(|e| ArgsError::Malformed(e.to_string()))?;
    match shape {
        ArgsShape::Positional { arity } => decode_positional(body, arity),
        ArgsShape::Keyword { fields } => decode_keyword(body, fields),
    }
}

/// Positional arguments decode in one pass, straight from the body bytes.
fn decode_positional<T: DeserializeOwned>(body: &[u8], arity: usize) -> Result<T, ArgsError> {
    let fault = Cell::new(Fault::Malformed);
    let mut rest = body;
    let mut deserializer = rmp_serde::Deserializer::new(&mut rest);
    deserializer.set_max_depth(serde_depth());
    let result = deserializer.deserialize_map(BodyVisitor::<T> {
        arity,
        fault: &fault,
        target: PhantomData,
    });
    drop(deserializer);
    match result {
        Ok(_) if !rest.is_empty() => {
            Err(ArgsError::Malformed("trailing bytes after the body".into()))
        }
        Ok(value) => Ok(value),
        Err(e) => Err(match fault.get() {
            Fault::Malformed => ArgsError::Malformed(e.to_string()),
            Fault::Mismatch => ArgsError::Mismatch(e.to_string()),
        }),
    }
}

/// Reads a request body map for a function taking `arity` positional arguments.
struct BodyVisitor<'c, T> {
    arity: usize,
    fault: &'c Cell<Fault>,
    target: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> Visitor<'de> for BodyVisitor<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request body map with \"args\" and \"kwargs\"")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<T, M::Error> {
        let mut from_args: Option<T> = None;
        while let Some(key) = map.next_key::<KeyName>()? {
            match key {
                KeyName::Args => {
                    let seed = ArgsSeed::<T> {
                        arity: self.arity,
                        fault: self.fault,
                        target: PhantomData,
                    };
                    from_args = map.next_value_seed(seed)?;
                }
                KeyName::Kwargs => map.next_value_seed(NoKwargs { fault: self.fault })?,
                KeyName::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        self.fault.set(Fault::Mismatch);
        match (from_args, self.arity) {
            (Some(value), _) => Ok(value),
            (None, 0) => T::deserialize(de::value::UnitDeserializer::<M::Error>::new()),
            (None, arity) => Err(de::Error::custom(format!(
                "takes {arity} positional argument{} but 0 were given",
                plural(arity)
            ))),
        }
    }
}

/// "1 was given", "3 were given".
fn given_count(n: usize) -> String {
    if n == 1 {
        "1 was given".into()
    } else {
        format!("{n} were given")
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

enum KeyName {
    Args,
    Kwargs,
    Other,
}

impl<'de> de::Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyName, E> {
                Ok(match v {
                    "args" => KeyName::Args,
                    "kwargs" => KeyName::Kwargs,
                    _ => KeyName::Other,
                })
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<KeyName, E> {
                Ok(match v {
                    b"args" => KeyName::Args,
                    b"kwargs" => KeyName::Kwargs,
                    _ => KeyName::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Decodes the `args` array; `None` when it is empty or nil.
struct ArgsSeed<'c, T> {
    arity: usize,
    fault: &'c Cell<Fault>,
    target: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for ArgsSeed<'_, T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for ArgsSeed<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of positional arguments")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Option<T>, S::Error> {
        let given = seq.size_hint().unwrap_or(0);
        if given == 0 {
            return Ok(None);
        }
        self.fault.set(Fault::Mismatch);
        let arity = self.arity;
        if given != arity {
            return Err(de::Error::custom(format!(
                "takes {arity} positional argument{} but {}",
                plural(arity),
                given_count(given)
            )));
        }
        let numbered = NumberedSeq {
            inner: seq,
            index: 0,
        };
        let value = T::deserialize(de::value::SeqAccessDeserializer::new(numbered))?;
        self.fault.set(Fault::Malformed);
        Ok(Some(value))
    }
}

/// Keyword arguments: merge positional and keyword values by field name, then decode.
fn decode_keyword<T: DeserializeOwned>(
    body: &[u8],
    fields: Option<&'static [&'static str]>,
) -> Result<T, ArgsError> {
    let malformed = |m: &str| ArgsError::Malformed(m.to_owned());
    let mismatch = |m: String| ArgsError::Mismatch(m);
    let mut rest = body;
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, rmpv_depth())
        .map_err(|e| ArgsError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after the body"));
    }
    let Value::Map(entries) = value else {
        return Err(malformed("the body is not a map"));
    };
    let mut args = Vec::new();
    let mut kwargs = Vec::new();
    for (key, value) in entries {
        match (key.as_str(), value) {
            (Some("args"), Value::Array(items)) => args = items,
            (Some("kwargs"), Value::Map(items)) => kwargs = items,
            (Some("args" | "kwargs"), Value::Nil) => {}
            (Some("args"), _) => return Err(malformed("\"args\" is not an array")),
            (Some("kwargs"), _) => return Err(malformed("\"kwargs\" is not a map")),
            _ => {}
        }
    }
    let merged = match fields {
        None if !args.is_empty() => {
            return Err(mismatch("takes keyword arguments only".into()));
        }
        None => kwargs,
        Some(fields) => {
            if args.len() > fields.len() {
                return Err(mismatch(format!(
                    "takes at most {} positional argument{} but {}",
                    fields.len(),
                    plural(fields.len()),
                    given_count(args.len())
                )));
            }
            let mut merged: Vec<(Value, Value)> = fields
                .iter()
                .zip(args)
                .map(|(name, value)| (Value::from(*name), value))
                .collect();
            for (key, value) in kwargs {
                let Some(name) = key.as_str() else {
                    return Err(mismatch("keyword argument names must be strings".into()));
                };
                if !fields.contains(&name) {
                    return Err(mismatch(format!(
                        "got an unexpected keyword argument '{name}'"
                    )));
                }
                if merged.iter().any(|(k, _)| k.as_str() == Some(name)) {
                    return Err(mismatch(format!(
                        "got multiple values for argument '{name}'"
                    )));
                }
                merged.push((key, value));
            }
            merged
        }
    };
    rmpv::ext::from_value(Value::Map(merged)).map_err(|e| mismatch(readable(&e)))
}

/// The field names of a struct type, as its `Deserialize` impl declares them;
/// `None` for types that are not structs (maps, tuples, scalars).
pub fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let probe = FieldProbe::default();
    let _ = T::deserialize(&probe);
    probe.fields.get()
}

#[derive(Default)]
struct FieldProbe {
    fields: Cell<Option<&'static [&'static str]>>,
}

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<M: fmt::Display>(_: M) -> Self {
        ProbeDone
    }
}

impl<'de> Deserializer<'de> for &FieldProbe {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        self.fields.set(Some(fields));
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Prefixes element errors with the 1-based argument position.
struct NumberedSeq<S> {
    inner: S,
    index: usize,
}

impl<'de, S: SeqAccess<'de>> SeqAccess<'de> for NumberedSeq<S> {
    type Error = S::Error;

    fn next_element_seed<E: DeserializeSeed<'de>>(
        &mut self,
        seed: E,
    ) -> Result<Option<E::Value>, S::Error> {
        self.index += 1;
        let index = self.index;
        self.inner
            .next_element_seed(seed)
            .map_err(|e| de::Error::custom(format!("argument {index}: {}", readable(&e))))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Rewrites a mismatch message in the caller's terms, naming what the parameter expects:
/// `argument 1: wrong type: got a string` for an `i64` parameter becomes
/// `argument 1: expected an integer, got a string`. `params` are the parameters' Rust type
/// names (`std::any::type_name`), in order; empty when unknown (keyword functions).
pub fn explain_mismatch(message: &str, params: &[&str]) -> String {
    let (prefix, rest, index) = match message
        .strip_prefix("argument ")
        .and_then(|m| m.split_once(": "))
        .and_then(|(n, rest)| Some((n.parse::<usize>().ok()?, rest)))
    {
        Some((index, rest)) => (format!("argument {index}: "), rest, Some(index)),
        None => (String::new(), message, None),
    };
    let rest = rest
        .strip_prefix("error while decoding value: ")
        .unwrap_or(rest);
    // serde's "missing field `name`", in the words Python (and our Python worker) use.
    if let Some(field) = rest
        .strip_prefix("missing field `")
        .and_then(|f| f.strip_suffix('`'))
    {
        return format!("{prefix}missing required argument '{field}'");
    }
    let param = index
        .and_then(|i| params.get(i.checked_sub(1)?))
        .map(|t| describe_type(t));
    let (got, serde_expected) = if let Some(got) = rest.strip_prefix("wrong type: got ") {
        (got.to_owned(), None)
    } else if let Some(detail) = rest.strip_prefix("invalid type: ") {
        match detail.split_once(", expected ") {
            Some((got, expected)) => (describe_unexpected(got), Some(expected)),
            None => return format!("{prefix}{rest}"),
        }
    } else if let Some(detail) = rest.strip_prefix("invalid value: ") {
        match detail.split_once(", expected ") {
            Some((got, expected)) => (
                format!("{} (out of range)", describe_unexpected(got)),
                Some(expected),
            ),
            None => return format!("{prefix}{rest}"),
        }
    } else {
        return format!("{prefix}{rest}");
    };
    let expected = param
        .or_else(|| serde_expected.map(describe_type))
        .unwrap_or_else(|| "another type".into());
    format!("{prefix}expected {expected}, got {got}")
}

/// A Rust type name in the caller's terms: `i64` → "an integer", `Vec<u8>` → "an array".
fn describe_type(type_name: &str) -> String {
    let short = |name: &str| name.rsplit("::").next().unwrap_or(name).to_owned();
    let base = type_name.split('<').next().unwrap_or(type_name).trim();
    let base = short(base);
    match base.as_str() {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".into(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer".into(),
        "f32" | "f64" => "a number".into(),
        "bool" => "a boolean".into(),
        "String" | "str" | "&str" | "char" | "a string" => "a string".into(),
        "Vec" | "VecDeque" | "HashSet" | "BTreeSet" | "a sequence" => "an array".into(),
        "ByteBuf" | "Bytes" | "byte array" | "a byte array" => "binary data".into(),
        "Timestamp" | "SystemTime" => "a timestamp".into(),
        "HashMap" | "BTreeMap" | "a map" => "a map".into(),
        "Value" => "any value".into(),
        "Option" => {
            let inner = type_name
                .split_once('<')
                .and_then(|(_, rest)| rest.strip_suffix('>'))
                .unwrap_or("");
            format!("{} or nil", describe_type(inner))
        }
        _ if type_name.starts_with('(') || type_name.starts_with('[') => "an array".into(),
        _ => format!("{} (a map)", short(type_name)),
    }
}

/// serde's description of a value it did not expect, in the caller's terms.
fn describe_unexpected(got: &str) -> String {
    let quoted = |rest: &str| rest.trim().trim_matches('`').to_owned();
    if let Some(value) = got.strip_prefix("floating point ") {
        format!("a float ({})", quoted(value))
    } else if let Some(value) = got.strip_prefix("integer ") {
        quoted(value)
    } else if let Some(value) = got.strip_prefix("string ") {
        format!("a string ({})", value.trim())
    } else if let Some(value) = got.strip_prefix("boolean ") {
        format!("a boolean ({})", quoted(value))
    } else {
        match got {
            "sequence" => "an array".into(),
            "map" => "a map".into(),
            "byte array" => "binary data".into(),
            "unit value" | "unit" => "nil".into(),
            other => other.to_owned(),
        }
    }
}

/// Rewrites rmp_serde's "wrong msgpack marker FixStr(1)" into "got a string".
fn readable(error: &impl fmt::Display) -> String {
    let text = error.to_string();
    let Some(marker) = text.strip_prefix("wrong msgpack marker ") else {
        return text;
    };
    let kind = [
        ("Fix", "a small integer"),
        ("U", "an integer"),
        ("I", "an integer"),
        ("F", "a float"),
        ("Str", "a string"),
        ("Bin", "binary data"),
        ("Array", "an array"),
        ("Map", "a map"),
        ("Null", "nil"),
        ("True", "a boolean"),
        ("False", "a boolean"),
        ("Ext", "an extension value"),
    ];
    let described = match marker {
        m if m.starts_with("FixStr") => "a string",
        m if m.starts_with("FixArray") => "an array",
        m if m.starts_with("FixMap") => "a map",
        m if m.starts_with("FixExt") => "an extension value",
        m => kind
            .iter()
            .find(|(prefix, _)| m.starts_with(prefix))
            .map_or("a value of another type", |(_, kind)| kind),
    };
    format!("wrong type: got {described}")
}

/// Accepts an empty or nil `kwargs` for a positional function, refuses anything else.
struct NoKwargs<'c> {
    fault: &'c Cell<Fault>,
}

impl<'de> DeserializeSeed<'de> for NoKwargs<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoKwargs<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of keyword arguments")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<(), M::Error> {
        if map.size_hint() == Some(0) {
            return Ok(());
        }
        self.fault.set(Fault::Mismatch);
        Err(de::Error::custom("takes no keyword arguments"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_request_body;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Greet {
        name: String,
        #[serde(default)]
        excited: bool,
    }

    fn keyword<T: DeserializeOwned>() -> ArgsShape {
        ArgsShape::Keyword {
            fields: struct_fields::<T>(),
        }
    }

    #[test]
    fn struct_fields_are_probed_from_deserialize() {
        assert_eq!(struct_fields::<Greet>(), Some(&["name", "excited"][..]));
        assert_eq!(struct_fields::<BTreeMap<String, i64>>(), None);
        assert_eq!(struct_fields::<(i64, i64)>(), None);
    }

    #[test]
    fn keyword_struct_mixes_positional_and_keyword_arguments() {
        let mut kwargs = BTreeMap::new();
        kwargs.insert("excited", true);
        let body = encode_request_body(&("ada",), &kwargs).unwrap();
        let greet: Greet = decode_args(&body, keyword::<Greet>()).unwrap();
        assert_eq!(
            greet,
            Greet {
                name: "ada".into(),
                excited: true
            }
        );
    }

    #[test]
    fn keyword_struct_refuses_unknown_repeated_and_extra_arguments() {
        let mut typo = BTreeMap::new();
        typo.insert("nmae", "ada");
        let body = encode_request_body(&(), &typo).unwrap();
        let err = decode_args::<Greet>(&body, keyword::<Greet>()).unwrap_err();
        assert_eq!(
            err,
            ArgsError::Mismatch("got an unexpected keyword argument 'nmae'".into())
        );

        let mut again = BTreeMap::new();
        again.insert("name", "bob");
        let body = encode_request_body(&("ada",), &again).unwrap();
        let err = decode_args::<Greet>(&body, keyword::<Greet>()).unwrap_err();
        assert_eq!(
            err,
            ArgsError::Mismatch("got multiple values for argument 'name'".into())
        );

        let body = encode_request_body(&("ada", true, 3), &()).unwrap();
        let err = decode_args::<Greet>(&body, keyword::<Greet>()).unwrap_err();
        assert!(
            matches!(&err, ArgsError::Mismatch(m) if m.contains("at most 2")),
            "{err:?}"
        );
    }

    #[test]
    fn keyword_map_takes_any_names() {
        let mut kwargs = BTreeMap::new();
        kwargs.insert("anything", 1);
        let body = encode_request_body(&(), &kwargs).unwrap();
        let shape = keyword::<BTreeMap<String, i64>>();
        let got: BTreeMap<String, i64> = decode_args(&body, shape).unwrap();
        assert_eq!(got["anything"], 1);
    }

    fn positional<T: DeserializeOwned>(body: &[u8], arity: usize) -> Result<T, ArgsError> {
        decode_args(body, ArgsShape::Positional { arity })
    }

    #[test]
    fn mismatches_name_what_the_parameter_expects() {
        let params = ["i64", "alloc::string::String", "core::option::Option<u32>"];
        let cases = [
            (
                "argument 1: wrong type: got a string",
                "argument 1: expected an integer, got a string",
            ),
            (
                "argument 1: invalid type: floating point `1.5`, expected i64",
                "argument 1: expected an integer, got a float (1.5)",
            ),
            (
                "argument 2: invalid type: integer `5`, expected a string",
                "argument 2: expected a string, got 5",
            ),
            (
                "argument 3: invalid value: integer `-1`, expected u32",
                "argument 3: expected a non-negative integer or nil, got -1 (out of range)",
            ),
            (
                "error while decoding value: invalid type: integer `1`, expected a string",
                "expected a string, got 1",
            ),
            (
                "takes 2 positional arguments but 1 was given",
                "takes 2 positional arguments but 1 was given",
            ),
            ("missing field `name`", "missing required argument 'name'"),
        ];
        for (message, want) in cases {
            assert_eq!(explain_mismatch(message, &params), want);
        }
        let body = encode_request_body(&(1,), &()).unwrap();
        let err = positional::<(i64, i64)>(&body, 2).unwrap_err();
        assert_eq!(
            err,
            ArgsError::Mismatch("takes 2 positional arguments but 1 was given".into())
        );
    }

    #[test]
    fn positional_tuple_decodes() {
        let body = encode_request_body(&(2i64, 3i64), &()).unwrap();
        assert_eq!(positional::<(i64, i64)>(&body, 2).unwrap(), (2, 3));
    }

    #[test]
    fn wrong_arity_names_the_counts() {
        let body = encode_request_body(&(1, 2, 3), &()).unwrap();
        let err = positional::<(i64, i64)>(&body, 2).unwrap_err();
        assert_eq!(
            err,
            ArgsError::Mismatch("takes 2 positional arguments but 3 were given".into())
        );
        let body = encode_request_body(&(), &()).unwrap();
        let err = positional::<(i64,)>(&body, 1).unwrap_err();
        assert!(matches!(err, ArgsError::Mismatch(m) if m.contains("0 were given")));
    }

    #[test]
    fn wrong_type_is_a_mismatch() {
        let body = encode_request_body(&("x", 2), &()).unwrap();
        let err = positional::<(i64, i64)>(&body, 2).unwrap_err();
        assert_eq!(
            err,
            ArgsError::Mismatch("argument 1: wrong type: got a string".into())
        );
    }

    #[test]
    fn zero_arity_accepts_missing_args() {
        let body = encode_request_body(&(), &()).unwrap();
        positional::<()>(&body, 0).unwrap();
        // A body with neither key also works.
        positional::<()>(&[0x80], 0).unwrap();
    }

    #[test]
    fn positional_refuses_kwargs() {
        let mut kwargs = BTreeMap::new();
        kwargs.insert("a", 1);
        let body = encode_request_body(&(), &kwargs).unwrap();
        let err = positional::<(i64,)>(&body, 1).unwrap_err();
        assert_eq!(
            err,
            ArgsError::Mismatch("takes no keyword arguments".into())
        );
    }

    #[test]
    fn keyword_struct_from_kwargs_or_args() {
        let mut kwargs = BTreeMap::new();
        kwargs.insert("name", "ada");
        let body = encode_request_body(&(), &kwargs).unwrap();
        let greet: Greet = decode_args(&body, keyword::<Greet>()).unwrap();
        assert_eq!(
            greet,
            Greet {
                name: "ada".into(),
                excited: false
            }
        );

        let body = encode_request_body(&("bob", true), &()).unwrap();
        let greet: Greet = decode_args(&body, keyword::<Greet>()).unwrap();
        assert_eq!(
            greet,
            Greet {
                name: "bob".into(),
                excited: true
            }
        );
    }

    #[test]
    fn keyword_missing_field_is_a_mismatch() {
        let body = encode_request_body(&(), &()).unwrap();
        let err = decode_args::<Greet>(&body, keyword::<Greet>()).unwrap_err();
        assert!(matches!(err, ArgsError::Mismatch(m) if m.contains("name")));
    }

    #[test]
    fn hostile_bodies_are_errors_for_both_shapes() {
        let deep = [
            vec![0x82, 0xa4, b'a', b'r', b'g', b's'],
            vec![0x91u8; 50_000],
            vec![0x01],
        ]
        .concat();
        let huge = [
            0x81, 0xa4, b'a', b'r', b'g', b's', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        for body in [&deep[..], &huge[..]] {
            assert!(positional::<(Value,)>(body, 1).is_err());
            assert!(decode_args::<Greet>(body, keyword::<Greet>()).is_err());
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for body in [
            &b""[..],
            b"\xc1",
            b"\x92\x01\x02",
            b"\x81\xa4args\x05",
            b"\xdf\xff\xff\xff\xff",
        ] {
            let err = positional::<(i64,)>(body, 1).unwrap_err();
            assert!(
                matches!(err, ArgsError::Malformed(_)),
                "{body:?} gave {err:?}"
            );
        }
    }
}
