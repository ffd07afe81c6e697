//! Conversion between JSON, as typed on a command line, and MessagePack values.

use serde_json::{Map, Number, Value as Json};
use switchboard_protocol::Value;

/// Converts a JSON value into a MessagePack value (integers stay integers).
pub fn to_msgpack(json: &Json) -> Value {
    match json {
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
        Json::Array(items) => Value::Array(items.iter().map(to_msgpack).collect()),
        Json::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), to_msgpack(v)))
                .collect(),
        ),
    }
}

/// Converts a MessagePack value into JSON. Binary data becomes an array of
/// byte values; map keys that are not strings are written as their JSON text.
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
        Value::Binary(bytes) => Json::Array(bytes.iter().map(|b| Json::from(*b)).collect()),
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
        Value::Ext(kind, bytes) => serde_json::json!({ "ext": kind, "data": bytes }),
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

    #[test]
    fn json_round_trips_through_msgpack() {
        let json: Json = serde_json::from_str(r#"{"a":[1,-2,3.5,"x",null,true]}"#).unwrap();
        assert_eq!(to_json(&to_msgpack(&json)), json);
    }

    #[test]
    fn bare_words_are_strings() {
        assert_eq!(parse_arg("hello"), Json::String("hello".into()));
        assert_eq!(parse_arg("42"), Json::from(42));
        assert_eq!(parse_arg("\"42\""), Json::String("42".into()));
    }
}
