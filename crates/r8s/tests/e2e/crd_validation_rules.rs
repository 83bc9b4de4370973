//! CRD validation rules (`x-kubernetes-validations`, CEL) with the real kubectl: rules refuse
//! custom resources with their messages, transition rules compare with the old object,
//! unchanged values ratchet, and a CRD whose rules do not compile, name fields its schema
//! lacks or cost too much is refused.

use crate::common;
use common::output_text as text;

use common::TestServer;

/// Upstream's documentation example, plus an immutable field and a rule on list items.
const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: { plural: crontabs, singular: crontab, kind: CronTab }
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
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.replicas"
              message: "minReplicas cannot be larger than replicas"
            - rule: "!has(self.owner) || self.owner == oldSelf.owner"
              message: "owner is immutable"
            properties:
              replicas: { type: integer }
              minReplicas: { type: integer }
              owner: { type: string }
              address:
                type: string
                x-kubernetes-validations:
                - rule: "isIP(self) && ip(self).family() == 4"
                  message: "address must be an IPv4 address"
              schedule:
                type: string
                x-kubernetes-validations:
                - rule: "self.split(' ').size() == 5"
                  messageExpression: "'schedule has ' + string(self.split(' ').size()) + ' fields, not 5'"
              ports:
                type: array
                maxItems: 10
                items: { type: integer }
                x-kubernetes-validations:
                - rule: "self.all(p, p > 0 && p < 65536)"
                  reason: FieldValueForbidden
                  message: "ports must be between 1 and 65535"
"#;

fn crontab(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

fn with_crd() -> TestServer {
    let server = TestServer::start();
    server.apply_crd(CRD, "crontabs.stable.example.com");
    server
}

fn apply_ok(server: &TestServer, yaml: &str) -> String {
    let out = server.kubectl_input(&["apply", "-f", "-"], yaml);
    assert!(out.status.success(), "apply: {}", text(&out));
    text(&out)
}

#[test]
fn a_custom_resource_breaking_a_rule_is_refused_with_the_rules_message() {
    let server = with_crd();
    apply_ok(
        &server,
        &crontab(
            "ok",
            "  replicas: 3\n  minReplicas: 1\n  schedule: '* * * * *'\n  ports: [80, 443]\n",
        ),
    );
    let said = server.apply_refused(&crontab("bad", "  replicas: 1\n  minReplicas: 3\n"));
    assert!(
        said.contains(r#"The CronTab "bad" is invalid: spec: Invalid value: minReplicas cannot be larger than replicas"#),
        "{said}"
    );
    let said = server.apply_refused(&crontab(
        "bad",
        "  replicas: 1\n  minReplicas: 1\n  schedule: '* *'\n",
    ));
    assert!(
        said.contains("spec.schedule: Invalid value: schedule has 2 fields, not 5"),
        "{said}"
    );
    let said = server.apply_refused(&crontab(
        "bad",
        "  replicas: 1\n  minReplicas: 1\n  ports: [80, 70000]\n",
    ));
    assert!(
        said.contains("spec.ports: Forbidden: ports must be between 1 and 65535"),
        "{said}"
    );
    let said = server.apply_refused(&crontab(
        "bad",
        "  replicas: 1\n  minReplicas: 1\n  address: 'fd00::1'\n",
    ));
    assert!(
        said.contains("spec.address: Invalid value: \"fd00::1\": address must be an IPv4 address"),
        "{said}"
    );
    apply_ok(
        &server,
        &crontab(
            "addressed",
            "  replicas: 1\n  minReplicas: 1\n  address: 10.0.0.1\n",
        ),
    );
    // Nothing refused was stored.
    let out = server.kubectl(&["get", "crontab", "bad"]);
    assert!(!out.status.success());
}

#[test]
fn a_transition_rule_compares_an_update_with_the_stored_object() {
    let server = with_crd();
    let first = crontab("t", "  replicas: 1\n  minReplicas: 1\n  owner: alice\n");
    apply_ok(&server, &first);
    let said = server.apply_refused(&crontab(
        "t",
        "  replicas: 1\n  minReplicas: 1\n  owner: bob\n",
    ));
    assert!(
        said.contains("spec: Invalid value: owner is immutable"),
        "{said}"
    );
    // Other changes pass the transition rule.
    apply_ok(
        &server,
        &crontab("t", "  replicas: 2\n  minReplicas: 1\n  owner: alice\n"),
    );
}

#[test]
fn an_object_stored_before_a_rule_existed_can_still_be_updated_elsewhere() {
    let server = with_crd();
    // Stored while the rule was not there: remove the rule, store, put the rule back.
    let without = CRD.replace("self.minReplicas <= self.replicas", "true");
    apply_ok(&server, &without);
    apply_ok(
        &server,
        &crontab(
            "old",
            "  replicas: 1\n  minReplicas: 5\n  schedule: '* * * * *'\n",
        ),
    );
    apply_ok(&server, CRD);
    // The spec (where the rule is) is unchanged by a label change: the failure ratchets to
    // a warning.
    let out = server.kubectl(&["label", "crontab", "old", "team=a"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("minReplicas cannot be larger than replicas"),
        "no ratcheting warning: {}",
        text(&out)
    );
    // Changing the spec without fixing it is refused.
    let said = server.apply_refused(&crontab(
        "old",
        "  replicas: 2\n  minReplicas: 5\n  schedule: '* * * * *'\n",
    ));
    assert!(
        said.contains("minReplicas cannot be larger than replicas"),
        "{said}"
    );
}

#[test]
fn a_crd_with_a_rule_the_schema_cannot_satisfy_is_refused() {
    let server = TestServer::start();
    let undefined = CRD.replace("self.minReplicas <= self.replicas", "self.z == 100");
    let said = server.apply_refused(&undefined);
    assert!(said.contains("undefined field 'z'"), "{said}");
    assert!(
        said.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"),
        "{said}"
    );
    let syntax = CRD.replace("self.minReplicas <= self.replicas", "self.replicas >");
    assert!(
        server
            .apply_refused(&syntax)
            .contains("compilation failed: ERROR: <input>:1:")
    );
    // Without maxItems the nested iteration has no bound.
    let costly = CRD.replace("                maxItems: 10\n", "").replace(
        "self.all(p, p > 0 && p < 65536)",
        "self.all(a, self.all(b, a != b || a == b))",
    );
    let said = server.apply_refused(&costly);
    assert!(
        said.contains("estimated rule cost exceeds budget by factor of"),
        "{said}"
    );
    let out = server.kubectl(&["get", "crd", "crontabs.stable.example.com"]);
    assert!(!out.status.success(), "a refused CRD was stored");
}
