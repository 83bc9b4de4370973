//! Kubernetes' own CEL libraries (k8s.io/apiserver/pkg/cel/library): lists (`isSorted`,
//! `sum`, `min`, `max`, `indexOf`, `lastIndexOf`), regex (`find`, `findAll`) and quantity
//! (`quantity`, `isQuantity` and its methods); IP/CIDR are in `network`, format, semver and
//! URL in `formats`, the authorizer in `authz`.

use std::cmp::Ordering;
use std::sync::Arc;

use cel::common::functions::Function;
use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{Env, ExecutionError, Value};
use r8s_api::quantity::Quantity;

pub(crate) type Native = fn(Vec<Value>) -> Result<Value, String>;

/// Runs a function written over `Value`s as an overload of the environment.
pub(crate) fn bridge<'b, 'v>(
    name: &str,
    args: Vec<CowVal<'b, 'v>>,
    function: Native,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let values = args
        .iter()
        .map(|a| Value::try_from(a.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let out = function(values).map_err(|m| ExecutionError::function_error(name, m))?;
    Ok(CowVal::Owned(Box::<dyn Val>::try_from(out)?))
}

/// Declares overload wrappers (`fn(Vec<CowVal>) -> …`) around functions over `Value`s.
macro_rules! natives {
    ($($wrapper:ident = $name:literal => $function:path;)*) => {$(
        fn $wrapper<'b, 'v>(
            args: Vec<cel::common::value::CowVal<'b, 'v>>,
        ) -> Result<cel::common::value::CowVal<'b, 'v>, cel::ExecutionError> {
            $crate::library::bridge($name, args, $function)
        }
    )*};
}
pub(crate) use natives;

natives! {
    is_sorted_op = "isSorted" => is_sorted;
    sum_op = "sum" => sum;
    min_op = "min" => min;
    max_op = "max" => max;
    index_of_op = "indexOf" => index_of;
    last_index_of_op = "lastIndexOf" => last_index_of;
    find_op = "find" => find;
    find_all_op = "findAll" => find_all;
    quantity_op = "quantity" => quantity;
    is_quantity_op = "isQuantity" => is_quantity;
    q_is_integer_op = "isInteger" => q_is_integer;
    q_as_integer_op = "asInteger" => q_as_integer;
    q_as_float_op = "asApproximateFloat" => q_as_float;
    q_sign_op = "sign" => q_sign;
    q_add_op = "add" => q_add;
    q_sub_op = "sub" => q_sub;
    q_less_op = "isLessThan" => q_less;
    q_greater_op = "isGreaterThan" => q_greater;
    q_compare_op = "compareTo" => q_compare;
}

/// Adds the Kubernetes libraries to `env`.
pub fn register(env: &mut Env) {
    member(env, "isSorted", LIST_TYPE, vec![], is_sorted_op);
    member(env, "sum", LIST_TYPE, vec![], sum_op);
    member(env, "min", LIST_TYPE, vec![], min_op);
    member(env, "max", LIST_TYPE, vec![], max_op);
    member(env, "indexOf", LIST_TYPE, vec![DYN_TYPE], index_of_op);
    member(
        env,
        "lastIndexOf",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of_op,
    );
    member(env, "find", STRING_TYPE, vec![STRING_TYPE], find_op);
    member(env, "findAll", STRING_TYPE, vec![STRING_TYPE], find_all_op);
    member(
        env,
        "findAll",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_op,
    );
    for (name, args, op) in [
        ("isInteger", 0, q_is_integer_op as Function),
        ("asInteger", 0, q_as_integer_op),
        ("asApproximateFloat", 0, q_as_float_op),
        ("sign", 0, q_sign_op),
        ("add", 1, q_add_op),
        ("sub", 1, q_sub_op),
        ("isLessThan", 1, q_less_op),
        ("isGreaterThan", 1, q_greater_op),
        ("compareTo", 1, q_compare_op),
    ] {
        member(
            env,
            name,
            DYN_TYPE,
            (0..args).map(|_| DYN_TYPE).collect(),
            op,
        );
    }
    env.add_overload("quantity", "k8s.quantity", vec![STRING_TYPE], quantity_op)
        .expect("quantity");
    env.add_overload(
        "isQuantity",
        "k8s.isQuantity",
        vec![STRING_TYPE],
        is_quantity_op,
    )
    .expect("isQuantity");
}

/// A member function on any receiver, taking `args` arguments of any type.
pub(crate) fn member_dyn(env: &mut Env, name: &str, args: usize, op: Function) {
    member(
        env,
        name,
        DYN_TYPE,
        (0..args).map(|_| DYN_TYPE).collect(),
        op,
    );
}

fn member(env: &mut Env, name: &str, target: Type, args: Vec<Type>, op: Function) {
    let id = format!("k8s.{name}.{}", args.len());
    env.add_member_overload(name, &id, target, args, op)
        .unwrap_or_else(|e| panic!("registering {name}: {e:?}"));
}

fn list(value: &Value) -> Result<&[Value], String> {
    match value {
        Value::List(items) => Ok(items),
        other => Err(format!("expected a list, got {:?}", other.type_of())),
    }
}

/// A string argument.
pub(crate) fn text(value: &Value) -> Result<&str, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(format!("expected a string, got {:?}", other.type_of())),
    }
}

/// An opaque argument of type `T` (an IP, a quantity, …); `what` names it in the error.
pub(crate) fn opaque<T: Opaque + Clone>(value: &Value, what: &str) -> Result<T, String> {
    match value {
        Value::Opaque(o) => o.downcast_ref::<T>().cloned(),
        _ => None,
    }
    .ok_or_else(|| format!("expected {what}"))
}

fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    a.partial_cmp(b)
        .ok_or_else(|| format!("{a:?} and {b:?} cannot be compared"))
}

fn is_sorted(args: Vec<Value>) -> Result<Value, String> {
    let items = list(&args[0])?;
    for pair in items.windows(2) {
        if compare(&pair[0], &pair[1])? == Ordering::Greater {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

fn sum(args: Vec<Value>) -> Result<Value, String> {
    let items = list(&args[0])?;
    let mut total = match items.first() {
        None | Some(Value::Int(_)) => Value::Int(0),
        Some(Value::UInt(_)) => Value::UInt(0),
        Some(Value::Float(_)) => Value::Float(0.0),
        Some(Value::Duration(_)) => Value::Duration(chrono::Duration::zero()),
        Some(other) => return Err(format!("cannot sum {:?}", other.type_of())),
    };
    for item in items {
        total = match (&total, item) {
            (Value::Int(a), Value::Int(b)) => {
                Value::Int(a.checked_add(*b).ok_or("integer overflow")?)
            }
            (Value::UInt(a), Value::UInt(b)) => {
                Value::UInt(a.checked_add(*b).ok_or("unsigned integer overflow")?)
            }
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            (Value::Duration(a), Value::Duration(b)) => Value::Duration(*a + *b),
            _ => return Err("a list to sum must hold one numeric type".to_owned()),
        };
    }
    Ok(total)
}

fn extreme(args: Vec<Value>, wanted: Ordering) -> Result<Value, String> {
    let items = list(&args[0])?;
    let mut best = items.first().ok_or("the list must not be empty")?.clone();
    for item in &items[1..] {
        if compare(item, &best)? == wanted {
            best = item.clone();
        }
    }
    Ok(best)
}

fn min(args: Vec<Value>) -> Result<Value, String> {
    extreme(args, Ordering::Less)
}

fn max(args: Vec<Value>) -> Result<Value, String> {
    extreme(args, Ordering::Greater)
}

fn index_of(args: Vec<Value>) -> Result<Value, String> {
    let items = list(&args[0])?;
    Ok(Value::Int(
        items
            .iter()
            .position(|i| *i == args[1])
            .map_or(-1, |p| p as i64),
    ))
}

fn last_index_of(args: Vec<Value>) -> Result<Value, String> {
    let items = list(&args[0])?;
    Ok(Value::Int(
        items
            .iter()
            .rposition(|i| *i == args[1])
            .map_or(-1, |p| p as i64),
    ))
}

fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

fn find(args: Vec<Value>) -> Result<Value, String> {
    let found = regex(text(&args[1])?)?
        .find(text(&args[0])?)
        .map_or("", |m| m.as_str());
    Ok(Value::String(Arc::new(found.to_owned())))
}

fn find_all(args: Vec<Value>) -> Result<Value, String> {
    let limit = match args.get(2) {
        Some(Value::Int(n)) if *n >= 0 => *n as usize,
        _ => usize::MAX,
    };
    let matches = regex(text(&args[1])?)?
        .find_iter(text(&args[0])?)
        .take(limit)
        .map(|m| Value::String(Arc::new(m.as_str().to_owned())))
        .collect();
    Ok(Value::List(Arc::new(matches)))
}

/// A `resource.Quantity` as a CEL value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CelQuantity(Quantity);

impl Opaque for CelQuantity {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

fn quantity_of(value: &Value) -> Result<Quantity, String> {
    match value {
        Value::Int(i) => Ok(Quantity::from_units(*i)),
        other => opaque::<CelQuantity>(other, "a quantity").map(|q| q.0),
    }
}

fn wrap(q: Quantity) -> Value {
    Value::Opaque(Arc::new(CelQuantity(q)))
}

fn quantity(args: Vec<Value>) -> Result<Value, String> {
    let text = text(&args[0])?;
    Quantity::parse(text)
        .map(wrap)
        .ok_or_else(|| format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text:?}"))
}

fn is_quantity(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(Quantity::parse(text(&args[0])?).is_some()))
}

fn q_is_integer(args: Vec<Value>) -> Result<Value, String> {
    let q = quantity_of(&args[0])?;
    Ok(Value::Bool(
        q.millis % 1000 == 0 && i64::try_from(q.millis / 1000).is_ok(),
    ))
}

fn q_as_integer(args: Vec<Value>) -> Result<Value, String> {
    let q = quantity_of(&args[0])?;
    if q.millis % 1000 != 0 {
        return Err("cannot convert value to integer".to_owned());
    }
    i64::try_from(q.millis / 1000)
        .map(Value::Int)
        .map_err(|_| "cannot convert value to integer".to_owned())
}

fn q_as_float(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Float(quantity_of(&args[0])?.millis as f64 / 1000.0))
}

fn q_sign(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Int(quantity_of(&args[0])?.millis.signum() as i64))
}

fn q_add(args: Vec<Value>) -> Result<Value, String> {
    let (a, b) = (quantity_of(&args[0])?, quantity_of(&args[1])?);
    Ok(wrap(a + b))
}

fn q_sub(args: Vec<Value>) -> Result<Value, String> {
    let (a, b) = (quantity_of(&args[0])?, quantity_of(&args[1])?);
    Ok(wrap(Quantity {
        millis: a.millis - b.millis,
        binary: a.binary,
    }))
}

fn q_ordering(args: &[Value]) -> Result<Ordering, String> {
    if let Some(semver) = crate::formats::semver_ordering(args) {
        return semver;
    }
    Ok(quantity_of(&args[0])?
        .millis
        .cmp(&quantity_of(&args[1])?.millis))
}

fn q_less(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(q_ordering(&args)? == Ordering::Less))
}

fn q_greater(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(q_ordering(&args)? == Ordering::Greater))
}

fn q_compare(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Int(q_ordering(&args)? as i64))
}

/// Runs an expression with no variables, for the libraries' tests.
#[cfg(test)]
pub(crate) fn eval(source: &str) -> Value {
    let program = crate::compile(source).unwrap();
    program
        .execute(&crate::context([]))
        .unwrap_or_else(|e| panic!("{source}: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::eval;

    #[test]
    fn list_functions() {
        assert_eq!(eval("[1, 2, 2, 5].isSorted()"), true.into());
        assert_eq!(eval("['b', 'a'].isSorted()"), false.into());
        assert_eq!(eval("[1, 2, 3].sum()"), 6.into());
        assert_eq!(eval("[3, 1, 2].min()"), 1.into());
        assert_eq!(eval("[3, 1, 2].max()"), 3.into());
        assert_eq!(eval("[1, 2, 1].indexOf(1)"), 0.into());
        assert_eq!(eval("[1, 2, 1].lastIndexOf(1)"), 2.into());
        assert_eq!(eval("[1].indexOf(9)"), (-1).into());
    }

    #[test]
    fn regex_functions() {
        assert_eq!(eval("'abc 123'.find('[0-9]+')"), "123".into());
        assert_eq!(eval("'abc'.find('[0-9]+')"), "".into());
        assert_eq!(
            eval("'a1b2c3'.findAll('[0-9]')").to_string_lossy(),
            "[1, 2, 3]"
        );
        assert_eq!(eval("'a1b2c3'.findAll('[0-9]', 2).size()"), 2.into());
    }

    #[test]
    fn quantities_compare_and_add() {
        assert_eq!(
            eval("quantity('1Gi').isGreaterThan(quantity('1G'))"),
            true.into()
        );
        assert_eq!(
            eval("quantity('500m').isLessThan(quantity('1'))"),
            true.into()
        );
        assert_eq!(eval("quantity('1k').compareTo(quantity('1000'))"), 0.into());
        assert_eq!(
            eval("quantity('1').add(quantity('2')).asInteger()"),
            3.into()
        );
        assert_eq!(eval("quantity('1').add(2).asInteger()"), 3.into());
        assert_eq!(
            eval("quantity('3').sub(quantity('1')).asInteger()"),
            2.into()
        );
        assert_eq!(eval("quantity('1.5').isInteger()"), false.into());
        assert_eq!(eval("quantity('-2').sign()"), (-1).into());
        assert_eq!(
            eval("isQuantity('1.5Gi') && !isQuantity('lots')"),
            true.into()
        );
        assert_eq!(eval("quantity('1') == quantity('1')"), true.into());
    }

    trait Lossy {
        fn to_string_lossy(&self) -> String;
    }

    impl Lossy for cel::Value {
        fn to_string_lossy(&self) -> String {
            match self {
                cel::Value::List(items) => format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|i| match i {
                            cel::Value::String(s) => s.to_string(),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => format!("{other:?}"),
            }
        }
    }
}
