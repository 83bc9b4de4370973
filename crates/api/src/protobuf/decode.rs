//! Protobuf → JSON: walks a message with its schema and writes the JSON object the same Go
//! object would have been sent as.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

use super::go_time::{format_duration, format_time};
use super::path::Path;
use super::schema::{Field, JsonRule, Label, MessageId, SCHEMA, Scalar, Schema, Special, Type};
use super::wire::{Reader, WireValue, wire_type_name};
use super::{MAGIC, MAX_DEPTH, ProtobufError};

/// Decodes `k8s\0` + `runtime.Unknown` into the object's JSON with `apiVersion` and `kind`.
pub(super) fn decode_body(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown = Unknown::parse(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding(
            unknown.content_encoding.into_owned(),
        ));
    }
    let schema = &*SCHEMA;
    let id = schema
        .kind(&unknown.api_version, &unknown.kind)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: unknown.api_version.to_string(),
            kind: unknown.kind.to_string(),
        })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), unknown.api_version.as_ref().into());
    object.insert("kind".into(), unknown.kind.as_ref().into());
    let decoder = Decoder { schema, depth };
    decoder.message_into(id, unknown.raw, &mut object, &Path::Root(&unknown.kind))?;
    Ok(Value::Object(object))
}

/// The `runtime.Unknown` envelope.
struct Unknown<'a> {
    api_version: Cow<'a, str>,
    kind: Cow<'a, str>,
    raw: &'a [u8],
    content_encoding: Cow<'a, str>,
}

impl<'a> Unknown<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut unknown = Unknown {
            api_version: Cow::Borrowed(""),
            kind: Cow::Borrowed(""),
            raw: &[],
            content_encoding: Cow::Borrowed(""),
        };
        let root = Path::Root("runtime.Unknown");
        for (number, value) in raw_records(bytes, &root)? {
            match (number, value) {
                (1, WireValue::Len(type_meta)) => {
                    let path = Path::Field(&root, "typeMeta");
                    for (number, value) in raw_records(type_meta, &path)? {
                        match (number, value) {
                            (1, WireValue::Len(v)) => {
                                unknown.api_version = String::from_utf8_lossy(v)
                            }
                            (2, WireValue::Len(v)) => unknown.kind = String::from_utf8_lossy(v),
                            _ => {}
                        }
                    }
                }
                (2, WireValue::Len(raw)) => unknown.raw = raw,
                (3, WireValue::Len(v)) => unknown.content_encoding = String::from_utf8_lossy(v),
                _ => {}
            }
        }
        Ok(unknown)
    }
}

/// Every record of a message, in wire order.
fn raw_records<'a>(
    bytes: &'a [u8],
    path: &Path,
) -> Result<Vec<(u32, WireValue<'a>)>, ProtobufError> {
    let mut reader = Reader::new(bytes);
    let mut out = Vec::new();
    while let Some(record) = reader.next_field().map_err(|e| path.malformed(e))? {
        out.push(record);
    }
    Ok(out)
}

struct Decoder<'s> {
    schema: &'s Schema,
    /// How many messages deep we are, against hostile nesting.
    depth: usize,
}

/// The records of one message that belong to known fields, grouped by field (index into
/// `Message::fields`), wire order kept within a field.
type Records<'a> = Vec<(usize, WireValue<'a>)>;

impl Decoder<'_> {
    fn deeper(&self, path: &Path) -> Result<Self, ProtobufError> {
        if self.depth >= MAX_DEPTH {
            return Err(path.malformed(format!("nested deeper than {MAX_DEPTH} messages")));
        }
        Ok(Decoder {
            schema: self.schema,
            depth: self.depth + 1,
        })
    }

    /// Reads a message's records, dropping unknown fields as upstream does, and checks each
    /// known field has the wire type its declaration needs.
    fn records<'a>(
        &self,
        id: MessageId,
        bytes: &'a [u8],
        path: &Path,
    ) -> Result<Records<'a>, ProtobufError> {
        let message = &self.schema.messages[id];
        let mut reader = Reader::new(bytes);
        let mut out = Vec::new();
        while let Some((number, value)) = reader.next_field().map_err(|e| path.malformed(e))? {
            let Some(index) = message.field(number) else {
                continue;
            };
            let field = &message.fields[index];
            let expected = match (field.ty, field.label) {
                (Type::Scalar(s), Label::Repeated)
                    if s.packable() && matches!(value, WireValue::Len(_)) =>
                {
                    2
                }
                (Type::Scalar(s), _) => s.wire_type(),
                (Type::Message(_), _) => 2,
            };
            if value.wire_type() != expected {
                return Err(Path::Field(path, &field.json).malformed(format!(
                    "field {number} is {} on the wire, but its type needs {}",
                    wire_type_name(value.wire_type()),
                    wire_type_name(expected)
                )));
            }
            out.push((index, value));
        }
        // Stable: the last value of a scalar field wins, as in upstream's decoder.
        out.sort_by_key(|&(index, _)| index);
        Ok(out)
    }

    /// Writes the message's fields into `out` (the parent's object for an inlined struct).
    fn message_into(
        &self,
        id: MessageId,
        bytes: &[u8],
        out: &mut Map<String, Value>,
        path: &Path,
    ) -> Result<(), ProtobufError> {
        let records = self.records(id, bytes, path)?;
        let mut rest = records.as_slice();
        for (index, field) in self.schema.messages[id].fields.iter().enumerate() {
            let count = rest.iter().take_while(|(i, _)| *i == index).count();
            let (own, tail) = rest.split_at(count);
            rest = tail;
            if own.is_empty() && field.rule != JsonRule::Always {
                continue;
            }
            self.field_into(field, own, out, path)?;
        }
        Ok(())
    }

    fn field_into(
        &self,
        field: &Field,
        own: &[(usize, WireValue)],
        out: &mut Map<String, Value>,
        path: &Path,
    ) -> Result<(), ProtobufError> {
        let here = Path::Field(path, &field.json);
        // Each shape has its own function: this one recurses, so its stack frame stays small.
        let value = match (field.label, field.ty) {
            _ if field.rule == JsonRule::Skip => None,
            (Label::Single, Type::Scalar(scalar)) => single_scalar(field.rule, scalar, own, &here)?,
            (Label::Single, Type::Message(id)) => {
                let Some(bytes) = merged(own) else {
                    return Ok(());
                };
                if field.rule == JsonRule::Inline {
                    // The embedded struct's fields are the parent's, in JSON and in paths.
                    return self.deeper(path)?.message_into(id, &bytes, out, path);
                }
                self.message_value(id, &bytes, &here)?
            }
            (Label::Repeated, ty) => self.repeated(ty, own, &here)?,
            (Label::Map(entry), _) => self.map(entry, own, &here)?,
        };
        if let Some(value) = value {
            out.insert(field.json.clone(), value);
        }
        Ok(())
    }

    fn repeated(
        &self,
        ty: Type,
        own: &[(usize, WireValue)],
        path: &Path,
    ) -> Result<Option<Value>, ProtobufError> {
        let mut items = Vec::with_capacity(own.len());
        for (_, value) in own {
            match (ty, value) {
                (Type::Scalar(s), WireValue::Len(packed)) if s.packable() => {
                    unpack(s, packed, &mut items, path)?;
                }
                (Type::Scalar(s), value) => items.push(scalar_json(s, value, path)?),
                (Type::Message(id), value) => {
                    let item = Path::Index(path, items.len());
                    let value = self.message_value(id, len(value), &item)?;
                    items.push(value.unwrap_or(Value::Null));
                }
            }
        }
        Ok((!items.is_empty()).then_some(Value::Array(items)))
    }

    fn map(
        &self,
        entry: MessageId,
        own: &[(usize, WireValue)],
        path: &Path,
    ) -> Result<Option<Value>, ProtobufError> {
        let mut map = Map::new();
        for (_, value) in own {
            let (key, value) = self.map_entry(entry, len(value), path)?;
            map.insert(key, value);
        }
        Ok((!map.is_empty()).then_some(Value::Object(map)))
    }

    fn map_entry(
        &self,
        entry: MessageId,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(String, Value), ProtobufError> {
        let records = self.records(entry, bytes, path)?;
        let fields = &self.schema.messages[entry].fields;
        let of = |number: u32| {
            let index = fields.iter().position(|f| f.number == number);
            records.iter().filter(move |(i, _)| Some(*i) == index)
        };
        let key = match (of(1).next_back(), fields[0].ty) {
            (Some((_, value)), Type::Scalar(s)) => match scalar_json(s, value, path)? {
                Value::String(key) => key,
                other => other.to_string(),
            },
            _ => String::new(),
        };
        let here = Path::Key(path, &key);
        let value = match fields[1].ty {
            Type::Scalar(s) => match of(2).next_back() {
                Some((_, value)) => scalar_json(s, value, &here)?,
                None => zero(s).unwrap_or_else(|| Value::String(String::new())),
            },
            Type::Message(id) => {
                let own: Vec<_> = of(2).copied().collect();
                let bytes = merged(&own).unwrap_or(Cow::Borrowed(&[]));
                self.message_value(id, &bytes, &here)?
                    .unwrap_or(Value::Null)
            }
        };
        Ok((key, value))
    }

    /// A message's JSON value; `None` where upstream writes `null` (an unset time, an empty
    /// raw extension), which we leave out.
    fn message_value(
        &self,
        id: MessageId,
        bytes: &[u8],
        path: &Path,
    ) -> Result<Option<Value>, ProtobufError> {
        let this = self.deeper(path)?;
        match self.schema.messages[id].special {
            None => {
                let mut object = Map::new();
                this.message_into(id, bytes, &mut object, path)?;
                Ok(Some(Value::Object(object)))
            }
            Some(special) => this.special_value(id, special, bytes, path),
        }
    }

    /// The JSON of a message upstream gives custom JSON (see [`Special`]).
    fn special_value(
        &self,
        id: MessageId,
        special: Special,
        bytes: &[u8],
        path: &Path,
    ) -> Result<Option<Value>, ProtobufError> {
        let message = &self.schema.messages[id];
        let records = self.records(id, bytes, path)?;
        let last = |number: u32| {
            let index = message.field(number)?;
            records
                .iter()
                .rev()
                .find(|(i, _)| *i == index)
                .map(|(_, v)| *v)
        };
        let all = |number: u32| -> Records {
            let index = message.field(number);
            let own = records.iter().filter(|(i, _)| Some(*i) == index);
            own.copied().collect()
        };
        let varint = |number| match last(number) {
            Some(WireValue::Varint(v)) => v,
            _ => 0,
        };
        let string = |number| match last(number) {
            Some(WireValue::Len(v)) => String::from_utf8_lossy(v).into_owned(),
            _ => String::new(),
        };
        Ok(match special {
            Special::Time | Special::MicroTime if records.is_empty() => None,
            // Upstream keeps only whole seconds of a Time, even when nanos are sent.
            Special::Time => Some(
                format_time(varint(1) as i64, None)
                    .map_err(|e| path.malformed(e))?
                    .into(),
            ),
            Special::MicroTime => {
                let total =
                    i128::from(varint(1) as i64) * 1_000_000_000 + i128::from(varint(2) as i32);
                let seconds = total.div_euclid(1_000_000_000) as i64;
                let micros = (total.rem_euclid(1_000_000_000) / 1000) as u32;
                Some(
                    format_time(seconds, Some(micros))
                        .map_err(|e| path.malformed(e))?
                        .into(),
                )
            }
            Special::Duration => Some(format_duration(varint(1) as i64).into()),
            Special::IntOrString => Some(match varint(1) {
                0 => Value::from(varint(2) as i32),
                1 => Value::from(string(3)),
                other => {
                    return Err(path.malformed(format!("IntOrString has unknown type {other}")));
                }
            }),
            // An unset quantity is zero; a set one is checked where its JSON would be.
            Special::Quantity if last(1).is_none() => Some("0".into()),
            Special::Quantity => Some(string(1).into()),
            Special::RawExtension | Special::RawJson => match last(1) {
                Some(WireValue::Len(raw)) if !raw.is_empty() => {
                    if special == Special::RawExtension && raw.starts_with(MAGIC.as_slice()) {
                        // A watch event embeds its object in protobuf, not JSON.
                        Some(decode_body(raw, self.depth)?)
                    } else {
                        Some(serde_json::from_slice(raw).map_err(|e| {
                            path.malformed(format!("the embedded raw value is not JSON: {e}"))
                        })?)
                    }
                }
                _ => None,
            },
            Special::Wrapper => {
                let mut object = Map::new();
                let field = &message.fields[0];
                self.field_into(field, &all(field.number), &mut object, path)?;
                Some(
                    object
                        .remove(&field.json)
                        .unwrap_or(Value::Array(Vec::new())),
                )
            }
            Special::SchemaOrArray => {
                let schemas = all(2);
                if schemas.is_empty() {
                    self.sub_message(id, 1, &all(1), path)?
                } else {
                    let mut object = Map::new();
                    self.field_into(&message.fields[1], &schemas, &mut object, path)?;
                    object.into_iter().next().map(|(_, v)| v)
                }
            }
            Special::SchemaOrBool => match self.sub_message(id, 2, &all(2), path)? {
                Some(schema) => Some(schema),
                None => Some(Value::Bool(varint(1) != 0)),
            },
            Special::SchemaOrStringArray => {
                let strings = all(2);
                if strings.is_empty() {
                    self.sub_message(id, 1, &all(1), path)?
                } else {
                    let mut object = Map::new();
                    self.field_into(&message.fields[1], &strings, &mut object, path)?;
                    object.into_iter().next().map(|(_, v)| v)
                }
            }
        })
    }

    /// The value of a singular message field of `parent`, if set.
    fn sub_message(
        &self,
        parent: MessageId,
        number: u32,
        own: &[(usize, WireValue)],
        path: &Path,
    ) -> Result<Option<Value>, ProtobufError> {
        let message = &self.schema.messages[parent];
        let Some(bytes) = merged(own) else {
            return Ok(None);
        };
        let Some(Type::Message(id)) = message.field(number).map(|i| message.fields[i].ty) else {
            return Ok(None);
        };
        self.message_value(id, &bytes, path)
    }
}

/// A singular message field's bytes: protobuf merges repeated occurrences, which is the same
/// as decoding their concatenation.
fn merged<'a>(own: &[(usize, WireValue<'a>)]) -> Option<Cow<'a, [u8]>> {
    match own {
        [] => None,
        [(_, value)] => Some(Cow::Borrowed(len(value))),
        many => Some(Cow::Owned(
            many.iter().flat_map(|(_, v)| len(v)).copied().collect(),
        )),
    }
}

/// The bytes of a length-delimited value (wire types are checked when records are read).
fn len<'a>(value: &WireValue<'a>) -> &'a [u8] {
    match value {
        WireValue::Len(bytes) => bytes,
        _ => &[],
    }
}

/// A singular scalar field's JSON, by Go's rules for when it appears.
fn single_scalar(
    rule: JsonRule,
    scalar: Scalar,
    own: &[(usize, WireValue)],
    path: &Path,
) -> Result<Option<Value>, ProtobufError> {
    let value = match own.last() {
        Some((_, v)) => Some(scalar_json(scalar, v, path)?),
        None => None,
    };
    Ok(match (rule, value) {
        (JsonRule::Always, value) => value.or_else(|| zero(scalar)),
        (JsonRule::OmitEmpty, Some(value)) if is_zero(&value) => None,
        (_, value) => value,
    })
}

fn unpack(
    scalar: Scalar,
    packed: &[u8],
    items: &mut Vec<Value>,
    path: &Path,
) -> Result<(), ProtobufError> {
    let mut reader = Reader::new(packed);
    while !reader.is_empty() {
        let value = match scalar.wire_type() {
            0 => reader.varint().map(WireValue::Varint),
            1 => reader.fixed64().map(WireValue::Fixed64),
            _ => reader.fixed32().map(WireValue::Fixed32),
        }
        .map_err(|e| path.malformed(e))?;
        items.push(scalar_json(scalar, &value, path)?);
    }
    Ok(())
}

fn scalar_json(scalar: Scalar, value: &WireValue, path: &Path) -> Result<Value, ProtobufError> {
    let bits = match *value {
        WireValue::Varint(v) | WireValue::Fixed64(v) => v,
        WireValue::Fixed32(v) => u64::from(v),
        WireValue::Len(bytes) => {
            return Ok(Value::String(match scalar {
                Scalar::Bytes => BASE64.encode(bytes),
                // Go's JSON writes invalid UTF-8 as U+FFFD, as this does.
                _ => String::from_utf8_lossy(bytes).into_owned(),
            }));
        }
    };
    Ok(match scalar {
        Scalar::Int64 | Scalar::Sfixed64 => Value::from(bits as i64),
        Scalar::Int32 | Scalar::Enum | Scalar::Sfixed32 => Value::from(bits as i32),
        Scalar::Uint64 | Scalar::Fixed64 => Value::from(bits),
        Scalar::Uint32 | Scalar::Fixed32 => Value::from(bits as u32),
        Scalar::Sint64 => Value::from(((bits >> 1) as i64) ^ -((bits & 1) as i64)),
        Scalar::Sint32 => Value::from((((bits >> 1) as i64) ^ -((bits & 1) as i64)) as i32),
        Scalar::Bool => Value::Bool(bits != 0),
        Scalar::Double => float_json(f64::from_bits(bits), path)?,
        Scalar::Float => float_json(f64::from(f32::from_bits(bits as u32)), path)?,
        Scalar::String | Scalar::Bytes => {
            return Err(path.malformed("a string or bytes field is not length-delimited"));
        }
    })
}

/// Whole numbers print as integers, as Go's JSON does (`5`, not `5.0`).
fn float_json(x: f64, path: &Path) -> Result<Value, ProtobufError> {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return Ok(Value::from(x as i64));
    }
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| path.malformed(format!("{x} has no JSON form")))
}

/// The JSON Go writes for an unset non-pointer field without `omitempty`.
fn zero(scalar: Scalar) -> Option<Value> {
    match scalar {
        Scalar::Bool => Some(Value::Bool(false)),
        Scalar::String => Some(Value::String(String::new())),
        // A nil []byte is `null` in Go's JSON: the same as leaving it out.
        Scalar::Bytes => None,
        _ => Some(Value::from(0)),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}
