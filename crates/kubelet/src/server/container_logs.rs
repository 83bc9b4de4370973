//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log as `kubectl logs`
//! shows it, read from the CRI log file the runtime writes, as upstream's kubelet does
//! (`GetKubeletContainerLogs`, `validateContainerLogStatus`, kuberuntime's `ReadLogs`).
//!
//! The container is found from the pod's status (its current one, or with `previous` the last
//! terminated one), its log path and state from the runtime. `tailLines` starts at the last n
//! lines of the file, `sinceSeconds`/`sinceTime` skip older lines, `limitBytes` caps the output
//! (timestamps included) and `follow` streams new lines until the container stops running.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::{Body, Kubelet, bound_pod, text};
use crate::cri::v1;
use crate::logs;

/// How often a followed log is read for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a followed container is checked to still run, as upstream's forced check.
const RUNNING_CHECK: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 64 * 1024;

/// The query, as upstream's kubelet decodes `PodLogOptions` (`tail` is the old `tailLines`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<OffsetDateTime>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

/// Why a query is refused: undecodable (400) or invalid (422), with upstream's bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    Decode,
    Invalid,
}

/// A query flag as upstream decodes one: `0`, `f` and `false` are false, anything else true.
fn flag(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("f") || value.eq_ignore_ascii_case("false"))
}

impl LogQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, QueryError> {
        let number = |value: &str| -> Result<Option<i64>, QueryError> {
            match value {
                "" => Ok(None),
                value => value.parse().map(Some).map_err(|_| QueryError::Decode),
            }
        };
        let mut parsed = Self::default();
        let mut tail = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "follow" => parsed.follow = flag(&value),
                "previous" => parsed.previous = flag(&value),
                "timestamps" => parsed.timestamps = flag(&value),
                "sinceSeconds" => parsed.since_seconds = number(&value)?,
                "tailLines" => parsed.tail_lines = number(&value)?,
                "limitBytes" => parsed.limit_bytes = number(&value)?,
                "tail" if !value.is_empty() => tail = Some(value.into_owned()),
                "sinceTime" if !value.is_empty() && value != "null" => {
                    let time =
                        OffsetDateTime::parse(&value, &Rfc3339).map_err(|_| QueryError::Decode)?;
                    parsed.since_time = Some(time);
                }
                _ => {}
            }
        }
        match tail.as_deref() {
            None => {}
            Some("all") => parsed.tail_lines = None,
            Some(tail) => parsed.tail_lines = number(tail)?,
        }
        let invalid = parsed.tail_lines.is_some_and(|t| t < 0)
            || parsed.limit_bytes.is_some_and(|l| l < 1)
            || (parsed.since_seconds.is_some() && parsed.since_time.is_some())
            || parsed.since_seconds.is_some_and(|s| s < 1);
        if invalid {
            return Err(QueryError::Invalid);
        }
        Ok(parsed)
    }

    /// The oldest line to show: the later of `now - sinceSeconds` and `sinceTime`.
    pub fn since(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let from_seconds = self.since_seconds.map(|s| now - time::Duration::seconds(s));
        match (from_seconds, self.since_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

fn container_status<'a>(
    statuses: &'a Option<Vec<ContainerStatus>>,
    name: &str,
) -> Option<&'a ContainerStatus> {
    statuses.as_ref()?.iter().find(|s| s.name == name)
}

/// The runtime ID of the container whose log is asked for, from the pod's status: with
/// `previous` the last terminated one, else the running one, else the latest to have run.
/// The error is upstream's message.
pub fn container_id(pod: &Pod, container: &str, previous: bool) -> Result<String, String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let found = container_status(&status.container_statuses, container)
        .or_else(|| container_status(&status.init_container_statuses, container))
        .or_else(|| container_status(&status.ephemeral_container_statuses, container))
        .ok_or_else(|| format!("container {container:?} in pod {pod_name:?} is not available"))?;
    let state = found.state.clone().unwrap_or_default();
    let last_terminated = found
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.container_id.clone())
        .filter(|id| !id.is_empty());
    let terminated_message =
        || format!("container {container:?} in pod {pod_name:?} is terminated");
    let id = if previous {
        last_terminated.ok_or_else(|| {
            format!("previous terminated container {container:?} in pod {pod_name:?} not found")
        })?
    } else if state.running.is_some() {
        found.container_id.clone().unwrap_or_default()
    } else if let Some(terminated) = &state.terminated {
        // When the next run did not start, the latest log is the last termination's.
        match terminated.container_id.clone().filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => last_terminated.ok_or_else(terminated_message)?,
        }
    } else if found
        .last_state
        .as_ref()
        .is_some_and(|s| s.terminated.is_some())
    {
        last_terminated.ok_or_else(terminated_message)?
    } else if let Some(waiting) = &state.waiting {
        let why = match waiting.reason.as_deref().unwrap_or_default() {
            "ErrImagePull" => "image can't be pulled".to_owned(),
            "ImagePullBackOff" => "trying and failing to pull image".to_owned(),
            reason => reason.to_owned(),
        };
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        ));
    } else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
        ));
    };
    // `containerd://<id>` → `<id>`.
    Ok(id
        .split_once("://")
        .map_or(id.as_str(), |(_, id)| id)
        .to_owned())
}

/// Where the last `lines` complete lines of `file` start (an unterminated last line comes with
/// them), as upstream's `FindTailLineStartIndex`.
pub fn tail_start(file: &mut (impl Read + Seek), lines: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 1024;
    let size = file.seek(SeekFrom::End(0))?;
    let mut right = size;
    let mut left = size;
    let mut count = 0u64;
    let mut block = Vec::new();
    while right > 0 && count <= lines {
        left = right.saturating_sub(BLOCK);
        block.resize((right - left) as usize, 0);
        file.seek(SeekFrom::Start(left))?;
        file.read_exact(&mut block)?;
        count += block.iter().filter(|&&b| b == b'\n').count() as u64;
        right = left;
    }
    // The first block read last may hold more lines than wanted: skip past the extra ones.
    let mut start = left;
    let mut rest = block.as_slice();
    while count > lines {
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        start += newline as u64 + 1;
        rest = &rest[newline + 1..];
        count -= 1;
    }
    Ok(start)
}

/// Turns CRI log lines into what the client reads, applying `since`, `limitBytes`,
/// `timestamps` and the line budget of a non-followed `tailLines`.
#[derive(Debug)]
pub struct LogFilter {
    since: Option<OffsetDateTime>,
    timestamps: bool,
    bytes_left: Option<u64>,
    lines_left: Option<u64>,
    at_line_start: bool,
}

/// Whether more lines are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    More,
    Done,
}

/// A timestamp as upstream's kubelet writes it: RFC 3339 with nine fraction digits.
fn format_timestamp(time: OffsetDateTime) -> String {
    let offset = time.offset();
    let zone = if offset.is_utc() {
        "Z".to_owned()
    } else {
        let (hours, minutes, _) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        format!(
            "{sign}{:02}:{:02}",
            hours.unsigned_abs(),
            minutes.unsigned_abs()
        )
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}{zone}",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.nanosecond()
    )
}

impl LogFilter {
    pub fn new(query: &LogQuery, now: OffsetDateTime) -> Self {
        Self {
            since: query.since(now),
            timestamps: query.timestamps,
            bytes_left: query.limit_bytes.map(|l| l.max(0) as u64),
            // Followed logs keep going past the tail.
            lines_left: query
                .tail_lines
                .filter(|_| !query.follow)
                .map(|t| t.max(0) as u64),
            at_line_start: true,
        }
    }

    /// Whether the filter takes nothing more (the line budget or the byte limit is spent).
    pub fn done(&self) -> bool {
        self.lines_left == Some(0) || self.bytes_left == Some(0)
    }

    /// Appends what one CRI log line (without its newline) shows to `out`.
    pub fn line(&mut self, raw: &str, out: &mut Vec<u8>) -> Wanted {
        if self.done() {
            return Wanted::Done;
        }
        let Some(entry) = logs::parse(raw) else {
            return Wanted::More;
        };
        let Ok(time) = OffsetDateTime::parse(entry.timestamp, &Rfc3339) else {
            return Wanted::More;
        };
        let mut shown = Vec::new();
        if self.since.is_none_or(|since| time >= since) {
            if self.timestamps && self.at_line_start {
                shown.extend_from_slice(format_timestamp(time).as_bytes());
                shown.push(b' ');
            }
            shown.extend_from_slice(entry.text.as_bytes());
            if !entry.partial {
                shown.push(b'\n');
            }
            if let Some(left) = self.bytes_left.as_mut() {
                shown.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= shown.len() as u64;
            }
            out.extend_from_slice(&shown);
        }
        if let Some(lines) = self.lines_left.as_mut() {
            *lines -= 1;
        }
        self.at_line_start = !entry.partial || entry.text.is_empty();
        if self.done() {
            Wanted::Done
        } else {
            Wanted::More
        }
    }

    /// Feeds every complete line of `pending` (and, with `flush`, an unterminated last one),
    /// leaving the rest in `pending`.
    pub fn feed(&mut self, pending: &mut Vec<u8>, flush: bool, out: &mut Vec<u8>) -> Wanted {
        let mut consumed = 0;
        let mut wanted = Wanted::More;
        while wanted == Wanted::More {
            let rest = &pending[consumed..];
            let (line, used) = match rest.iter().position(|&b| b == b'\n') {
                Some(newline) => (&rest[..newline], newline + 1),
                None if flush && !rest.is_empty() => (rest, rest.len()),
                None => break,
            };
            wanted = self.line(&String::from_utf8_lossy(line), out);
            consumed += used;
        }
        pending.drain(..consumed);
        wanted
    }
}

/// Serves one `/containerLogs` request.
pub async fn serve(
    kubelet: &Arc<Kubelet>,
    namespace: &str,
    pod_name: &str,
    container: &str,
    query: Option<&str>,
) -> http::Response<Body> {
    let query = match LogQuery::parse(query) {
        Ok(query) => query,
        Err(QueryError::Decode) => {
            return text(
                StatusCode::BAD_REQUEST,
                r#"{"message": "Unable to decode query."}"#,
            );
        }
        Err(QueryError::Invalid) => {
            return text(
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"message": "Invalid request."}"#,
            );
        }
    };
    let pod = match bound_pod(kubelet, namespace, pod_name).await {
        Ok(Some(pod)) => pod,
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                &format!("pod {pod_name:?} does not exist"),
            );
        }
        Err(message) => return text(StatusCode::INTERNAL_SERVER_ERROR, &message),
    };
    if !has_container(&pod, container) {
        return text(
            StatusCode::NOT_FOUND,
            &format!("container {container:?} not found in pod {pod_name:?}"),
        );
    }
    let id = match container_id(&pod, container, query.previous) {
        Ok(id) => id,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    let Some(log_path) = log_path(kubelet, &id).await else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("unable to retrieve container logs for containerd://{id}"),
        );
    };
    let file = match std::fs::File::open(&log_path) {
        Ok(file) => file,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("failed to open log file {:?}: {e}", log_path.display()),
            );
        }
    };
    let (sender, receiver) = mpsc::channel::<Bytes>(16);
    tokio::spawn(stream_log(kubelet.clone(), id, file, query, sender));
    let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), receiver))
    });
    let mut response = http::Response::new(StreamBody::new(chunks).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

fn has_container(pod: &Pod, name: &str) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.containers.iter().any(|c| c.name == name)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
}

/// The container's log file and whether it runs, as the runtime reports them.
async fn runtime_status(kubelet: &Kubelet, id: &str) -> Option<v1::ContainerStatus> {
    kubelet
        .cri
        .runtime
        .clone()
        .container_status(v1::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
        .ok()?
        .into_inner()
        .status
}

async fn log_path(kubelet: &Kubelet, id: &str) -> Option<PathBuf> {
    let status = runtime_status(kubelet, id).await?;
    Some(PathBuf::from(status.log_path)).filter(|p| !p.as_os_str().is_empty())
}

/// Whether the container still runs; a container the runtime no longer knows does not.
async fn is_running(kubelet: &Kubelet, id: &str) -> bool {
    runtime_status(kubelet, id)
        .await
        .is_some_and(|s| s.state() == v1::ContainerState::ContainerRunning)
}

/// Reads the log from the tail start and sends what the client sees; with `follow`, keeps
/// reading new lines until the container stops running (then drains the file) or the client
/// goes away.
async fn stream_log(
    kubelet: Arc<Kubelet>,
    id: String,
    file: std::fs::File,
    query: LogQuery,
    sender: mpsc::Sender<Bytes>,
) {
    let tail = query.tail_lines.map(|t| t.max(0) as u64);
    let start = tokio::task::spawn_blocking(move || {
        let mut file = file;
        let start = match tail {
            Some(lines) => tail_start(&mut file, lines),
            None => Ok(0),
        };
        start.map(|start| (file, start))
    })
    .await;
    let Ok(Ok((file, start))) = start else {
        tracing::warn!(container = %id, "cannot find where the log tail starts");
        return;
    };
    let mut file = tokio::fs::File::from_std(file);
    if file.seek(SeekFrom::Start(start)).await.is_err() {
        return;
    }
    let mut filter = LogFilter::new(&query, OffsetDateTime::now_utc());
    let mut pending = Vec::new();
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut last_check = tokio::time::Instant::now();
    // Set once the container has stopped: read to the end once more, then stop.
    let mut draining = false;
    loop {
        let read = match file.read(&mut buffer).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(container = %id, "reading the log: {e}");
                return;
            }
        };
        pending.extend_from_slice(&buffer[..read]);
        let at_end = read == 0;
        let flush = at_end && (!query.follow || draining);
        let mut out = Vec::new();
        let wanted = filter.feed(&mut pending, flush, &mut out);
        if !out.is_empty() && sender.send(Bytes::from(out)).await.is_err() {
            return;
        }
        if wanted == Wanted::Done || (at_end && (!query.follow || draining)) {
            return;
        }
        if !at_end {
            continue;
        }
        if last_check.elapsed() >= RUNNING_CHECK {
            last_check = tokio::time::Instant::now();
            if !is_running(&kubelet, &id).await {
                draining = true;
                continue;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = sender.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodStatus,
    };
    use kube::api::ObjectMeta;

    use super::*;

    const LOG: &str = "\
2026-01-01T00:00:01.000000001Z stdout F line 1
2026-01-01T00:00:02.5Z stdout P part
2026-01-01T00:00:02.6Z stdout F ial
2026-01-01T00:00:03Z stderr F line 3
2026-01-01T00:00:04Z stdout F line 4
";

    fn show(query: &str, content: &str) -> String {
        let query = LogQuery::parse(Some(query)).unwrap();
        let mut cursor = Cursor::new(content.as_bytes().to_vec());
        let start = match query.tail_lines {
            Some(lines) => tail_start(&mut cursor, lines as u64).unwrap(),
            None => 0,
        };
        let now = OffsetDateTime::parse("2026-01-01T00:00:05Z", &Rfc3339).unwrap();
        let mut filter = LogFilter::new(&query, now);
        let mut pending = content.as_bytes()[start as usize..].to_vec();
        let mut out = Vec::new();
        filter.feed(&mut pending, true, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn whole_log_joins_partial_lines() {
        assert_eq!(show("", LOG), "line 1\npartial\nline 3\nline 4\n");
    }

    #[test]
    fn tail_lines_counts_log_file_lines_from_the_end() {
        assert_eq!(show("tailLines=1", LOG), "line 4\n");
        assert_eq!(show("tailLines=2", LOG), "line 3\nline 4\n");
        assert_eq!(show("tailLines=0", LOG), "");
        assert_eq!(show("tailLines=100", LOG), show("", LOG));
        assert_eq!(show("tail=1", LOG), "line 4\n");
        assert_eq!(show("tail=all", LOG), show("", LOG));
    }

    #[test]
    fn tail_start_includes_an_unterminated_last_line() {
        let content = "a\nb\nc";
        let mut cursor = Cursor::new(content.as_bytes().to_vec());
        assert_eq!(tail_start(&mut cursor, 1).unwrap(), 2);
        assert_eq!(tail_start(&mut cursor, 0).unwrap(), 4);
        assert_eq!(tail_start(&mut cursor, 5).unwrap(), 0);
        let long: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let mut cursor = Cursor::new(long.as_bytes().to_vec());
        let start = tail_start(&mut cursor, 3).unwrap() as usize;
        assert_eq!(&long[start..], "line 497\nline 498\nline 499\n");
    }

    #[test]
    fn timestamps_prefix_each_line_with_nine_fraction_digits() {
        assert_eq!(
            show("timestamps=true&tailLines=4", LOG),
            "2026-01-01T00:00:02.500000000Z partial\n\
             2026-01-01T00:00:03.000000000Z line 3\n\
             2026-01-01T00:00:04.000000000Z line 4\n"
        );
    }

    #[test]
    fn since_skips_older_lines() {
        assert_eq!(show("sinceSeconds=2", LOG), "line 3\nline 4\n");
        assert_eq!(
            show("sinceTime=2026-01-01T00:00:02Z", LOG),
            "partial\nline 3\nline 4\n"
        );
    }

    #[test]
    fn limit_bytes_cuts_the_output_including_timestamps() {
        assert_eq!(show("limitBytes=10", LOG), "line 1\npar");
        assert_eq!(
            show("limitBytes=35&timestamps=true", LOG),
            "2026-01-01T00:00:01.000000001Z line"
        );
    }

    #[test]
    fn unterminated_lines_wait_unless_flushed() {
        let mut filter = LogFilter::new(&LogQuery::default(), OffsetDateTime::now_utc());
        let mut pending = b"2026-01-01T00:00:01Z stdout F one\n2026-01-01T00:00:02Z std".to_vec();
        let mut out = Vec::new();
        assert_eq!(filter.feed(&mut pending, false, &mut out), Wanted::More);
        assert_eq!(out, b"one\n");
        assert_eq!(pending, b"2026-01-01T00:00:02Z std");
        pending.extend_from_slice(b"out F two\n");
        filter.feed(&mut pending, false, &mut out);
        assert_eq!(out, b"one\ntwo\n");
        assert!(pending.is_empty());
    }

    #[test]
    fn query_decoding_and_validation_follow_upstream() {
        let q = LogQuery::parse(Some("follow&previous=false&timestamps=1&limitBytes=5")).unwrap();
        assert!(q.follow && !q.previous && q.timestamps);
        assert_eq!(q.limit_bytes, Some(5));
        for bad in ["tailLines=x", "sinceTime=yesterday", "tail=some"] {
            assert_eq!(LogQuery::parse(Some(bad)), Err(QueryError::Decode), "{bad}");
        }
        for invalid in [
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z",
        ] {
            assert_eq!(
                LogQuery::parse(Some(invalid)),
                Err(QueryError::Invalid),
                "{invalid}"
            );
        }
    }

    fn pod_with(status: ContainerStatus) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![status]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(id: &str) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(id.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn status(state: ContainerState, last: Option<ContainerState>) -> ContainerStatus {
        ContainerStatus {
            name: "app".into(),
            container_id: Some("containerd://current".into()),
            state: Some(state),
            last_state: last,
            ..Default::default()
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_running_container_is_the_current_one() {
        let pod = pod_with(status(running(), Some(terminated("containerd://old"))));
        assert_eq!(container_id(&pod, "app", false).unwrap(), "current");
        assert_eq!(container_id(&pod, "app", true).unwrap(), "old");
    }

    #[test]
    fn previous_needs_a_terminated_run() {
        let pod = pod_with(status(running(), None));
        assert_eq!(
            container_id(&pod, "app", true).unwrap_err(),
            "previous terminated container \"app\" in pod \"web\" not found"
        );
    }

    #[test]
    fn a_crash_looping_container_shows_its_last_run() {
        let pod = pod_with(status(
            waiting("CrashLoopBackOff"),
            Some(terminated("containerd://crashed")),
        ));
        assert_eq!(container_id(&pod, "app", false).unwrap(), "crashed");
    }

    #[test]
    fn a_waiting_container_has_no_logs_yet() {
        let pod = pod_with(status(waiting("ContainerCreating"), None));
        assert_eq!(
            container_id(&pod, "app", false).unwrap_err(),
            "container \"app\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        let pod = pod_with(status(waiting("ErrImagePull"), None));
        assert_eq!(
            container_id(&pod, "app", false).unwrap_err(),
            "container \"app\" in pod \"web\" is waiting to start: image can't be pulled"
        );
        assert_eq!(
            container_id(&pod, "db", false).unwrap_err(),
            "container \"db\" in pod \"web\" is not available"
        );
    }

    #[test]
    fn a_terminated_container_shows_its_own_log() {
        let pod = pod_with(status(terminated("containerd://done"), None));
        assert_eq!(container_id(&pod, "app", false).unwrap(), "done");
    }
}
