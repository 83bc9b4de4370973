//! Kubernetes' Common Expression Language: the environment kube-apiserver evaluates CEL in
//! (the standard library, cel-go's strings/lists/math/encoders extensions and Kubernetes'
//! own libraries), JSON values typed by their OpenAPI schema, a schema-aware check of field
//! references and cost, and the `x-kubernetes-validations` rules of CRD schemas.
//!
//! Parsing and evaluation are the `cel` crate's; what is Kubernetes' is here.

pub mod authz;
pub mod check;
pub mod formats;
pub mod library;
pub mod network;
pub mod rules;
pub mod value;

use std::sync::{Arc, LazyLock};

pub use cel::{Context, Program, Value};

/// The environment every expression compiles and runs in.
static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    // Extensions kube-apiserver enables (its `library.go`): strings, lists, math, encoders.
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    env.add_extension(cel::extensions::lists)
        .expect("lists extension");
    env.add_extension(cel::extensions::math)
        .expect("math extension");
    env.add_extension(cel::extensions::encoders)
        .expect("encoders extension");
    library::register(&mut env);
    authz::register(&mut env);
    network::register(&mut env);
    formats::register(&mut env);
    Arc::new(env)
});

pub fn env() -> Arc<cel::Env> {
    ENV.clone()
}

/// Parses an expression, with cel-go's error text (`ERROR: <input>:1:6: …` and the caret
/// lines) when it does not parse.
pub fn compile(source: &str) -> Result<Program, String> {
    ENV.compile(source).map_err(|e| e.to_string())
}

/// A context with `variables` bound, ready to run programs of this environment.
pub fn context<'a>(
    variables: impl IntoIterator<Item = (&'a str, Value)>,
) -> Context<'static, 'static> {
    let mut context = Context::with_env(ENV.clone());
    for (name, value) in variables {
        context.add_variable_from_value(name, value);
    }
    context
}

/// An evaluation error, worded as cel-go words the common ones.
pub fn describe(error: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    match error {
        E::NoSuchKey(key) => format!("no such key: {key}"),
        E::UndeclaredReference(name) => format!("undeclared reference to '{name}'"),
        E::DivisionByZero(_) => "division by zero".to_owned(),
        E::RemainderByZero(_) => "modulus by zero".to_owned(),
        other => other.to_string(),
    }
}
