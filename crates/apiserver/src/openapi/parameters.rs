//! The parameters kube-apiserver documents on its operations: the query options of each verb
//! and the fields of the connect and log options kinds (which upstream turns into query
//! parameters and does not publish as schemas).

use std::borrow::Cow;

use ParamType::{Boolean, Integer, String as Str};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Location {
    Path,
    Query,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParamType {
    String,
    Integer,
    Boolean,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: &'static str,
    pub location: Location,
    pub ty: ParamType,
    pub description: Cow<'static, str>,
    pub required: bool,
}

const fn query(name: &'static str, ty: ParamType, description: &'static str) -> Param {
    Param {
        name,
        location: Location::Query,
        ty,
        description: Cow::Borrowed(description),
        required: false,
    }
}

const fn path(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: Location::Path,
        ty: Str,
        description: Cow::Borrowed(description),
        required: true,
    }
}

pub const NAMESPACE: Param = path("namespace", "the namespace the object lives in");
pub const PROXY_PATH: Param = path("path", "path to the resource");
pub const PRETTY: Param = query(
    "pretty",
    Str,
    "If 'true', the output is indented for people to read.",
);

const DRY_RUN: Param = query(
    "dryRun",
    Str,
    "When present, the request is checked and admitted but nothing is persisted. The only value is All.",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    Str,
    "The name of the actor making the change, recorded in managedFields: printable characters, at most 128. Required for apply patches.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    Str,
    "What the server does with unknown or duplicate fields in the request object: Ignore drops them, Warn (the default) drops them and answers a warning for each, Strict fails the request with BadRequest.",
);
const FORCE: Param = query(
    "force",
    Boolean,
    "Makes an apply patch take over fields other managers own. Must be unset for other patch types.",
);

const ALLOW_WATCH_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    Boolean,
    "Asks a watch for BOOKMARK events, which carry only a resourceVersion. The server sends them when it chooses; ignored outside a watch.",
);
const CONTINUE: Param = query(
    "continue",
    Str,
    "The token from a previous page's metadata.continue, to read the next page of a list with the same parameters. An expired token answers 410 Gone. Not supported with watch.",
);
const FIELD_SELECTOR: Param = query(
    "fieldSelector",
    Str,
    "Only objects whose fields match this selector, e.g. metadata.name=foo. Defaults to everything.",
);
const LABEL_SELECTOR: Param = query(
    "labelSelector",
    Str,
    "Only objects whose labels match this selector, e.g. app=web,tier!=db. Defaults to everything.",
);
const LIMIT: Param = query(
    "limit",
    Integer,
    "The most items to answer in one page; when more remain, metadata.continue is set. Pages come from one consistent snapshot. Not supported with watch.",
);
const RESOURCE_VERSION: Param = query(
    "resourceVersion",
    Str,
    "Which resource version the read may be served from; see the API concepts documentation on resource versions. Defaults to the latest.",
);
const RESOURCE_VERSION_MATCH: Param = query(
    "resourceVersionMatch",
    Str,
    "How resourceVersion applies to a list: Exact or NotOlderThan. Recommended whenever resourceVersion is set on a list.",
);
const SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    Boolean,
    "Starts a watch with synthetic ADDED events for every existing object, then a BOOKMARK annotated k8s.io/initial-events-end. Needs resourceVersionMatch=NotOlderThan and allowWatchBookmarks.",
);
const TIMEOUT_SECONDS: Param = query(
    "timeoutSeconds",
    Integer,
    "How long a list or watch call may last, whatever its activity.",
);
const WATCH: Param = query(
    "watch",
    Boolean,
    "Streams added, modified and deleted events for the selected objects instead of listing them. Give a resourceVersion to start from.",
);

const GRACE_PERIOD_SECONDS: Param = query(
    "gracePeriodSeconds",
    Integer,
    "Seconds before the object is deleted; zero deletes at once. Unset uses the kind's default.",
);
const IGNORE_STORE_READ_ERROR: Param = query(
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    Boolean,
    "Deletes an object the server cannot read back from storage (corrupt or undecryptable), skipping finalizers and preconditions. Unsafe; false by default.",
);
const ORPHAN_DEPENDENTS: Param = query(
    "orphanDependents",
    Boolean,
    "Deprecated: use propagationPolicy. Whether dependents are orphaned rather than garbage collected.",
);
const PROPAGATION_POLICY: Param = query(
    "propagationPolicy",
    Str,
    "How dependents are garbage collected: Orphan, Background or Foreground. Defaults to the finalizers on the object and the kind's default.",
);

/// A list, or a watch with `watch=true`.
pub const LIST: &[Param] = &[
    ALLOW_WATCH_BOOKMARKS,
    CONTINUE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
    LIMIT,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
    WATCH,
];
/// create and replace.
pub const WRITE: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
pub const PATCH: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
pub const DELETE: &[Param] = &[
    DRY_RUN,
    GRACE_PERIOD_SECONDS,
    IGNORE_STORE_READ_ERROR,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
];
/// A delete of everything a list with the same selectors would answer.
pub const DELETE_COLLECTION: &[Param] = &[
    CONTINUE,
    DRY_RUN,
    FIELD_SELECTOR,
    GRACE_PERIOD_SECONDS,
    IGNORE_STORE_READ_ERROR,
    LABEL_SELECTOR,
    LIMIT,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
];

const CONTAINER: Param = query(
    "container",
    Str,
    "The container to use; defaults to the only container when there is one.",
);
const STDIN: Param = query("stdin", Boolean, "Whether to pass standard input.");
const STDOUT: Param = query("stdout", Boolean, "Whether to return standard output.");
const STDERR: Param = query("stderr", Boolean, "Whether to return standard error.");
const TTY: Param = query(
    "tty",
    Boolean,
    "Whether to allocate a terminal; standard error then joins standard output.",
);

const ATTACH: &[Param] = &[CONTAINER, STDERR, STDIN, STDOUT, TTY];
const EXEC: &[Param] = &[
    query(
        "command",
        Str,
        "The command to run, one parameter per argument. Not run in a shell.",
    ),
    CONTAINER,
    STDERR,
    STDIN,
    STDOUT,
    TTY,
];
const PORT_FORWARD: &[Param] = &[query(
    "ports",
    Integer,
    "The ports to forward, one parameter per port.",
)];
const PROXY: &[Param] = &[query(
    "path",
    Str,
    "The path to request from the pod, node or service.",
)];
const LOG: &[Param] = &[
    CONTAINER,
    query(
        "follow",
        Boolean,
        "Whether to stream the log as it is written.",
    ),
    query(
        "insecureSkipTLSVerifyBackend",
        Boolean,
        "Whether to skip verifying the kubelet's serving certificate when reading the log.",
    ),
    query(
        "limitBytes",
        Integer,
        "The most bytes to return; the log may end mid-line.",
    ),
    query(
        "previous",
        Boolean,
        "Whether to read the log of the container's previous, terminated instance.",
    ),
    query(
        "sinceSeconds",
        Integer,
        "Only lines written in the last this many seconds.",
    ),
    query(
        "stream",
        Str,
        "Which stream to read: All (the default), Stdout or Stderr.",
    ),
    query(
        "tailLines",
        Integer,
        "Only this many lines from the end of the log.",
    ),
    query(
        "timestamps",
        Boolean,
        "Whether to prefix every line with an RFC3339 timestamp.",
    ),
];

/// The fields of a connect subresource's options kind, as query parameters.
pub fn connect_options(kind: &str) -> &'static [Param] {
    match kind {
        "PodAttachOptions" => ATTACH,
        "PodExecOptions" => EXEC,
        "PodPortForwardOptions" => PORT_FORWARD,
        "PodProxyOptions" | "NodeProxyOptions" | "ServiceProxyOptions" => PROXY,
        _ => &[],
    }
}

/// The query parameters of a subresource that is read as text rather than as an object, if
/// `name` is one: the catalogue records the log's kind as the Pod its operations are tagged
/// with, not its options kind.
pub fn text_read(name: &str) -> Option<&'static [Param]> {
    match name {
        "log" => Some(LOG),
        _ => None,
    }
}
