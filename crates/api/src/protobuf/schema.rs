//! The schema both directions walk: every message of the embedded descriptor set, its fields by
//! number, and for each field what upstream's Go types say about its JSON form
//! (`proto/go-types.txt`), resolved once into plain tables.

use std::collections::HashMap;
use std::sync::LazyLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label as ProtoLabel, Type as ProtoType};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// The upstream `.proto` files compiled by `build.rs`.
const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));
/// What the Go types add to the `.proto` files; see `proto/README.md`.
const GO_TYPES: &str = include_str!("../../proto/go-types.txt");

const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
/// Kinds upstream's `metav1.AddToGroupVersion` registers in every group version (plus the
/// unversioned ones it registers under `v1`), so e.g. `apps/v1` `DeleteOptions` is meta's.
const META_KINDS_IN_EVERY_GROUP: &[&str] = &[
    "WatchEvent",
    "ListOptions",
    "GetOptions",
    "DeleteOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "Status",
    "APIVersions",
    "APIGroupList",
    "APIGroup",
    "APIResourceList",
];

pub(super) type MessageId = usize;

pub(super) static SCHEMA: LazyLock<Schema> = LazyLock::new(Schema::load);

pub(super) struct Schema {
    pub messages: Vec<Message>,
    /// apiVersion → kind → message.
    kinds: HashMap<String, HashMap<String, MessageId>>,
    /// See [`META_KINDS_IN_EVERY_GROUP`].
    meta_kinds: HashMap<String, MessageId>,
}

pub(super) struct Message {
    /// In ascending field number.
    pub fields: Vec<Field>,
    pub special: Option<Special>,
}

pub(super) struct Field {
    pub number: u32,
    /// The key in the JSON object.
    pub json: String,
    pub ty: Type,
    pub label: Label,
    pub rule: JsonRule,
    /// `meta.v1.WatchEvent.object`: upstream embeds the object in protobuf there, not JSON.
    pub embeds_protobuf: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Type {
    Scalar(Scalar),
    Message(MessageId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Label {
    Single,
    Repeated,
    /// `map<K, V>`: a repeated entry message whose field 1 is the key and field 2 the value.
    Map(MessageId),
}

/// When a field appears in the JSON, following Go's `encoding/json` on the Go struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JsonRule {
    /// A non-pointer field tagged `omitempty`: written unless zero. Go clients always put such
    /// fields on the wire, so presence there says nothing.
    OmitEmpty,
    /// A Go pointer: written whenever set, even to zero (`replicas: 0`).
    Pointer,
    /// No `omitempty`: always written, zero when unset.
    Always,
    /// An embedded Go struct: its fields sit in the parent's JSON object.
    Inline,
    /// `json:"-"`: never in JSON.
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scalar {
    Double,
    Float,
    Int64,
    Uint64,
    Int32,
    Fixed64,
    Fixed32,
    Bool,
    String,
    Bytes,
    Uint32,
    Enum,
    Sfixed32,
    Sfixed64,
    Sint32,
    Sint64,
}

/// Messages whose JSON is not an object of their fields: upstream gives them custom JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Special {
    /// `meta.v1.Time`: RFC 3339 in seconds.
    Time,
    /// `meta.v1.MicroTime`: RFC 3339 in microseconds.
    MicroTime,
    /// `meta.v1.Duration`: Go's duration text, e.g. `1h0m0s`.
    Duration,
    /// `intstr.IntOrString`: a JSON number or string.
    IntOrString,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `runtime.RawExtension`: the embedded JSON (or embedded protobuf object).
    RawExtension,
    /// `meta.v1.FieldsV1`, apiextensions `JSON`: the embedded JSON.
    RawJson,
    /// A named Go slice such as `metav1.Verbs`: the JSON array of its items.
    Wrapper,
    /// apiextensions `JSONSchemaPropsOrArray`: a schema or an array of schemas.
    SchemaOrArray,
    /// apiextensions `JSONSchemaPropsOrBool`: a schema or a boolean.
    SchemaOrBool,
    /// apiextensions `JSONSchemaPropsOrStringArray`: a schema or an array of strings.
    SchemaOrStringArray,
}

impl Scalar {
    /// Whether a repeated field of this type may come packed in one length-delimited record.
    pub fn packable(self) -> bool {
        !matches!(self, Scalar::String | Scalar::Bytes)
    }

    /// The wire type an unpacked value of this type has.
    pub fn wire_type(self) -> u8 {
        match self {
            Scalar::Double | Scalar::Fixed64 | Scalar::Sfixed64 => 1,
            Scalar::Float | Scalar::Fixed32 | Scalar::Sfixed32 => 5,
            Scalar::String | Scalar::Bytes => 2,
            _ => 0,
        }
    }
}

impl Message {
    pub fn field(&self, number: u32) -> Option<usize> {
        self.fields.binary_search_by_key(&number, |f| f.number).ok()
    }
}

impl Schema {
    /// The message an object of this apiVersion and kind is, if it is a built-in kind.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<MessageId> {
        let kinds = self.kinds.get(api_version)?;
        kinds
            .get(kind)
            .or_else(|| self.meta_kinds.get(kind))
            .copied()
    }

    fn load() -> Schema {
        let set = FileDescriptorSet::decode(DESCRIPTOR_SET)
            .expect("build.rs embeds a valid descriptor set");

        let mut protos: Vec<(String, &DescriptorProto)> = Vec::new();
        for file in &set.file {
            for message in &file.message_type {
                collect_messages(file.package(), message, &mut protos);
            }
        }
        let ids: HashMap<&str, MessageId> = protos
            .iter()
            .enumerate()
            .map(|(id, (name, _))| (name.as_str(), id))
            .collect();
        let go = GoTypes::parse(GO_TYPES);

        let messages: Vec<Message> = protos
            .iter()
            .map(|(name, proto)| {
                let mut fields: Vec<Field> = proto
                    .field
                    .iter()
                    .map(|field| resolve_field(name, field, &protos, &ids, &go))
                    .collect();
                fields.sort_by_key(|f| f.number);
                Message {
                    fields,
                    special: special(name, go.wrappers.contains(&name.as_str())),
                }
            })
            .collect();
        // go-types.txt and the .proto files come from the same commits; a quirk for a field
        // that does not exist means they drifted apart.
        for (message, number) in go.fields.keys() {
            let found = ids.get(message).and_then(|&id| messages[id].field(*number));
            assert!(
                found.is_some(),
                "go-types.txt names unknown field {message} {number}"
            );
        }

        let mut kinds: HashMap<String, HashMap<String, MessageId>> = HashMap::new();
        for (package, api_version) in &go.packages {
            let by_kind = kinds.entry(api_version.clone()).or_default();
            for kind in go.kinds.get(package.as_str()).into_iter().flatten() {
                let id = ids[format!("{package}.{kind}").as_str()];
                by_kind.insert((*kind).to_string(), id);
            }
        }
        let meta_kinds = META_KINDS_IN_EVERY_GROUP
            .iter()
            .map(|kind| (kind.to_string(), ids[format!("{META_V1}.{kind}").as_str()]))
            .collect();
        Schema {
            messages,
            kinds,
            meta_kinds,
        }
    }
}

fn resolve_field(
    message: &str,
    field: &FieldDescriptorProto,
    protos: &[(String, &DescriptorProto)],
    ids: &HashMap<&str, MessageId>,
    go: &GoTypes,
) -> Field {
    let number = u32::try_from(field.number()).expect("field numbers are positive");
    let ty = match field.r#type() {
        ProtoType::Message | ProtoType::Group => {
            Type::Message(ids[field.type_name().trim_start_matches('.')])
        }
        other => Type::Scalar(scalar(other)),
    };
    let label = match (field.label(), ty) {
        (ProtoLabel::Repeated, Type::Message(entry)) if is_map_entry(protos[entry].1) => {
            Label::Map(entry)
        }
        (ProtoLabel::Repeated, _) => Label::Repeated,
        _ => Label::Single,
    };
    let quirks = go.fields.get(&(message, number));
    Field {
        number,
        json: quirks
            .and_then(|q| q.json)
            .unwrap_or(field.name())
            .to_string(),
        ty,
        label,
        rule: quirks.map_or(JsonRule::OmitEmpty, |q| q.rule),
        embeds_protobuf: number == 2 && message.strip_prefix(META_V1) == Some(".WatchEvent"),
    }
}

fn collect_messages<'a>(
    scope: &str,
    message: &'a DescriptorProto,
    out: &mut Vec<(String, &'a DescriptorProto)>,
) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect_messages(&name, nested, out);
    }
    out.push((name, message));
}

fn is_map_entry(message: &DescriptorProto) -> bool {
    message.options.as_ref().is_some_and(|o| o.map_entry())
}

fn scalar(ty: ProtoType) -> Scalar {
    match ty {
        ProtoType::Double => Scalar::Double,
        ProtoType::Float => Scalar::Float,
        ProtoType::Int64 => Scalar::Int64,
        ProtoType::Uint64 => Scalar::Uint64,
        ProtoType::Int32 => Scalar::Int32,
        ProtoType::Fixed64 => Scalar::Fixed64,
        ProtoType::Fixed32 => Scalar::Fixed32,
        ProtoType::Bool => Scalar::Bool,
        ProtoType::String => Scalar::String,
        ProtoType::Bytes => Scalar::Bytes,
        ProtoType::Uint32 => Scalar::Uint32,
        ProtoType::Enum => Scalar::Enum,
        ProtoType::Sfixed32 => Scalar::Sfixed32,
        ProtoType::Sfixed64 => Scalar::Sfixed64,
        ProtoType::Sint32 => Scalar::Sint32,
        ProtoType::Sint64 => Scalar::Sint64,
        ProtoType::Message | ProtoType::Group => unreachable!("handled by the caller"),
    }
}

fn special(name: &str, wrapper: bool) -> Option<Special> {
    const APIEXTENSIONS: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1";
    let (package, short) = name.rsplit_once('.')?;
    Some(match (package, short) {
        (META_V1, "Time") => Special::Time,
        (META_V1, "MicroTime") => Special::MicroTime,
        (META_V1, "Duration") => Special::Duration,
        (META_V1, "FieldsV1") => Special::RawJson,
        ("k8s.io.apimachinery.pkg.util.intstr", "IntOrString") => Special::IntOrString,
        ("k8s.io.apimachinery.pkg.api.resource", "Quantity") => Special::Quantity,
        ("k8s.io.apimachinery.pkg.runtime", "RawExtension") => Special::RawExtension,
        (APIEXTENSIONS, "JSON") => Special::RawJson,
        (APIEXTENSIONS, "JSONSchemaPropsOrArray") => Special::SchemaOrArray,
        (APIEXTENSIONS, "JSONSchemaPropsOrBool") => Special::SchemaOrBool,
        (APIEXTENSIONS, "JSONSchemaPropsOrStringArray") => Special::SchemaOrStringArray,
        _ if wrapper => Special::Wrapper,
        _ => return None,
    })
}

/// `proto/go-types.txt`, parsed.
struct GoTypes<'a> {
    /// Proto package → apiVersion.
    packages: Vec<(String, String)>,
    kinds: HashMap<&'a str, Vec<&'a str>>,
    wrappers: Vec<&'a str>,
    fields: HashMap<(&'a str, u32), FieldQuirks<'a>>,
}

struct FieldQuirks<'a> {
    json: Option<&'a str>,
    rule: JsonRule,
}

impl<'a> GoTypes<'a> {
    fn parse(text: &'a str) -> Self {
        let mut go = GoTypes {
            packages: Vec::new(),
            kinds: HashMap::new(),
            wrappers: Vec::new(),
            fields: HashMap::new(),
        };
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut words = line.split(' ');
            match (words.next(), words.next()) {
                (Some("package"), Some(package)) => {
                    let group = words.next().expect("package line has a group");
                    let version = words.next().expect("package line has a version");
                    let api_version = match group {
                        "-" => version.to_string(),
                        group => format!("{group}/{version}"),
                    };
                    go.packages.push((package.to_string(), api_version));
                }
                (Some("kinds"), Some(package)) => {
                    go.kinds.insert(package, words.collect());
                }
                (Some("wrapper"), Some(message)) => go.wrappers.push(message),
                (Some("field"), Some(message)) => {
                    let number = words
                        .next()
                        .and_then(|n| n.parse().ok())
                        .expect("field line has a number");
                    let mut quirks = FieldQuirks {
                        json: None,
                        rule: JsonRule::OmitEmpty,
                    };
                    for flag in words {
                        match flag {
                            "ptr" => quirks.rule = JsonRule::Pointer,
                            "always" => quirks.rule = JsonRule::Always,
                            "inline" => quirks.rule = JsonRule::Inline,
                            "skip" => quirks.rule = JsonRule::Skip,
                            _ => {
                                let json = flag.strip_prefix("json=");
                                quirks.json = Some(json.expect("known field flag"));
                            }
                        }
                    }
                    go.fields.insert((message, number), quirks);
                }
                _ => panic!("unknown line in go-types.txt: {line}"),
            }
        }
        go
    }
}
