//! `metadata.managedFields`: one entry per manager, operation (Apply or Update), apiVersion
//! (Updates only) and subresource, each holding the fields that manager owns.

use serde_json::{Map, Value, json};

use super::fieldset::FieldSet;

/// Upstream keeps at most this many Update entries; older ones fold into `ancient-changes`.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// RFC 3339, as written.
    pub time: Option<String>,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    /// Whether two entries are the same manager's: appliers are one entry whatever apiVersion
    /// they applied with.
    pub fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// How conflicts name the manager: `"kubectl"`, `"kubectl" with subresource "scale"`,
    /// `"kube-controller-manager" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut text = quote(&self.manager);
        if !self.subresource.is_empty() {
            text.push_str(&format!(" with subresource {}", quote(&self.subresource)));
        }
        if self.operation == Operation::Update {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }

    fn to_value(&self) -> Value {
        let mut entry = Map::new();
        if !self.manager.is_empty() {
            entry.insert("manager".into(), json!(self.manager));
        }
        entry.insert("operation".into(), json!(self.operation.as_str()));
        entry.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            entry.insert("time".into(), json!(time));
        }
        entry.insert("fieldsType".into(), json!("FieldsV1"));
        entry.insert("fieldsV1".into(), self.fields.to_value());
        if !self.subresource.is_empty() {
            entry.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(entry)
    }

    fn seconds(&self) -> i64 {
        self.time
            .as_deref()
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map_or(0, |t| t.unix_timestamp())
    }
}

fn quote(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// What a request's `metadata.managedFields` asks for.
pub enum Sent {
    /// Nothing usable: keep the live entries.
    Nothing,
    /// `[]` or `[{}]`: forget every entry.
    Reset,
    Entries(Vec<Entry>),
}

/// Reads the managedFields an object carries. An error says which entry is malformed.
pub fn decode(object: &Value) -> Result<Vec<Entry>, String> {
    let Some(list) = object.get("metadata").and_then(|m| m.get("managedFields")) else {
        return Ok(Vec::new());
    };
    let Some(list) = list.as_array() else {
        return if list.is_null() {
            Ok(Vec::new())
        } else {
            Err("managedFields must be a list".to_owned())
        };
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let text = |field: &str| raw.get(field).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".to_owned()),
        };
        if text("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".to_owned());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {other:?} in managed fields entry {i}"
                ));
            }
        }
        let fields = FieldSet::from_value(raw.get("fieldsV1").unwrap_or(&Value::Null))
            .map_err(|e| format!("error decoding set of managed fields entry {i}: {e}"))?;
        let entry = Entry {
            manager: text("manager").to_owned(),
            operation,
            api_version: text("apiVersion").to_owned(),
            time: raw.get("time").and_then(Value::as_str).map(str::to_owned),
            subresource: text("subresource").to_owned(),
            fields,
        };
        // Entries of one manager collapse into the last, as upstream's map of them does.
        entries.retain(|e| !e.same_manager(&entry));
        entries.push(entry);
    }
    Ok(entries)
}

/// What a client sent in an object's managedFields (on create, update or patch).
pub fn sent(object: &Value) -> Sent {
    let Some(list) = object
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Sent::Nothing;
    };
    let reset =
        list.is_empty() || (list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty));
    if reset {
        return Sent::Reset;
    }
    match decode(object) {
        Ok(entries) if !entries.is_empty() => Sent::Entries(entries),
        // Upstream falls back to the live entries rather than lose them to a bad client.
        _ => Sent::Nothing,
    }
}

/// Writes entries into the object, in upstream's order; none removes the field.
pub fn encode(object: &mut Value, mut entries: Vec<Entry>) {
    cap_update_managers(&mut entries);
    entries.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.seconds().cmp(&b.seconds()))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::to_value).collect()),
        );
    }
}

/// Folds the oldest Update entries into one `ancient-changes` entry while there are too many.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    let updates = |entries: &Vec<Entry>| {
        entries
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .count()
    };
    while updates(entries) > MAX_UPDATE_MANAGERS {
        let oldest = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.operation == Operation::Update && e.manager != ANCIENT_CHANGES)
            .min_by_key(|(_, e)| e.seconds())
            .map(|(i, _)| i);
        let Some(oldest) = oldest else { break };
        let folded = entries.remove(oldest);
        match entries.iter_mut().find(|e| {
            e.manager == ANCIENT_CHANGES
                && e.operation == Operation::Update
                && e.api_version == folded.api_version
        }) {
            Some(ancient) => ancient.fields.union_with(&folded.fields),
            None => entries.push(Entry {
                manager: ANCIENT_CHANGES.to_owned(),
                subresource: String::new(),
                ..folded
            }),
        }
    }
}
