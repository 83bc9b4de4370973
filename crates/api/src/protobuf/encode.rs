//! JSON → protobuf: writes an object's JSON as the message upstream's Go types would marshal.
//! Fields are written in ascending number and map entries by key, as upstream does; JSON keys
//! the schema does not know are dropped, as decoding into a Go struct drops them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::go_time::{parse_duration, parse_time};
use super::path::Path;
use super::schema::{Field, JsonRule, Label, MessageId, SCHEMA, Scalar, Schema, Special, Type};
use super::wire::{put_key, put_len, put_varint_field};
use super::{MAGIC, MAX_DEPTH, ProtobufError};

pub(super) fn encode_object(object: &Value, depth: usize) -> Result<Vec<u8>, ProtobufError> {
    let fields = object.as_object();
    let type_meta = |key| fields?.get(key)?.as_str().filter(|s| !s.is_empty());
    let (Some(api_version), Some(kind)) = (type_meta("apiVersion"), type_meta("kind")) else {
        return Err(ProtobufError::MissingTypeMeta);
    };
    let fields = fields.expect("apiVersion was read from an object");
    let schema = &*SCHEMA;
    let id = schema
        .kind(api_version, kind)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })?;
    let mut raw = Vec::new();
    let encoder = Encoder { schema, depth };
    encoder.message(id, fields, &mut raw, &Path::Root(kind))?;

    let mut type_meta = Vec::new();
    put_len(&mut type_meta, 1, api_version.as_bytes());
    put_len(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    put_len(&mut out, 1, &type_meta);
    put_len(&mut out, 2, &raw);
    // Upstream always writes the (empty) content encoding and type.
    put_len(&mut out, 3, b"");
    put_len(&mut out, 4, b"");
    Ok(out)
}

struct Encoder<'s> {
    schema: &'s Schema,
    depth: usize,
}

impl Encoder<'_> {
    fn deeper(&self, path: &Path) -> Result<Self, ProtobufError> {
        if self.depth >= MAX_DEPTH {
            return Err(path.unencodable(format!("nested deeper than {MAX_DEPTH} objects")));
        }
        Ok(Encoder {
            schema: self.schema,
            depth: self.depth + 1,
        })
    }

    /// Writes a message as upstream's generated Go marshaller does: every non-pointer field,
    /// zero or not (so an unset non-pointer struct is written with its own zero fields), and
    /// pointer fields only when set. That makes the bytes the same as upstream's.
    fn message(
        &self,
        id: MessageId,
        object: &Map<String, Value>,
        out: &mut Vec<u8>,
        path: &Path,
    ) -> Result<(), ProtobufError> {
        for field in &self.schema.messages[id].fields {
            if field.rule == JsonRule::Skip {
                continue;
            }
            if field.rule == JsonRule::Inline {
                let Type::Message(inline) = field.ty else {
                    continue;
                };
                // The embedded struct reads its fields from the same JSON object.
                let mut bytes = Vec::new();
                self.deeper(path)?
                    .message(inline, object, &mut bytes, path)?;
                put_len(out, field.number, &bytes);
                continue;
            }
            let here = Path::Field(path, &field.json);
            match object.get(&field.json).filter(|v| !v.is_null()) {
                Some(value) => self.field(field, value, out, &here)?,
                None if field.rule == JsonRule::Pointer || field.label != Label::Single => {}
                None => self.zero(field, out, &here)?,
            }
        }
        Ok(())
    }

    /// The zero value of an unset non-pointer field, as Go writes it.
    fn zero(&self, field: &Field, out: &mut Vec<u8>, path: &Path) -> Result<(), ProtobufError> {
        match field.ty {
            // A nil []byte is not written.
            Type::Scalar(Scalar::Bytes) => {}
            Type::Scalar(Scalar::String) => put_len(out, field.number, b""),
            Type::Scalar(Scalar::Bool) => put_varint_field(out, field.number, 0),
            Type::Scalar(scalar) => put_scalar(out, field.number, scalar, &Value::from(0), path)?,
            _ if field.embeds_protobuf => put_len(out, field.number, b""),
            Type::Message(id) => {
                let zero = match self.schema.messages[id].special {
                    None => Value::Object(Map::new()),
                    Some(Special::Duration) => Value::from("0s"),
                    Some(Special::IntOrString) => Value::from(0),
                    Some(Special::Quantity) => Value::from("0"),
                    // A zero time and an empty raw value are empty messages.
                    Some(_) => {
                        put_len(out, field.number, b"");
                        return Ok(());
                    }
                };
                self.value(field.ty, field.number, &zero, out, path)?;
            }
        }
        Ok(())
    }

    fn field(
        &self,
        field: &Field,
        value: &Value,
        out: &mut Vec<u8>,
        path: &Path,
    ) -> Result<(), ProtobufError> {
        // Each shape has its own function: this one recurses, so its stack frame stays small.
        match field.label {
            Label::Single if field.embeds_protobuf => {
                let object = encode_object(value, self.depth + 1)?;
                put_len(out, field.number, &wrap_raw(object));
                Ok(())
            }
            Label::Single => self.value(field.ty, field.number, value, out, path),
            Label::Repeated => self.repeated(field, value, out, path),
            Label::Map(entry) => self.map(field.number, entry, value, out, path),
        }
    }

    fn repeated(
        &self,
        field: &Field,
        value: &Value,
        out: &mut Vec<u8>,
        path: &Path,
    ) -> Result<(), ProtobufError> {
        let items = value
            .as_array()
            .ok_or_else(|| path.unencodable(format!("expected an array, got {value}")))?;
        for (i, item) in items.iter().enumerate() {
            self.value(field.ty, field.number, item, out, &Path::Index(path, i))?;
        }
        Ok(())
    }

    fn map(
        &self,
        number: u32,
        entry: MessageId,
        value: &Value,
        out: &mut Vec<u8>,
        path: &Path,
    ) -> Result<(), ProtobufError> {
        let map = value
            .as_object()
            .ok_or_else(|| path.unencodable(format!("expected an object, got {value}")))?;
        let [key_field, value_field] = self.schema.messages[entry].fields.as_slice() else {
            unreachable!("a map entry has a key and a value");
        };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for key in keys {
            let here = Path::Key(path, key);
            let mut entry = Vec::new();
            let key_json = match key_field.ty {
                Type::Scalar(Scalar::String) => Value::String(key.clone()),
                _ => serde_json::from_str(key)
                    .map_err(|_| here.unencodable("the map key is not of the key type"))?,
            };
            self.value(key_field.ty, 1, &key_json, &mut entry, &here)?;
            let value = &map[key];
            if !value.is_null() {
                self.value(value_field.ty, 2, value, &mut entry, &here)?;
            }
            put_len(out, number, &entry);
        }
        Ok(())
    }

    fn value(
        &self,
        ty: Type,
        number: u32,
        value: &Value,
        out: &mut Vec<u8>,
        path: &Path,
    ) -> Result<(), ProtobufError> {
        match ty {
            Type::Scalar(scalar) => put_scalar(out, number, scalar, value, path),
            Type::Message(id) => {
                if let Some(bytes) = self.message_value(id, value, path)? {
                    put_len(out, number, &bytes);
                }
                Ok(())
            }
        }
    }

    /// A message's bytes from its JSON value; `None` for a JSON `null`.
    fn message_value(
        &self,
        id: MessageId,
        value: &Value,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, ProtobufError> {
        if value.is_null() {
            return Ok(None);
        }
        let this = self.deeper(path)?;
        let mut out = Vec::new();
        match self.schema.messages[id].special {
            None => {
                let object = value
                    .as_object()
                    .ok_or_else(|| path.unencodable(format!("expected an object, got {value}")))?;
                this.message(id, object, &mut out, path)?;
            }
            Some(special) => this.special(id, special, value, &mut out, path)?,
        }
        Ok(Some(out))
    }

    /// A message upstream gives custom JSON (see [`Special`]), from that JSON.
    fn special(
        &self,
        id: MessageId,
        special: Special,
        value: &Value,
        out: &mut Vec<u8>,
        path: &Path,
    ) -> Result<(), ProtobufError> {
        let message = &self.schema.messages[id];
        let text = || {
            value
                .as_str()
                .ok_or_else(|| path.unencodable(format!("expected a string, got {value}")))
        };
        match special {
            Special::Time | Special::MicroTime => {
                let (seconds, nanos) = parse_time(text()?).map_err(|e| path.unencodable(e))?;
                put_varint_field(out, 1, seconds as u64);
                // Upstream's Time keeps whole seconds only.
                let nanos = if special == Special::MicroTime {
                    nanos
                } else {
                    0
                };
                put_varint_field(out, 2, u64::from(nanos));
            }
            Special::Duration => {
                let nanos = parse_duration(text()?).map_err(|e| path.unencodable(e))?;
                put_varint_field(out, 1, nanos as u64);
            }
            Special::IntOrString => match value {
                Value::Number(n) => {
                    let int = n
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| path.unencodable(format!("{n} is not a 32-bit integer")))?;
                    put_varint_field(out, 1, 0);
                    put_varint_field(out, 2, int as i64 as u64);
                    put_len(out, 3, b"");
                }
                Value::String(s) => {
                    put_varint_field(out, 1, 1);
                    put_varint_field(out, 2, 0);
                    put_len(out, 3, s.as_bytes());
                }
                other => {
                    return Err(
                        path.unencodable(format!("expected a number or string, got {other}"))
                    );
                }
            },
            Special::Quantity => {
                // Upstream reads a quantity from a JSON number too (`cpu: 2`).
                let quantity = match value {
                    Value::Number(n) => n.to_string(),
                    _ => text()?.to_string(),
                };
                put_len(out, 1, quantity.as_bytes());
            }
            Special::RawExtension | Special::RawJson => {
                let raw = serde_json::to_vec(value).expect("a JSON value serializes");
                put_len(out, 1, &raw);
            }
            Special::Wrapper => {
                let field = &message.fields[0];
                self.field(field, value, out, path)?;
            }
            Special::SchemaOrArray => match value {
                Value::Array(_) => self.field(&message.fields[1], value, out, path)?,
                _ => self.field(&message.fields[0], value, out, path)?,
            },
            Special::SchemaOrBool => match value {
                Value::Bool(allows) => put_varint_field(out, 1, u64::from(*allows)),
                _ => {
                    put_varint_field(out, 1, 1);
                    self.field(&message.fields[1], value, out, path)?;
                }
            },
            Special::SchemaOrStringArray => match value {
                Value::Array(_) => self.field(&message.fields[1], value, out, path)?,
                _ => self.field(&message.fields[0], value, out, path)?,
            },
        }
        Ok(())
    }
}

/// A `runtime.RawExtension` holding `raw`.
fn wrap_raw(raw: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 6);
    put_len(&mut out, 1, &raw);
    out
}

fn put_scalar(
    out: &mut Vec<u8>,
    number: u32,
    scalar: Scalar,
    value: &Value,
    path: &Path,
) -> Result<(), ProtobufError> {
    let expected = |what: &str| path.unencodable(format!("expected {what}, got {value}"));
    let int = |min: i64, max: i64| {
        value
            .as_i64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| expected("an integer in range"))
    };
    let uint = |max: u64| {
        value
            .as_u64()
            .filter(|n| *n <= max)
            .ok_or_else(|| expected("a non-negative integer in range"))
    };
    let float = || value.as_f64().ok_or_else(|| expected("a number"));
    let (i32_min, i32_max) = (i64::from(i32::MIN), i64::from(i32::MAX));
    match scalar {
        Scalar::String => {
            let s = value.as_str().ok_or_else(|| expected("a string"))?;
            put_len(out, number, s.as_bytes());
        }
        Scalar::Bytes => {
            let s = value.as_str().ok_or_else(|| expected("a base64 string"))?;
            let bytes = BASE64
                .decode(s)
                .map_err(|e| path.unencodable(format!("not base64: {e}")))?;
            put_len(out, number, &bytes);
        }
        Scalar::Bool => {
            let b = value.as_bool().ok_or_else(|| expected("true or false"))?;
            put_varint_field(out, number, u64::from(b));
        }
        // Negative int32s are sign-extended to 10 bytes on the wire, like int64s.
        Scalar::Int32 | Scalar::Enum => {
            put_varint_field(out, number, int(i32_min, i32_max)? as u64)
        }
        Scalar::Int64 => put_varint_field(out, number, int(i64::MIN, i64::MAX)? as u64),
        Scalar::Uint32 => put_varint_field(out, number, uint(u64::from(u32::MAX))?),
        Scalar::Uint64 => put_varint_field(out, number, uint(u64::MAX)?),
        Scalar::Sint32 | Scalar::Sint64 => {
            let (min, max) = if scalar == Scalar::Sint32 {
                (i32_min, i32_max)
            } else {
                (i64::MIN, i64::MAX)
            };
            let n = int(min, max)?;
            put_varint_field(out, number, ((n << 1) ^ (n >> 63)) as u64);
        }
        Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => {
            let bits = match scalar {
                Scalar::Fixed64 => uint(u64::MAX)?,
                Scalar::Sfixed64 => int(i64::MIN, i64::MAX)? as u64,
                _ => float()?.to_bits(),
            };
            put_key(out, number, 1);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => {
            let bits = match scalar {
                Scalar::Fixed32 => uint(u64::from(u32::MAX))? as u32,
                Scalar::Sfixed32 => int(i32_min, i32_max)? as i32 as u32,
                _ => (float()? as f32).to_bits(),
            };
            put_key(out, number, 5);
            out.extend_from_slice(&bits.to_le_bytes());
        }
    }
    Ok(())
}
