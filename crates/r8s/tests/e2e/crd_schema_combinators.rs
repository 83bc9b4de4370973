//! `oneOf`, `anyOf`, `allOf` and `not` in CRD schemas with the real kubectl: custom resources
//! are checked against them with upstream's messages, and a CRD that puts a type inside one
//! is refused as not structural.

use crate::common;
use common::output_text as text;

use common::TestServer;

/// A backup goes to a bucket or to a volume, never both, and is never scheduled "never".
const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backups.example.com
spec:
  group: example.com
  scope: Namespaced
  names: { plural: backups, singular: backup, kind: Backup }
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              bucket: { type: string }
              volume: { type: string }
              schedule: { type: string }
            oneOf:
            - required: [bucket]
            - required: [volume]
            not:
              required: [schedule]
              properties:
                schedule: { enum: [never] }
"#;

fn backup(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Backup\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

fn with_crd() -> TestServer {
    let server = TestServer::start();
    server.apply_crd(CRD, "backups.example.com");
    server
}

#[test]
fn one_of_accepts_a_resource_matching_exactly_one_branch() {
    let server = with_crd();
    let out = server.kubectl_input(
        &["apply", "-f", "-"],
        &backup("to-bucket", "  bucket: archive\n"),
    );
    assert!(out.status.success(), "apply: {}", text(&out));
    let said = server.apply_refused(&backup("both", "  bucket: archive\n  volume: disk\n"));
    assert!(
        said.contains(r#"The Backup "both" is invalid: "#)
            && said.contains(
                r#""spec" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
            ),
        "{said}"
    );
    let said = server.apply_refused(&backup("neither", "  schedule: daily\n"));
    assert!(
        said.contains(r#""spec" must validate one and only one schema (oneOf). Found none valid"#),
        "{said}"
    );
}

#[test]
fn not_refuses_a_resource_matching_its_schema() {
    let server = with_crd();
    let said = server.apply_refused(&backup("never", "  volume: disk\n  schedule: never\n"));
    assert!(
        said.contains(r#""spec" must not validate the schema (not)"#),
        "{said}"
    );
}

#[test]
fn a_crd_with_a_type_inside_any_of_is_refused_as_not_structural() {
    let server = TestServer::start();
    let typed = CRD.replace(
        "            not:\n",
        "            anyOf:\n            - type: object\n            not:\n",
    );
    let out = server.kubectl_input(&["apply", "-f", "-"], &typed);
    assert!(!out.status.success(), "accepted: {typed}");
    let said = text(&out);
    assert!(
        said.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].anyOf[0].type: Forbidden: must be empty to be structural"),
        "{said}"
    );
}
