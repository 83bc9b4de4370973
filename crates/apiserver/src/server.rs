//! Serving: the TLS accept loop, HTTP/1.1 and HTTP/2 per connection, and the request pipeline
//! (route → authenticate → authorize → the REST verb), answering every failure as a `Status`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::authz::{self, Authorizer};
use crate::binding;
use crate::bootstrap_token;
use crate::deletion::DeleteOptions;
use crate::discovery;
use crate::eviction;
use crate::inflight::InFlight;
use crate::kubelet_client::KubeletClient;
use crate::metrics;
use crate::objects::Query;
use crate::openapi;
use crate::partial;
use crate::pod_log;
use crate::pod_stream;
use crate::proxy;
use crate::registry::{Body, Registry};
use crate::router::{ResourcePath, Route, route};
use crate::scale;
use crate::serviceaccount_token::{self, TokenIssuer};
use crate::status::ApiError;
use crate::table;
use crate::tls::Identity;
use crate::watch;

/// Upstream's limit on request bodies.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// How much of an oversized body is read and dropped before the connection is cut.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024 * 1024;

pub type ResponseBody = BoxBody<Bytes, Infallible>;
/// A request's body, from a connection or from a client in this process.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `body` as a [`RequestBody`].
pub fn request_body<B>(body: B) -> RequestBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pub struct State {
    pub registry: Registry,
    pub in_flight: InFlight,
    pub authorizer: Arc<Authorizer>,
    pub tokens: TokenIssuer,
    /// host:port clients reach this server at, for `/api`'s serverAddressByClientCIDRs.
    pub address: String,
    pub kubelets: KubeletClient,
}

/// Accepts TLS connections until the listener fails.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<State>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    r8s_cluster::tls::serve_https(
        listener,
        acceptor,
        "API server",
        move |identity, request| {
            let state = state.clone();
            async move { handle(&state, identity.as_ref(), request.map(request_body)).await }
        },
    )
    .await
}

fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: StatusCode, value: &Value, content_type: &str) -> Response<ResponseBody> {
    // `to_vec` writes straight into a buffer; `to_string` (Display) goes through a formatter.
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    response
}

fn raw_json(body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(full(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(error: &ApiError) -> Response<ResponseBody> {
    let mut response = json_response(error.code, &error.to_status(), "application/json");
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub async fn handle(
    state: &State,
    identity: Option<&Identity>,
    request: Request<RequestBody>,
) -> Response<ResponseBody> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // A client certificate wins; otherwise a bearer token must be valid (a bad one is 401,
    // not anonymous), as upstream's union of authenticators.
    let from_token;
    let identity = match (
        identity,
        serviceaccount_token::bearer_token(request.headers()),
    ) {
        (Some(identity), _) => Some(identity),
        (None, Some(token)) => {
            let authenticated = match bootstrap_token::parse(token) {
                Some((id, secret)) => {
                    bootstrap_token::authenticate(&state.registry, id, secret).await
                }
                None => state.tokens.authenticate(&state.registry, token).await,
            };
            match authenticated {
                Ok(found) => {
                    from_token = found;
                    Some(&from_token)
                }
                Err(e) => return error_response(&e),
            }
        }
        (None, None) => None,
    };
    // Anonymous requests are counted too; they are refused (or answered for health) anyway.
    let slot = state.in_flight.admit(
        &method,
        &path,
        request.uri().query(),
        identity.is_some_and(Identity::is_master),
    );
    let result = match slot {
        Ok(_slot) => dispatch(state, identity, request).await,
        Err(e) => Err(e),
    };
    let response = result.unwrap_or_else(|e| error_response(&e));
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

async fn dispatch(
    state: &State,
    identity: Option<&Identity>,
    request: Request<RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    let route = route(request.uri().path());
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Health and version are public, as upstream's system:public-info-viewer role makes them.
    match &route {
        Route::Health => {
            return Ok(json_response(
                StatusCode::OK,
                &Value::String("ok".into()),
                "text/plain",
            ))
            .map(|mut r| {
                *r.body_mut() = full("ok");
                r
            });
        }
        Route::Version => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::version(),
                "application/json",
            ));
        }
        _ => {}
    }
    let Some(identity) = identity else {
        return Err(ApiError::unauthorized());
    };
    // Impersonation, then authorization of what the request asks, as upstream's filters run.
    let user =
        authz::impersonation::resolve(&state.authorizer, identity.into(), request.headers())?;
    let attributes = authz::request_info::attributes(
        request.method(),
        request.uri().path(),
        request.uri().query(),
        &route,
    );
    state.authorizer.check(&user, &attributes)?;
    if request.method() == Method::GET {
        let discovery = match &route {
            Route::CoreVersions if discovery::wants_aggregated(&accept) => {
                Some((discovery::aggregated_core(), discovery::AGGREGATED_V2))
            }
            Route::Groups if discovery::wants_aggregated(&accept) => {
                Some((discovery::aggregated_groups(), discovery::AGGREGATED_V2))
            }
            Route::CoreVersions => {
                Some((discovery::core_versions(&state.address), "application/json"))
            }
            Route::Groups => Some((discovery::groups(), "application/json")),
            Route::Group(name) => Some((
                discovery::group(name).ok_or_else(ApiError::not_found_path)?,
                "application/json",
            )),
            Route::GroupVersion { group, version } => {
                Some((discovery::resource_list(group, version), "application/json"))
            }
            Route::OpenApiV2 => {
                // Only JSON is built; a client that takes protobuf alone is told so.
                let json_ok = accept.is_empty()
                    || accept.contains("application/json")
                    || accept.contains("*/*");
                if !json_ok {
                    return Err(ApiError::new(
                        StatusCode::NOT_ACCEPTABLE,
                        "NotAcceptable",
                        "only application/json is supported for /openapi/v2",
                    ));
                }
                return Ok(raw_json(openapi::v2().clone()));
            }
            Route::OpenApiV3(None) => {
                return Ok(raw_json(crate::crd::openapi::v3_index(openapi::v3_index())));
            }
            Route::OpenApiV3(Some(path)) => {
                let doc = openapi::v3(path)
                    .cloned()
                    .or_else(|| crate::crd::openapi::v3(path))
                    .ok_or_else(ApiError::not_found_path)?;
                return Ok(raw_json(doc));
            }
            _ => None,
        };
        if let Some((doc, content_type)) = discovery {
            return Ok(json_response(StatusCode::OK, &doc, content_type));
        }
    }
    if let Some(target) = proxy::Target::parse(request.uri().path()) {
        return proxy::serve(state, &target, request).await;
    }
    let Route::Resource(path) = route else {
        return Err(ApiError::not_found_path());
    };
    not_enforced(&path, request.method())?;
    if let Some(review) = authz::reviews::Review::of(&path) {
        if request.method() != Method::POST {
            return Err(ApiError::method_not_allowed(format!(
                "{} accepts only create (POST)",
                path.resource.plural
            )));
        }
        let content_type = header_text(&request, header::CONTENT_TYPE)
            .unwrap_or_else(|| "application/json".to_owned());
        let body = read_object(request, &content_type).await?;
        let answer = authz::reviews::answer(review, &state.authorizer, &user, &path, body)?;
        return Ok(json_response(
            StatusCode::CREATED,
            &answer,
            "application/json",
        ));
    }
    if let Some(stream) = path
        .subresource
        .as_deref()
        .and_then(pod_stream::Subresource::of)
        && path.resource.group.is_empty()
        && path.resource.plural == "pods"
    {
        return pod_stream::serve(state, &path, request, &user, stream).await;
    }
    if path.resource.group == metrics::GROUP {
        if request.method() != Method::GET {
            return Err(ApiError::method_not_allowed(format!(
                "{}.{} accepts only get and list (GET)",
                path.resource.plural,
                metrics::GROUP
            )));
        }
        let query = Query::parse(request.uri().query())?;
        let answer =
            metrics::serve(&state.registry, &state.kubelets, &path, &query, query.watch).await?;
        let as_table = table::wanted(&accept);
        return Ok(if as_table {
            let include = table::Include::parse(request.uri().query());
            let rendered =
                table::render(&answer, include, r8s_api::kinds::behaviour(path.resource));
            json_response(
                StatusCode::OK,
                &rendered,
                "application/json;as=Table;g=meta.k8s.io;v=v1",
            )
        } else {
            json_response(StatusCode::OK, &answer, "application/json")
        });
    }
    resource_request(state, &path, request, user).await
}

async fn resource_request(
    state: &State,
    path: &ResourcePath,
    request: Request<RequestBody>,
    user: authz::User,
) -> Result<Response<ResponseBody>, ApiError> {
    let registry = &state.registry;
    let raw_query = request.uri().query().map(str::to_owned);
    let mut query = Query::parse(raw_query.as_deref())?;
    query.user_agent = header_text(&request, header::USER_AGENT);
    query.user = Some(user);
    let send_initial_events = raw_query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "sendInitialEvents")
            .map(|(_, v)| v == "true")
    });
    let method = request.method().clone();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let subresource = path.subresource.as_deref();
    if let Some(sub) = subresource {
        if path.resource.has_subresource(sub).is_none() {
            return Err(ApiError::not_found_path());
        }
        if sub == "scale" {
            return scale_request(registry, path, request, &query, &content_type).await;
        }
        if sub == "log" {
            if request.method() != Method::GET {
                return Err(ApiError::method_not_allowed(
                    "pods/log accepts only get (GET)",
                ));
            }
            return pod_log::get(state, path, raw_query.as_deref()).await;
        }
        if sub == "binding" && request.method() != Method::POST {
            return Err(ApiError::method_not_allowed(
                "pods/binding accepts only create (POST)",
            ));
        }
        if sub == "binding" {
            let name = path.name.clone().unwrap_or_default();
            let body = read_object(request, &content_type).await?;
            let pods = ResourcePath {
                subresource: None,
                ..path.clone()
            };
            let status = binding::bind(registry, &pods, &name, &body, &query).await?;
            return Ok(json_response(
                StatusCode::CREATED,
                &status,
                "application/json",
            ));
        }
        if sub == "token" && path.resource.plural == "serviceaccounts" {
            if request.method() != Method::POST {
                return Err(ApiError::method_not_allowed(
                    "serviceaccounts/token accepts only create (POST)",
                ));
            }
            let name = path.name.clone().unwrap_or_default();
            let body = read_object(request, &content_type).await?;
            let accounts = ResourcePath {
                subresource: None,
                ..path.clone()
            };
            let token = serviceaccount_token::request(
                &state.tokens,
                registry,
                &accounts,
                &name,
                &body,
                &query,
            )
            .await?;
            return Ok(json_response(
                StatusCode::CREATED,
                &token,
                "application/json",
            ));
        }
        if sub == "eviction" {
            if request.method() != Method::POST {
                return Err(ApiError::method_not_allowed(
                    "pods/eviction accepts only create (POST)",
                ));
            }
            let name = path.name.clone().unwrap_or_default();
            let body = read_object(request, &content_type).await?;
            let pods = ResourcePath {
                subresource: None,
                ..path.clone()
            };
            let status = eviction::evict(registry, &pods, &name, &body, &query).await?;
            return Ok(json_response(
                StatusCode::CREATED,
                &status,
                "application/json",
            ));
        }
        if r8s_api::kinds::behaviour(path.resource)
            .subresource_fields(sub)
            .is_none()
        {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                format!(
                    "the {sub} subresource of {} is not built yet in r8s",
                    path.resource.plural
                ),
            ));
        }
    }
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let as_table = table::wanted(&accept);
    let partial = partial::wanted(&accept).filter(|_| !as_table);
    let include = table::Include::parse(raw_query.as_deref());
    // Reads answer a Table or the metadata alone when the client asks for one; writes answer
    // the object.
    let ok = |code, value: Value| Ok(json_response(code, &value, "application/json"));
    let read = |value: Value| {
        if let Some(version) = partial {
            Ok(json_response(
                StatusCode::OK,
                &partial::of(&value, version),
                &partial::content_type(version, false),
            ))
        } else if as_table {
            let rendered = crate::crd::table(path.resource, &value, include).unwrap_or_else(|| {
                table::render(&value, include, r8s_api::kinds::behaviour(path.resource))
            });
            Ok(json_response(
                StatusCode::OK,
                &rendered,
                "application/json;as=Table;g=meta.k8s.io;v=v1",
            ))
        } else {
            Ok(json_response(StatusCode::OK, &value, "application/json"))
        }
    };
    let verb_allowed = |verb: &str| path.resource.verbs.contains(&verb);
    let refuse = |verb: &str| {
        ApiError::method_not_allowed(format!(
            "{verb} is not supported on resources of kind {:?}",
            path.resource.kind
        ))
    };
    if path.resource.group.is_empty()
        && path.resource.plural == "bindings"
        && method == Method::POST
    {
        // The older form of pods/binding: the Binding names the pod.
        let body = read_object(request, &content_type).await?;
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let pods = ResourcePath {
            resource: r8s_api::find("", "v1", "pods").expect("catalogue has pods"),
            namespace: path.namespace.clone(),
            name: None,
            subresource: None,
        };
        let status = binding::bind(registry, &pods, &name, &body, &query).await?;
        return Ok(json_response(
            StatusCode::CREATED,
            &status,
            "application/json",
        ));
    }
    match (&method, path.name.as_deref()) {
        (&Method::GET, Some(name)) => {
            if !verb_allowed("get") {
                return Err(refuse("get"));
            }
            read(registry.get(path, name).await?)
        }
        (&Method::GET, None) if query.watch => {
            if !verb_allowed("watch") {
                return Err(refuse("watch"));
            }
            let lines = watch::start(registry, path, &query, send_initial_events, partial).await?;
            let stream = futures::stream::unfold(lines, |mut lines| async move {
                lines
                    .recv()
                    .await
                    .map(|line| (Ok::<_, Infallible>(Frame::data(line)), lines))
            });
            let mut response = Response::new(StreamBody::new(stream).boxed());
            let content_type = match partial {
                Some(version) => HeaderValue::from_str(&partial::content_type(version, false))
                    .expect("a content type is a header value"),
                None => HeaderValue::from_static("application/json"),
            };
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
            Ok(response)
        }
        (&Method::GET, None) => {
            if !verb_allowed("list") {
                return Err(refuse("list"));
            }
            match registry.list(path, &query).await? {
                listing if as_table => read(listing.into_value()),
                listing if partial.is_some() => {
                    let version = partial.unwrap_or("v1");
                    Ok(json_response(
                        StatusCode::OK,
                        &partial::list(&listing.into_value(), version),
                        &partial::content_type(version, true),
                    ))
                }
                listing => Ok(raw_json(listing.into_bytes())),
            }
        }
        (&Method::POST, None) => {
            if !verb_allowed("create") {
                return Err(refuse("create"));
            }
            let object = read_object(request, &content_type).await?;
            let (created, warnings) = registry.create(path, Body { object }, &query).await?;
            with_warnings(ok(StatusCode::CREATED, created), &warnings)
        }
        (&Method::PUT, Some(name)) => {
            if !verb_allowed("update") {
                return Err(refuse("update"));
            }
            let object = read_object(request, &content_type).await?;
            let (updated, warnings) = registry.update(path, name, Body { object }, &query).await?;
            with_warnings(ok(StatusCode::OK, updated), &warnings)
        }
        (&Method::PATCH, Some(name)) => {
            if !verb_allowed("patch") {
                return Err(refuse("patch"));
            }
            let patch = read_body(request).await?;
            let (code, patched, warnings) = registry
                .patch(path, name, &content_type, patch, &query)
                .await?;
            with_warnings(ok(code, patched), &warnings)
        }
        (&Method::DELETE, Some(name)) => {
            if !verb_allowed("delete") {
                return Err(refuse("delete"));
            }
            let options = delete_options(request, &content_type, &query).await?;
            let (code, object) = registry.delete_with(path, name, &options).await?;
            ok(code, object)
        }
        (&Method::DELETE, None) => {
            if !verb_allowed("deletecollection") {
                return Err(refuse("deletecollection"));
            }
            let options = delete_options(request, &content_type, &query).await?;
            ok(
                StatusCode::OK,
                registry.delete_collection(path, &query, &options).await?,
            )
        }
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "{method} is not allowed on this path"
        ))),
    }
}

async fn scale_request(
    registry: &Registry,
    path: &ResourcePath,
    request: Request<RequestBody>,
    query: &Query,
    content_type: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let Some(name) = path.name.as_deref() else {
        return Err(ApiError::not_found_path());
    };
    let scale = match request.method().clone() {
        Method::GET => scale::get(registry, path, name).await?,
        Method::PUT => {
            let body = read_object(request, content_type).await?;
            scale::update(registry, path, name, body, query).await?
        }
        Method::PATCH => {
            let patch = read_body(request).await?;
            scale::patch(registry, path, name, content_type, patch, query).await?
        }
        other => {
            return Err(ApiError::method_not_allowed(format!(
                "{other} is not allowed on the scale subresource"
            )));
        }
    };
    Ok(json_response(StatusCode::OK, &scale, "application/json"))
}

fn header_text(request: &Request<RequestBody>, name: header::HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Adds one `Warning: 299 - "…"` header per warning, as upstream reports them.
fn with_warnings(
    response: Result<Response<ResponseBody>, ApiError>,
    warnings: &[String],
) -> Result<Response<ResponseBody>, ApiError> {
    let mut response = response?;
    for warning in warnings {
        let text = format!("299 - {}", serde_json::Value::String(warning.clone()));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

async fn read_body(request: Request<RequestBody>) -> Result<Bytes, ApiError> {
    let mut body = request.into_body();
    let mut collected = bytes::BytesMut::new();
    let mut seen = 0usize;
    // Past the limit the rest is read and dropped (up to a bound), so the client receives the
    // 413 instead of a reset stream.
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= MAX_BODY_BYTES {
            collected.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {MAX_BODY_BYTES}"),
        ));
    }
    Ok(collected.freeze())
}

/// A DELETE's options: its body when it has one, else its query.
async fn delete_options(
    request: Request<RequestBody>,
    content_type: &str,
    query: &Query,
) -> Result<DeleteOptions, ApiError> {
    let body = read_body(request).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return DeleteOptions::from_request(None, query);
    }
    let options = decode_object(&body, content_type)?;
    DeleteOptions::from_request(Some(&options), query)
}

/// A JSON or YAML object from the request body.
async fn read_object(request: Request<RequestBody>, content_type: &str) -> Result<Value, ApiError> {
    let body = read_body(request).await?;
    decode_object(&body, content_type)
}

fn decode_object(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let decoded: Result<Value, String> = match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| e.to_string()),
        "application/yaml" => serde_yaml_ng::from_slice(body).map_err(|e| e.to_string()),
        r8s_api::protobuf::MEDIA_TYPE => r8s_api::protobuf::decode(body).map_err(|e| e.to_string()),
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    decoded.map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

/// Writes of kinds r8s serves but does not act on yet are refused, so nobody relies on a
/// policy that would silently do nothing; reading and deleting stay possible.
fn not_enforced(path: &ResourcePath, method: &Method) -> Result<(), ApiError> {
    let resource = path.resource;
    let mutating_policy = resource.group == "admissionregistration.k8s.io"
        && matches!(
            resource.plural,
            "mutatingadmissionpolicies" | "mutatingadmissionpolicybindings"
        );
    let writes = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if mutating_policy && writes {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!(
                "{}.{} are not built in r8s yet: their mutations would not be applied",
                resource.plural, resource.group
            ),
        ));
    }
    Ok(())
}
