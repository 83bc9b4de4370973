//! Kubernetes' CEL format, semver and URL libraries:
//! - `format.dns1123Label()` (and `dns1123Subdomain`, `dns1035Label`, `qualifiedName`,
//!   `labelValue`, `uuid`, `byte`, `date`, `datetime`, the `…Prefix` forms for generateName,
//!   and `format.named(name)`), each with `validate(string)`: `optional.none()` when valid,
//!   else the list of what is wrong, in apimachinery's words;
//! - `isSemver`, `semver()` with `major()`, `minor()`, `patch()`, `isLessThan`,
//!   `isGreaterThan`, `compareTo`;
//! - `isURL`, `url()` with `getScheme()`, `getHost()`, `getHostname()`, `getPort()`,
//!   `getEscapedPath()`, `getQuery()`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use cel::common::functions::Function;
use cel::common::types::{BOOL_TYPE, STRING_TYPE};
use cel::objects::{Key, Map, Opaque, OptionalValue};
use cel::{Env, Value};

use crate::library::{member_dyn, natives, opaque, text};

const FORMATS: &[&str] = &[
    "dns1123Label",
    "dns1123Subdomain",
    "dns1035Label",
    "qualifiedName",
    "dns1123LabelPrefix",
    "dns1123SubdomainPrefix",
    "dns1035LabelPrefix",
    "labelValue",
    "uuid",
    "byte",
    "date",
    "datetime",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Format(&'static str);

impl Opaque for Format {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.NamedFormat"
    }
}

fn string(text: impl Into<String>) -> Value {
    Value::String(Arc::new(text.into()))
}

fn regex(pattern: &str) -> regex::Regex {
    regex::Regex::new(&format!("^(?:{pattern})$")).expect("a valid pattern")
}

const DNS1123_LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

fn dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    if !regex(DNS1123_LABEL).is_match(value) {
        errors.push(format!("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL}')"));
    }
    errors
}

fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push("must be no more than 253 characters".to_owned());
    }
    let pattern = format!("{DNS1123_LABEL}(\\.{DNS1123_LABEL})*");
    if !regex(&pattern).is_match(value) {
        errors.push(format!("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{pattern}')"));
    }
    errors
}

fn dns1035_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    if !regex(DNS1035_LABEL).is_match(value) {
        errors.push(format!("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL}')"));
    }
    errors
}

fn qualified_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let (prefix, name) = match value.split('/').collect::<Vec<_>>()[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => {
            return vec![format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME}') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push("prefix part must be non-empty".to_owned());
        } else {
            errors.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_owned());
    }
    if !name.is_empty() && !regex(QUALIFIED_NAME).is_match(name) {
        errors.push(format!("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME}')"));
    }
    errors
}

fn label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    if !value.is_empty() && !regex(QUALIFIED_NAME).is_match(value) {
        errors.push(format!("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(({QUALIFIED_NAME})?'"));
    }
    errors
}

/// A generateName prefix is valid when it would be with a suffix after a trailing dash.
fn prefix(value: &str, check: fn(&str) -> Vec<String>) -> Vec<String> {
    match value.strip_suffix('-') {
        Some(stem) if !stem.is_empty() => check(stem),
        _ => check(value),
    }
}

fn validate_with(format: &str, value: &str) -> Vec<String> {
    match format {
        "dns1123Label" => dns1123_label(value),
        "dns1123Subdomain" => dns1123_subdomain(value),
        "dns1035Label" => dns1035_label(value),
        "qualifiedName" => qualified_name(value),
        "dns1123LabelPrefix" => prefix(value, dns1123_label),
        "dns1123SubdomainPrefix" => prefix(value, dns1123_subdomain),
        "dns1035LabelPrefix" => prefix(value, dns1035_label),
        "labelValue" => label_value(value),
        "uuid" => {
            let uuid =
                "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
            match regex(uuid).is_match(value) {
                true => Vec::new(),
                false => vec!["does not match the UUID format".to_owned()],
            }
        }
        "byte" => {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(value) {
                Ok(_) => Vec::new(),
                Err(_) => vec!["invalid base64".to_owned()],
            }
        }
        "date" => match chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(_) => Vec::new(),
            Err(_) => vec!["invalid date".to_owned()],
        },
        "datetime" => match chrono::DateTime::parse_from_rfc3339(value) {
            Ok(_) => Vec::new(),
            Err(_) => vec!["invalid datetime".to_owned()],
        },
        _ => vec![format!("unknown format {format:?}")],
    }
}

fn optional(value: Option<Value>) -> Value {
    Value::Opaque(Arc::new(match value {
        Some(v) => OptionalValue::of(v),
        None => OptionalValue::none(),
    }))
}

fn named(args: Vec<Value>) -> Result<Value, String> {
    let name = text(&args[0])?;
    Ok(optional(
        FORMATS
            .iter()
            .find(|f| **f == name)
            .map(|f| Value::Opaque(Arc::new(Format(f)))),
    ))
}

fn validate(args: Vec<Value>) -> Result<Value, String> {
    let format = opaque::<Format>(&args[0], "a format")?;
    let errors = validate_with(format.0, text(&args[1])?);
    Ok(optional((!errors.is_empty()).then(|| {
        Value::List(Arc::new(errors.into_iter().map(string).collect()))
    })))
}

/// A semantic version: major, minor, patch, pre-release identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

impl Opaque for Semver {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Semver"
    }
}

impl Semver {
    /// Strict SemVer 2.0, or with `normalize` a leading `v`, missing minor/patch and leading
    /// zeros accepted, as upstream's normalizing parse.
    fn parse(text: &str, normalize: bool) -> Option<Self> {
        let text = match normalize {
            true => text.strip_prefix('v').unwrap_or(text),
            false => text,
        };
        let text = text.split_once('+').map_or(text, |(v, _)| v);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, pre.split('.').map(str::to_owned).collect()),
            None => (text, Vec::new()),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let number = |part: &str| -> Option<u64> {
            let valid = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (normalize || part == "0" || !part.starts_with('0'));
            valid.then(|| part.parse().ok()).flatten()
        };
        let (major, minor, patch) = match (parts.as_slice(), normalize) {
            ([a, b, c], _) => (number(a)?, number(b)?, number(c)?),
            ([a, b], true) => (number(a)?, number(b)?, 0),
            ([a], true) => (number(a)?, 0, 0),
            _ => return None,
        };
        if pre.iter().any(|p: &String| p.is_empty()) {
            return None;
        }
        Some(Self {
            major,
            minor,
            patch,
            pre,
        })
    }
}

impl Ord for Semver {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let order = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn normalize_flag(args: &[Value]) -> bool {
    matches!(args.get(1), Some(Value::Bool(true)))
}

fn is_semver(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(
        Semver::parse(text(&args[0])?, normalize_flag(&args)).is_some(),
    ))
}

fn semver(args: Vec<Value>) -> Result<Value, String> {
    let given = text(&args[0])?;
    Semver::parse(given, normalize_flag(&args))
        .map(|v| Value::Opaque(Arc::new(v)))
        .ok_or_else(|| format!("could not parse {given:?} as semver"))
}

fn version(value: &Value) -> Result<Semver, String> {
    opaque::<Semver>(value, "a semver")
}

fn part(args: Vec<Value>, pick: fn(&Semver) -> u64) -> Result<Value, String> {
    let v = version(&args[0])?;
    i64::try_from(pick(&v))
        .map(Value::Int)
        .map_err(|_| "version part too large".to_owned())
}

fn major(args: Vec<Value>) -> Result<Value, String> {
    part(args, |v| v.major)
}

fn minor(args: Vec<Value>) -> Result<Value, String> {
    part(args, |v| v.minor)
}

fn patch(args: Vec<Value>) -> Result<Value, String> {
    part(args, |v| v.patch)
}

fn order(args: &[Value]) -> Result<Ordering, String> {
    Ok(version(&args[0])?.cmp(&version(&args[1])?))
}

/// A URL as Go's `url.ParseRequestURI` reads one: absolute (`scheme://host/path?query`), or
/// an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

impl Url {
    fn parse(text: &str) -> Option<Self> {
        let text = text.split_once('#').map_or(text, |(u, _)| u);
        let (rest, query) = text.split_once('?').unwrap_or((text, ""));
        if rest.starts_with('/') {
            return Some(Self {
                scheme: String::new(),
                host: String::new(),
                path: rest.to_owned(),
                query: query.to_owned(),
            });
        }
        let (scheme, after) = rest.split_once("://")?;
        let scheme_ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok || text.chars().any(char::is_whitespace) {
            return None;
        }
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        Some(Self {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
        })
    }

    /// The host without its port (and without an IPv6 address's brackets).
    fn hostname(&self) -> &str {
        if let Some(rest) = self.host.strip_prefix('[') {
            return rest.split_once(']').map_or(rest, |(h, _)| h);
        }
        self.host.rsplit_once(':').map_or(&self.host, |(h, _)| h)
    }

    fn port(&self) -> &str {
        let after_host = match self.host.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or("", |(_, p)| p),
            None => self.host.rsplit_once(':').map_or("", |(_, p)| p),
        };
        after_host.trim_start_matches(':')
    }
}

fn is_url(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(Url::parse(text(&args[0])?).is_some()))
}

fn url(args: Vec<Value>) -> Result<Value, String> {
    let given = text(&args[0])?;
    Url::parse(given)
        .map(|u| Value::Opaque(Arc::new(u)))
        .ok_or_else(|| format!("URL parse error during conversion from string: {given:?}"))
}

fn url_of(value: &Value) -> Result<Url, String> {
    opaque::<Url>(value, "a URL")
}

fn get_scheme(args: Vec<Value>) -> Result<Value, String> {
    Ok(string(url_of(&args[0])?.scheme))
}

fn get_host(args: Vec<Value>) -> Result<Value, String> {
    Ok(string(url_of(&args[0])?.host))
}

fn get_hostname(args: Vec<Value>) -> Result<Value, String> {
    Ok(string(url_of(&args[0])?.hostname()))
}

fn get_port(args: Vec<Value>) -> Result<Value, String> {
    Ok(string(url_of(&args[0])?.port()))
}

fn get_escaped_path(args: Vec<Value>) -> Result<Value, String> {
    Ok(string(url_of(&args[0])?.path))
}

fn get_query(args: Vec<Value>) -> Result<Value, String> {
    let url = url_of(&args[0])?;
    let mut query: HashMap<String, Vec<Value>> = HashMap::new();
    for pair in url.query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        query.entry(key.to_owned()).or_default().push(string(value));
    }
    let entries = query
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), Value::List(Arc::new(v))))
        .collect();
    Ok(Value::Map(Map {
        map: Arc::new(entries),
    }))
}

natives! {
    named_op = "format.named" => named;
    validate_op = "validate" => validate;
    is_semver_op = "isSemver" => is_semver;
    semver_op = "semver" => semver;
    major_op = "major" => major;
    minor_op = "minor" => minor;
    patch_op = "patch" => patch;
    is_url_op = "isURL" => is_url;
    url_op = "url" => url;
    get_scheme_op = "getScheme" => get_scheme;
    get_host_op = "getHost" => get_host;
    get_hostname_op = "getHostname" => get_hostname;
    get_port_op = "getPort" => get_port;
    get_escaped_path_op = "getEscapedPath" => get_escaped_path;
    get_query_op = "getQuery" => get_query;
}

macro_rules! format_constructors {
    ($($name:literal => $op:ident),* $(,)?) => {
        $(
            fn $op<'b, 'v>(
                _args: Vec<cel::common::value::CowVal<'b, 'v>>,
            ) -> Result<cel::common::value::CowVal<'b, 'v>, cel::ExecutionError> {
                let value = Value::Opaque(Arc::new(Format($name)));
                Ok(cel::common::value::CowVal::Owned(Box::<dyn cel::common::value::Val>::try_from(value)?))
            }
        )*
        const CONSTRUCTORS: &[(&str, Function)] = &[$(($name, $op)),*];
    };
}

format_constructors! {
    "dns1123Label" => dns1123_label_op,
    "dns1123Subdomain" => dns1123_subdomain_op,
    "dns1035Label" => dns1035_label_op,
    "qualifiedName" => qualified_name_op,
    "dns1123LabelPrefix" => dns1123_label_prefix_op,
    "dns1123SubdomainPrefix" => dns1123_subdomain_prefix_op,
    "dns1035LabelPrefix" => dns1035_label_prefix_op,
    "labelValue" => label_value_op,
    "uuid" => uuid_op,
    "byte" => byte_op,
    "date" => date_op,
    "datetime" => datetime_op,
}

pub fn register(env: &mut Env) {
    let global = |env: &mut Env, name: &str, args: Vec<cel::common::types::Type>, op: Function| {
        let id = format!("k8s.{name}.{}", args.len());
        env.add_overload(name, &id, args, op)
            .unwrap_or_else(|e| panic!("registering {name}: {e:?}"));
    };
    for (name, op) in CONSTRUCTORS {
        global(env, &format!("format.{name}"), vec![], *op);
    }
    global(env, "format.named", vec![STRING_TYPE], named_op);
    global(env, "isSemver", vec![STRING_TYPE], is_semver_op);
    global(env, "isSemver", vec![STRING_TYPE, BOOL_TYPE], is_semver_op);
    global(env, "semver", vec![STRING_TYPE], semver_op);
    global(env, "semver", vec![STRING_TYPE, BOOL_TYPE], semver_op);
    global(env, "isURL", vec![STRING_TYPE], is_url_op);
    global(env, "url", vec![STRING_TYPE], url_op);
    let members: [(&str, usize, Function); 9] = [
        ("validate", 1, validate_op),
        ("major", 0, major_op),
        ("minor", 0, minor_op),
        ("patch", 0, patch_op),
        ("getScheme", 0, get_scheme_op),
        ("getHost", 0, get_host_op),
        ("getHostname", 0, get_hostname_op),
        ("getPort", 0, get_port_op),
        ("getEscapedPath", 0, get_escaped_path_op),
    ];
    for (name, args, op) in members {
        member_dyn(env, name, args, op);
    }
    member_dyn(env, "getQuery", 0, get_query_op);
}

/// Semver's `isLessThan`/`isGreaterThan`/`compareTo`: they share their names (and one
/// overload) with quantities', which defer to this for versions.
pub(crate) fn semver_ordering(args: &[Value]) -> Option<Result<Ordering, String>> {
    match &args[0] {
        Value::Opaque(o) if o.downcast_ref::<Semver>().is_some() => Some(order(args)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::library::eval;

    #[test]
    fn formats_validate_as_apimachinery_does() {
        assert_eq!(
            eval("format.dns1123Label().validate('my-name').hasValue()"),
            false.into()
        );
        assert_eq!(
            eval("format.dns1123Label().validate('My_Name').hasValue()"),
            true.into()
        );
        assert_eq!(
            eval(
                "format.dns1123Label().validate('My_Name').value()[0].startsWith('a lowercase RFC 1123 label')"
            ),
            true.into()
        );
        assert_eq!(
            eval("format.dns1123Subdomain().validate('a.b-c.d').hasValue()"),
            false.into()
        );
        assert_eq!(
            eval("format.dns1035Label().validate('1abc').hasValue()"),
            true.into()
        );
        assert_eq!(
            eval("format.qualifiedName().validate('example.com/My.Name').hasValue()"),
            false.into()
        );
        assert_eq!(
            eval("format.labelValue().validate('').hasValue()"),
            false.into()
        );
        assert_eq!(
            eval("format.dns1123LabelPrefix().validate('web-').hasValue()"),
            false.into()
        );
        assert_eq!(
            eval(
                "format.named('uuid').value().validate('6f1ae9b2-0d1c-4a7e-9a53-3f6a2d1c0b9e').hasValue()"
            ),
            false.into()
        );
        assert_eq!(eval("format.named('nope').hasValue()"), false.into());
    }

    #[test]
    fn semvers_parse_and_order() {
        assert_eq!(
            eval("isSemver('1.2.3') && !isSemver('v1.2') && isSemver('v1.2', true)"),
            true.into()
        );
        assert_eq!(eval("semver('1.2.3-alpha.1').major()"), 1.into());
        assert_eq!(
            eval("semver('1.10.0').isGreaterThan(semver('1.9.9'))"),
            true.into()
        );
        assert_eq!(
            eval("semver('1.0.0-alpha').isLessThan(semver('1.0.0'))"),
            true.into()
        );
        assert_eq!(
            eval("semver('1.0.0-alpha.2').compareTo(semver('1.0.0-alpha.10'))"),
            (-1).into()
        );
        assert_eq!(
            eval("semver('2.0.0+build').compareTo(semver('2.0.0'))"),
            0.into()
        );
    }

    #[test]
    fn urls_split_into_their_parts() {
        assert_eq!(
            eval(
                "isURL('https://example.com:8443/a/b?x=1') && isURL('/healthz') && !isURL('example.com')"
            ),
            true.into()
        );
        assert_eq!(
            eval("url('https://user@example.com:8443/a/b?x=1&x=2').getHostname()"),
            "example.com".into()
        );
        assert_eq!(
            eval("url('https://example.com:8443/a').getPort()"),
            "8443".into()
        );
        assert_eq!(eval("url('https://[::1]:80/').getHostname()"), "::1".into());
        assert_eq!(
            eval("url('https://example.com/a/b').getEscapedPath()"),
            "/a/b".into()
        );
        assert_eq!(
            eval("url('https://example.com/?x=1&x=2').getQuery()['x'].size()"),
            2.into()
        );
        assert_eq!(
            eval("url('https://example.com').getScheme()"),
            "https".into()
        );
    }
}
