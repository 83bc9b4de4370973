//! Kubernetes' CEL authorizer library (the `authorizer` variable of admission policies and
//! webhook match conditions): `authorizer.group('apps').resource('deployments')
//! .namespace('ns').name('x').check('update').allowed()`, `authorizer.path('/healthz')
//! .check('get')`, `authorizer.serviceAccount('ns', 'sa')…`, and
//! `authorizer.requestResource.check('approve')` for the resource of the request being
//! admitted. Decisions answer `allowed()`, `reason()`, `errored()` and `error()`.
//!
//! The server supplies the answers through [`Authorize`]; this module only builds the
//! questions. `fieldSelector`/`labelSelector` on a resource check are not built.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::objects::{Key, Map, Opaque};
use cel::{Env, Value};

/// One authorization question, as upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Question {
    pub verb: String,
    /// Set for a non-resource request (`authorizer.path`).
    pub path: Option<String>,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Ask for this ServiceAccount (`namespace`, `name`) instead of the requester.
    pub service_account: Option<(String, String)>,
}

/// Answers questions for one admission request: whether it is allowed, and why.
pub trait Authorize: Send + Sync {
    fn authorize(&self, question: &Question) -> (bool, String);
}

/// The hidden key the `authorizer` map keeps its authorizer under.
const AUTHORIZER: &str = "@authorizer";

/// A question being built, with whom to ask.
#[derive(Clone)]
struct Pending {
    authorize: Arc<dyn Authorize>,
    question: Question,
    /// Which builder step it is at: `authorizer`, a group, a resource or a path.
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Authorizer,
    Group,
    Resource,
    Path,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("question", &self.question)
            .field("stage", &self.stage)
            .finish()
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.authorize, &other.authorize)
            && self.question == other.question
            && self.stage == other.stage
    }
}

impl Eq for Pending {}

impl Opaque for Pending {
    fn runtime_type_name(&self) -> &str {
        match self.stage {
            Stage::Authorizer => "kubernetes.authorization.Authorizer",
            Stage::Group => "kubernetes.authorization.GroupCheck",
            Stage::Resource => "kubernetes.authorization.ResourceCheck",
            Stage::Path => "kubernetes.authorization.PathCheck",
        }
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    allowed: bool,
    reason: String,
}

impl Opaque for Decision {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Decision"
    }
}

/// The `authorizer` variable: asks `authorize`, with `request` (group, resource, subresource,
/// namespace, name of the request being admitted) as `authorizer.requestResource`.
pub fn variable(authorize: Arc<dyn Authorize>, request: Question) -> Value {
    let root = Pending {
        authorize: authorize.clone(),
        question: Question::default(),
        stage: Stage::Authorizer,
    };
    let request_resource = Pending {
        authorize,
        question: request,
        stage: Stage::Resource,
    };
    let entries = HashMap::from([
        (
            Key::String(Arc::new("requestResource".to_owned())),
            Value::Opaque(Arc::new(request_resource)),
        ),
        (
            Key::String(Arc::new(AUTHORIZER.to_owned())),
            Value::Opaque(Arc::new(root)),
        ),
    ]);
    Value::Map(Map {
        map: Arc::new(entries),
    })
}

/// The builder a member call is made on: the `authorizer` map stands for its authorizer.
fn pending(target: &Value) -> Result<Pending, String> {
    let opaque = match target {
        Value::Map(map) => map
            .map
            .get(&Key::String(Arc::new(AUTHORIZER.to_owned())))
            .cloned()
            .ok_or("not an authorizer")?,
        other => other.clone(),
    };
    match opaque {
        Value::Opaque(o) => o
            .downcast_ref::<Pending>()
            .cloned()
            .ok_or_else(|| "not an authorization check".to_owned()),
        _ => Err("not an authorization check".to_owned()),
    }
}

fn text(value: &Value) -> Result<String, String> {
    crate::library::text(value).map(str::to_owned)
}

fn at(mut pending: Pending, wanted: &[Stage], next: Stage) -> Result<Pending, String> {
    if !wanted.contains(&pending.stage) {
        return Err(format!("cannot be called on {:?}", pending.stage));
    }
    pending.stage = next;
    Ok(pending)
}

fn wrap(pending: Pending) -> Value {
    Value::Opaque(Arc::new(pending))
}

fn group(args: Vec<Value>) -> Result<Value, String> {
    let mut p = at(pending(&args[0])?, &[Stage::Authorizer], Stage::Group)?;
    p.question.group = text(&args[1])?;
    Ok(wrap(p))
}

fn path(args: Vec<Value>) -> Result<Value, String> {
    let mut p = at(pending(&args[0])?, &[Stage::Authorizer], Stage::Path)?;
    p.question.path = Some(text(&args[1])?);
    Ok(wrap(p))
}

fn service_account(args: Vec<Value>) -> Result<Value, String> {
    let mut p = at(pending(&args[0])?, &[Stage::Authorizer], Stage::Authorizer)?;
    p.question.service_account = Some((text(&args[1])?, text(&args[2])?));
    Ok(wrap(p))
}

fn resource(args: Vec<Value>) -> Result<Value, String> {
    let mut p = at(pending(&args[0])?, &[Stage::Group], Stage::Resource)?;
    p.question.resource = text(&args[1])?;
    Ok(wrap(p))
}

fn subresource(args: Vec<Value>) -> Result<Value, String> {
    let mut p = at(pending(&args[0])?, &[Stage::Resource], Stage::Resource)?;
    p.question.subresource = text(&args[1])?;
    Ok(wrap(p))
}

fn namespace(args: Vec<Value>) -> Result<Value, String> {
    let mut p = at(pending(&args[0])?, &[Stage::Resource], Stage::Resource)?;
    p.question.namespace = text(&args[1])?;
    Ok(wrap(p))
}

fn name(args: Vec<Value>) -> Result<Value, String> {
    let mut p = at(pending(&args[0])?, &[Stage::Resource], Stage::Resource)?;
    p.question.name = text(&args[1])?;
    Ok(wrap(p))
}

fn check(args: Vec<Value>) -> Result<Value, String> {
    let p = at(
        pending(&args[0])?,
        &[Stage::Resource, Stage::Path],
        Stage::Resource,
    )?;
    let mut question = p.question;
    question.verb = text(&args[1])?;
    let (allowed, reason) = p.authorize.authorize(&question);
    Ok(Value::Opaque(Arc::new(Decision { allowed, reason })))
}

fn decision(value: &Value) -> Result<Decision, String> {
    crate::library::opaque::<Decision>(value, "a decision")
}

fn allowed(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(decision(&args[0])?.allowed))
}

fn reason(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::String(Arc::new(decision(&args[0])?.reason)))
}

/// r8s's authorizers answer without errors.
fn errored(args: Vec<Value>) -> Result<Value, String> {
    decision(&args[0])?;
    Ok(Value::Bool(false))
}

fn error(args: Vec<Value>) -> Result<Value, String> {
    decision(&args[0])?;
    Ok(Value::String(Arc::new(String::new())))
}

crate::library::natives! {
    group_op = "group" => group;
    path_op = "path" => path;
    service_account_op = "serviceAccount" => service_account;
    resource_op = "resource" => resource;
    subresource_op = "subresource" => subresource;
    namespace_op = "namespace" => namespace;
    name_op = "name" => name;
    check_op = "check" => check;
    allowed_op = "allowed" => allowed;
    reason_op = "reason" => reason;
    errored_op = "errored" => errored;
    error_op = "error" => error;
}

/// Adds the library's member functions to `env`.
pub fn register(env: &mut Env) {
    use cel::common::functions::Function;
    let functions: [(&str, usize, Function); 12] = [
        ("group", 1, group_op),
        ("path", 1, path_op),
        ("serviceAccount", 2, service_account_op),
        ("resource", 1, resource_op),
        ("subresource", 1, subresource_op),
        ("namespace", 1, namespace_op),
        ("name", 1, name_op),
        ("check", 1, check_op),
        ("allowed", 0, allowed_op),
        ("reason", 0, reason_op),
        ("errored", 0, errored_op),
        ("error", 0, error_op),
    ];
    for (name, args, op) in functions {
        crate::library::member_dyn(env, name, args, op);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allows `get` of anything, and everything to the ServiceAccount `kube-system/admin`.
    struct Fake;

    impl Authorize for Fake {
        fn authorize(&self, q: &Question) -> (bool, String) {
            let admin = q.service_account == Some(("kube-system".into(), "admin".into()));
            let allowed = admin || q.verb == "get";
            (
                allowed,
                format!("{} {} {}/{}", q.verb, q.resource, q.namespace, q.name),
            )
        }
    }

    fn eval(source: &str) -> Value {
        let request = Question {
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: "ns".into(),
            name: "web".into(),
            ..Default::default()
        };
        let program = crate::compile(source).unwrap();
        let context = crate::context([("authorizer", variable(Arc::new(Fake), request))]);
        program.execute(&context).unwrap()
    }

    #[test]
    fn checks_ask_the_authorizer() {
        assert_eq!(
            eval(
                "authorizer.group('').resource('pods').namespace('a').name('b').check('get').allowed()"
            ),
            Value::Bool(true)
        );
        assert_eq!(
            eval("authorizer.group('').resource('pods').check('delete').allowed()"),
            Value::Bool(false)
        );
        assert_eq!(
            eval(
                "authorizer.group('').resource('pods').namespace('a').name('b').check('get').reason()"
            ),
            Value::String(Arc::new("get pods a/b".into()))
        );
        assert_eq!(
            eval(
                "authorizer.serviceAccount('kube-system', 'admin').group('').resource('pods').check('delete').allowed()"
            ),
            Value::Bool(true)
        );
        assert_eq!(
            eval("authorizer.path('/healthz').check('get').allowed()"),
            Value::Bool(true)
        );
        assert_eq!(
            eval("authorizer.requestResource.check('update').reason()"),
            Value::String(Arc::new("update deployments ns/web".into()))
        );
        assert_eq!(
            eval("authorizer.requestResource.check('get').errored()"),
            Value::Bool(false)
        );
    }

    #[test]
    fn steps_out_of_order_fail() {
        let program = crate::compile("authorizer.resource('pods').check('get').allowed()").unwrap();
        let context =
            crate::context([("authorizer", variable(Arc::new(Fake), Question::default()))]);
        assert!(program.execute(&context).is_err());
    }
}
