//! Resources served in one form and stored in another (see [`crate::Resource::stored_as`]):
//! their behaviour is the stored form's, reached through a conversion, as upstream converts
//! every version to one internal form before its strategy runs.

use serde_json::Value;

use super::{Column, Deletion, FieldError, Kind};

/// How one served version's objects become the stored form and back. Converting to storage
/// and back gives the object that was converted (upstream keeps what a version cannot say in
/// annotations for that).
pub trait Conversion: Sync {
    fn to_storage(&self, object: Value) -> Value;

    fn to_served(&self, object: Value) -> Value;

    /// The field selector labels this version accepts, besides `metadata.name` and
    /// `metadata.namespace`.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The stored form's name for one of [`Conversion::selectable_fields`].
    fn stored_field_label<'a>(&self, label: &'a str) -> &'a str {
        label
    }
}

/// The behaviour of a served version stored as another: `stored`'s, on converted objects.
/// (Such resources hold no addresses from the server's pools: allocations are not converted.)
pub struct Converted {
    pub stored: &'static dyn Kind,
    pub conversion: &'static dyn Conversion,
}

impl Converted {
    fn stored_form(&self, object: &Value) -> Value {
        self.conversion.to_storage(object.clone())
    }

    /// Runs `change` on the stored form of `object` and puts the result back in this form.
    fn through(&self, object: &mut Value, change: impl FnOnce(&mut Value)) {
        let mut stored = self.stored_form(object);
        change(&mut stored);
        *object = self.conversion.to_served(stored);
    }
}

impl Kind for Converted {
    fn prepare_for_create(&self, object: &mut Value) {
        self.through(object, |stored| self.stored.prepare_for_create(stored));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let old = self.stored_form(old);
        self.through(new, |stored| self.stored.prepare_for_update(stored, &old));
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        self.stored.validate(&self.stored_form(object))
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        self.conversion.selectable_fields()
    }

    fn stored_field_label<'a>(&self, label: &'a str) -> &'a str {
        self.conversion.stored_field_label(label)
    }

    fn prepare_for_subresource_update(&self, subresource: &str, new: &mut Value, old: &Value) {
        let old = self.stored_form(old);
        self.through(new, |stored| {
            self.stored
                .prepare_for_subresource_update(subresource, stored, &old)
        });
    }

    fn subresource_fields(&self, subresource: &str) -> Option<&'static [&'static str]> {
        self.stored.subresource_fields(subresource)
    }

    fn immutable_fields(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        self.stored
            .immutable_fields(&self.stored_form(old), &self.stored_form(new))
    }

    fn columns(&self) -> Option<&'static [Column]> {
        self.stored.columns()
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        self.stored.cells(&self.stored_form(object))
    }

    fn on_delete(&self, object: &mut Value) -> Deletion {
        let mut deletion = Deletion::Now;
        self.through(object, |stored| deletion = self.stored.on_delete(stored));
        deletion
    }

    fn grace_period(&self, object: &Value, requested: Option<i64>) -> Option<i64> {
        self.stored
            .grace_period(&self.stored_form(object), requested)
    }

    fn returns_deleted_object(&self) -> bool {
        self.stored.returns_deleted_object()
    }

    fn to_storage(&self, object: Value) -> Value {
        self.conversion.to_storage(object)
    }

    fn to_served(&self, object: Value) -> Value {
        self.conversion.to_served(object)
    }
}
