//! Conversion between JSON, as typed on a command line, and MessagePack values.
//!
//! JSON has no binary or time type, so two tagged objects stand for them, in
//! both directions:
//! - `{"$bin": "<base64>"}` is MessagePack `bin`;
//! - `{"$timestamp": "2026-01-02T03:04:05.123Z"}` is the timestamp extension (type -1).
//!
//! Other extension values print as `{"$ext": <type>, "data": "<base64>"}`.
//! Map keys that are not strings print as their JSON text.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};
use switchboard_protocol::timestamp::TIMESTAMP_EXT;
use switchboard_protocol::{Timestamp, Value};

/// Why a JSON value could not become a MessagePack value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// Converts JSON into a MessagePack value (integers stay integers; tagged objects become bin and timestamps).
pub fn to_msgpack(json: &Json) -> Result<Value, JsonError> {
    Ok(match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(to_msgpack).collect::<Result<_, _>>()?),
        Json::Object(map) => {
            if let Some(tagged) = tagged(map)? {
                return Ok(tagged);
            }
            let entries = map
                .iter()
                .map(|(k, v)| Ok((Value::from(k.as_str()), to_msgpack(v)?)))
                .collect::<Result<_, JsonError>>()?;
            Value::Map(entries)
        }
    })
}

fn tagged(map: &Map<String, Json>) -> Result<Option<Value>, JsonError> {
    if map.len() != 1 {
        return Ok(None);
    }
    let (key, value) = map.iter().next().expect("one entry");
    let text = || {
        value
            .as_str()
            .ok_or_else(|| JsonError(format!("{key} takes a string")))
    };
    match key.as_str() {
        "$bin" => {
            let bytes = BASE64
                .decode(text()?)
                .map_err(|e| JsonError(format!("$bin is not base64: {e}")))?;
            Ok(Some(Value::Binary(bytes)))
        }
        "$timestamp" => {
            let time = humantime::parse_rfc3339(text()?)
                .map_err(|e| JsonError(format!("$timestamp is not RFC 3339: {e}")))?;
            let ext = Timestamp::from(time).to_ext_bytes();
            Ok(Some(Value::Ext(TIMESTAMP_EXT, ext)))
        }
        _ => Ok(None),
    }
}

/// Converts a MessagePack value into JSON (see the module docs for bin and timestamps).
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => i
            .as_i64()
            .map(Number::from)
            .or_else(|| i.as_u64().map(Number::from))
            .map_or(Json::Null, Json::Number),
        Value::F32(f) => float(f64::from(*f)),
        Value::F64(f) => float(*f),
        Value::String(s) => Json::String(s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_owned,
        )),
        Value::Binary(bytes) => serde_json::json!({ "$bin": BASE64.encode(bytes) }),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Value::String(s) => s.as_str().unwrap_or_default().to_owned(),
                    other => to_json(other).to_string(),
                };
                map.insert(key, to_json(v));
            }
            Json::Object(map)
        }
        Value::Ext(kind, bytes) => match Timestamp::from_ext_bytes(bytes) {
            Some(t) if *kind == TIMESTAMP_EXT && t.seconds() >= 0 => serde_json::json!({
                "$timestamp": humantime::format_rfc3339_nanos(t.to_system_time()).to_string()
            }),
            _ => serde_json::json!({ "$ext": kind, "data": BASE64.encode(bytes) }),
        },
    }
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

/// Reads a command-line argument: JSON if it parses as JSON, otherwise the text as a string.
pub fn parse_arg(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Json {
        let json: Json = serde_json::from_str(text).unwrap();
        to_json(&to_msgpack(&json).unwrap())
    }

    #[test]
    fn json_round_trips_through_msgpack() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true]}"#;
        assert_eq!(
            round_trip(text),
            serde_json::from_str::<Json>(text).unwrap()
        );
    }

    #[test]
    fn tagged_objects_become_binary_and_timestamps() {
        let json: Json = serde_json::from_str(r#"{"$bin": "AAEC/w=="}"#).unwrap();
        assert_eq!(
            to_msgpack(&json).unwrap(),
            Value::Binary(vec![0, 1, 2, 255])
        );
        let text = r#"{"$timestamp":"2026-01-02T03:04:05.123000000Z"}"#;
        assert_eq!(
            round_trip(text),
            serde_json::from_str::<Json>(text).unwrap()
        );
        let bad: Json = serde_json::from_str(r#"{"$bin": "***"}"#).unwrap();
        assert!(to_msgpack(&bad).is_err());
    }

    #[test]
    fn bare_words_are_strings() {
        assert_eq!(parse_arg("hello"), Json::String("hello".into()));
        assert_eq!(parse_arg("42"), Json::from(42));
        assert_eq!(parse_arg("\"42\""), Json::String("42".into()));
    }
}
