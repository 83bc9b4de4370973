//! `GET pods/{name}/log`: the pod's container is chosen as upstream's `LogLocation` does, then
//! the node's kubelet is asked for `/containerLogs/{ns}/{pod}/{container}` and its answer is
//! streamed back as `text/plain`, as upstream's `LocationStreamer` does.

use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::kubelet_client::KubeletLocation;
use crate::router::ResourcePath;
use crate::server::{ResponseBody, State};
use crate::status::ApiError;

/// How much of a kubelet's error answer becomes the message, as upstream reads it.
const MAX_ERROR_BYTES: usize = 50_000;

/// The query of a `pods/log` request (upstream's `PodLogOptions`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<OffsetDateTime>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

/// A query flag as upstream decodes one: absent, `0`, `f` and `false` are false, anything
/// else (even empty) is true.
pub(crate) fn flag(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("f") || value.eq_ignore_ascii_case("false"))
}

impl LogOptions {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut options = Self::default();
        let number = |value: &str| -> Result<Option<i64>, ApiError> {
            if value.is_empty() {
                return Ok(None);
            }
            value.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "strconv.ParseInt: parsing {value:?}: invalid syntax"
                ))
            })
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "container" if !value.is_empty() => options.container = Some(value.into_owned()),
                "follow" => options.follow = flag(&value),
                "previous" => options.previous = flag(&value),
                "timestamps" => options.timestamps = flag(&value),
                "sinceSeconds" => options.since_seconds = number(&value)?,
                "tailLines" => options.tail_lines = number(&value)?,
                "limitBytes" => options.limit_bytes = number(&value)?,
                "sinceTime" if !value.is_empty() && value != "null" => {
                    let time = OffsetDateTime::parse(&value, &Rfc3339).map_err(|_| {
                        ApiError::bad_request(format!(
                            "parsing time {value:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse"
                        ))
                    })?;
                    options.since_time = Some(time);
                }
                _ => {}
            }
        }
        Ok(options)
    }

    /// Upstream's `ValidatePodLogOptions`.
    pub fn validate(&self, name: &str) -> Result<(), ApiError> {
        let mut causes = Vec::new();
        if let Some(tail) = self.tail_lines.filter(|&t| t < 0) {
            causes.push((
                "tailLines".to_owned(),
                format!("Invalid value: {tail}: must be greater than or equal to 0"),
            ));
        }
        if let Some(limit) = self.limit_bytes.filter(|&l| l < 1) {
            causes.push((
                "limitBytes".to_owned(),
                format!("Invalid value: {limit}: must be greater than 0"),
            ));
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => causes.push((
                String::new(),
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            )),
            (Some(seconds), None) if seconds < 1 => causes.push((
                "sinceSeconds".to_owned(),
                format!("Invalid value: {seconds}: must be greater than 0"),
            )),
            _ => {}
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid("PodLogOptions", "", name, causes))
        }
    }

    /// The kubelet's query for these options, as upstream's `LogLocation` encodes it (keys
    /// sorted, as Go's `url.Values.Encode` writes them).
    pub fn kubelet_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if self.follow {
            query.append_pair("follow", "true");
        }
        if let Some(limit) = self.limit_bytes {
            query.append_pair("limitBytes", &limit.to_string());
        }
        if self.previous {
            query.append_pair("previous", "true");
        }
        if let Some(seconds) = self.since_seconds {
            query.append_pair("sinceSeconds", &seconds.to_string());
        }
        if let Some(time) = self.since_time {
            let utc = time.to_offset(time::UtcOffset::UTC);
            let text = utc
                .format(format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
                ))
                .unwrap_or_default();
            query.append_pair("sinceTime", &text);
        }
        if let Some(tail) = self.tail_lines {
            query.append_pair("tailLines", &tail.to_string());
        }
        if self.timestamps {
            query.append_pair("timestamps", "true");
        }
        query.finish()
    }
}

fn container_names<'a>(spec: &'a Value, field: &str) -> impl Iterator<Item = &'a str> {
    spec[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
}

/// The container whose log is asked for: the one named, which must be one of the pod's (init,
/// regular or ephemeral) containers, or else the pod's only container.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &pod["spec"];
    // Upstream's VisitContainers order: init, regular, ephemeral.
    let all = || {
        container_names(spec, "initContainers")
            .chain(container_names(spec, "containers"))
            .chain(container_names(spec, "ephemeralContainers"))
    };
    match requested {
        Some(container) if all().any(|c| c == container) => Ok(container.to_owned()),
        Some(container) => Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => {
            let regular: Vec<&str> = container_names(spec, "containers").collect();
            match regular.as_slice() {
                [only] => Ok((*only).to_owned()),
                [] => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all().collect::<Vec<_>>().join(" ")
                ))),
            }
        }
    }
}

/// The error for a kubelet's answer outside 200–206, as upstream's
/// `GenericHttpResponseChecker` makes it from the answer's text.
pub fn kubelet_error(code: StatusCode, body: &str, pod: &str) -> ApiError {
    let generic = |reason: &'static str, message: &str| {
        let mut error = ApiError::new(code, reason, format!("{message} ( pods/log {pod})"));
        error.details = Some(serde_json::json!({ "name": pod, "kind": "pods/log" }));
        error
    };
    match code.as_u16() {
        400 => ApiError::bad_request(body),
        500 => ApiError::internal(format!("Internal error occurred: {body}")),
        401 => generic(
            "Unauthorized",
            "the server has asked for the client to provide credentials",
        ),
        403 => generic("Forbidden", body),
        404 => generic(
            "NotFound",
            "the server could not find the requested resource",
        ),
        429 => generic(
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        code if code >= 500 => generic(
            "InternalError",
            &format!("an error on the server ({body:?}) has prevented the request from succeeding"),
        ),
        code => generic(
            "",
            &format!(
                "the server responded with the status code {code} but did not return more information"
            ),
        ),
    }
}

/// Serves `GET pods/{name}/log`.
pub async fn get(
    state: &State,
    path: &ResourcePath,
    query: Option<&str>,
) -> Result<Response<ResponseBody>, ApiError> {
    let Some(name) = path.name.as_deref() else {
        return Err(ApiError::not_found_path());
    };
    let options = LogOptions::parse(query)?;
    options.validate(name)?;
    let pods = ResourcePath {
        subresource: None,
        ..path.clone()
    };
    let pod = state.registry.get(&pods, name).await?;
    let container = choose_container(&pod, options.container.as_deref())?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        // Not scheduled yet: no output, as upstream answers a log without a location.
        let mut response = Response::new(Empty::new().map_err(|e| match e {}).boxed());
        *response.status_mut() = StatusCode::NO_CONTENT;
        return Ok(response);
    }
    let location = KubeletLocation::find(&state.registry, node_name).await?;
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut path_and_query = format!(
        "/containerLogs/{}/{}/{}",
        escape(namespace),
        escape(name),
        escape(&container)
    );
    let kubelet_query = options.kubelet_query();
    if !kubelet_query.is_empty() {
        path_and_query = format!("{path_and_query}?{kubelet_query}");
    }
    let answer = state
        .kubelets
        .get(&location, &path_and_query)
        .await
        .map_err(|message| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "", message))?;
    let code = answer.status();
    let mut body = answer.into_body();
    if !(200..=206).contains(&code.as_u16()) {
        let mut text = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                text.extend_from_slice(&data);
            }
            if text.len() >= MAX_ERROR_BYTES {
                text.truncate(MAX_ERROR_BYTES);
                break;
            }
        }
        return Err(kubelet_error(code, &String::from_utf8_lossy(&text), name));
    }
    // Each chunk goes out as it comes, so `follow` streams.
    let mut response = Response::new(crate::proxy::streamed(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// A path segment, percent-encoded where a name could need it.
pub(crate) fn escape(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(init: &[&str], containers: &[&str]) -> Value {
        let list =
            |names: &[&str]| -> Vec<Value> { names.iter().map(|n| json!({ "name": n })).collect() };
        json!({
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "initContainers": list(init), "containers": list(containers) },
        })
    }

    #[test]
    fn the_only_container_is_chosen_when_none_is_named() {
        assert_eq!(
            choose_container(&pod(&["setup"], &["app"]), None).unwrap(),
            "app"
        );
    }

    #[test]
    fn several_containers_need_a_name_and_the_error_lists_them_all() {
        let err = choose_container(&pod(&["setup"], &["app", "sidecar"]), None).unwrap_err();
        assert_eq!(err.code, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "a container name must be specified for pod web, choose one of: [setup app sidecar]"
        );
    }

    #[test]
    fn a_named_container_must_be_one_of_the_pods() {
        let pod = pod(&["setup"], &["app", "sidecar"]);
        assert_eq!(choose_container(&pod, Some("setup")).unwrap(), "setup");
        assert_eq!(choose_container(&pod, Some("sidecar")).unwrap(), "sidecar");
        let err = choose_container(&pod, Some("db")).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "container db is not valid for pod web"
            )
        );
    }

    #[test]
    fn query_is_parsed_as_upstream_decodes_it() {
        let options = LogOptions::parse(Some(
            "container=app&follow=true&previous=1&timestamps=&tailLines=10&limitBytes=500&sinceTime=2026-01-02T03:04:05.5%2B01:00&insecureSkipTLSVerifyBackend=true",
        ))
        .unwrap();
        assert_eq!(options.container.as_deref(), Some("app"));
        assert!(options.follow && options.previous && options.timestamps);
        assert_eq!(
            (options.tail_lines, options.limit_bytes),
            (Some(10), Some(500))
        );
        assert_eq!(
            options.kubelet_query(),
            "follow=true&limitBytes=500&previous=true&sinceTime=2026-01-02T02%3A04%3A05Z&tailLines=10&timestamps=true"
        );
        let off = LogOptions::parse(Some("follow=false&previous=0&timestamps=F")).unwrap();
        assert!(!off.follow && !off.previous && !off.timestamps);
        assert_eq!(off.kubelet_query(), "");
    }

    #[test]
    fn bad_numbers_and_times_are_bad_requests() {
        for query in ["tailLines=x", "sinceSeconds=1.5", "sinceTime=yesterday"] {
            let err = LogOptions::parse(Some(query)).unwrap_err();
            assert_eq!(err.code, StatusCode::BAD_REQUEST, "{query}");
        }
    }

    #[test]
    fn validation_follows_upstream() {
        let invalid = |query: &str| {
            let err = LogOptions::parse(Some(query))
                .unwrap()
                .validate("web")
                .unwrap_err();
            assert_eq!(err.code, StatusCode::UNPROCESSABLE_ENTITY);
            err.message
        };
        assert_eq!(
            invalid("tailLines=-1"),
            "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(invalid("limitBytes=0").contains("limitBytes: Invalid value: 0"));
        assert!(invalid("sinceSeconds=0").contains("sinceSeconds: Invalid value: 0"));
        assert!(
            invalid("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z")
                .contains("at most one of `sinceTime` or `sinceSeconds` may be specified")
        );
        let fine = LogOptions::parse(Some("tailLines=0&sinceSeconds=1")).unwrap();
        fine.validate("web").unwrap();
    }

    #[test]
    fn kubelet_errors_become_statuses_as_upstream_words_them() {
        let bad = kubelet_error(
            StatusCode::BAD_REQUEST,
            "previous terminated container \"app\" in pod \"web\" not found",
            "web",
        );
        assert_eq!(bad.reason, "BadRequest");
        assert_eq!(
            bad.message,
            "previous terminated container \"app\" in pod \"web\" not found"
        );
        let missing = kubelet_error(StatusCode::NOT_FOUND, "pod \"web\" does not exist", "web");
        assert_eq!(
            (missing.reason, missing.message.as_str()),
            (
                "NotFound",
                "the server could not find the requested resource ( pods/log web)"
            )
        );
        let denied = kubelet_error(StatusCode::FORBIDDEN, "Forbidden (user=x)", "web");
        assert_eq!(denied.message, "Forbidden (user=x) ( pods/log web)");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(escape("web-1"), "web-1");
        assert_eq!(escape("a b/c"), "a%20b%2Fc");
    }
}
