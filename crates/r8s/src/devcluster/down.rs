//! `r8s devcluster down`: stops the processes `up` recorded (by PID, each checked by its
//! command line), removes what each node left on the machine, the namespaces, and the nodes'
//! state; the logs stay. Running it again finds nothing to do.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use super::Layout;
use super::network;
use super::process;

/// How long the server and agents get to stop on SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(20);

pub fn run(dir: &Path) -> anyhow::Result<()> {
    super::require_root_and_ip()?;
    let layout = Layout::of(dir)?;
    if !layout.marker().exists() && layout.running().is_none() {
        println!("no devcluster in {}", layout.dir.display());
        return Ok(());
    }
    let problems = teardown(&layout);
    if !problems.is_empty() {
        bail!(
            "devcluster {} is down, but these remain:\n  {}",
            layout.dir.display(),
            problems.join("\n  ")
        );
    }
    println!("devcluster {} is down", layout.dir.display());
    Ok(())
}

/// Removes everything of the devcluster it can; returns what it could not.
pub fn teardown(layout: &Layout) -> Vec<String> {
    let mut problems = Vec::new();
    let owns_state = layout.marker().exists();
    let indices = layout.node_indices();
    let recorded = layout.recorded();
    let pids: Vec<i32> = recorded.iter().filter_map(|r| r.running()).collect();
    for pid in process::stop(&pids, GRACE) {
        problems.push(format!("process {pid} (it survived SIGKILL)"));
    }
    if owns_state {
        for &index in &indices {
            remove_node_state(layout, index, &mut problems);
        }
        for recorded in &recorded {
            remove(&recorded.pid_file, &mut problems);
        }
        remove(&layout.kubeconfig(), &mut problems);
        remove(&layout.registry_config(), &mut problems);
        remove(&layout.registry_dir(), &mut problems);
    } else {
        problems.push(format!(
            "node data under {} (no {} there, so not surely a devcluster's)",
            layout.dir.display(),
            layout.marker().display()
        ));
    }
    // The nodes before the switch (`n…` sorts before `sw`): their veths' peers go with them.
    for netns in network::namespaces_with_prefix(&layout.prefix()) {
        if let Err(e) = network::ip(&["netns", "del", &netns]) {
            problems.push(format!("network namespace {netns}: {e:#}"));
        }
    }
    if problems.is_empty() {
        remove(&layout.marker(), &mut problems);
    }
    problems
}

/// What node `index` left on the machine (processes, mounts, cgroups), then its state.
fn remove_node_state(layout: &Layout, index: u8, problems: &mut Vec<String>) {
    let (data_dir, name) = (layout.node_dir(index), layout.node(index));
    r8s_kubelet::cleanup::remove_node(&data_dir, &name);
    let mut left = r8s_kubelet::cleanup::leftovers(&data_dir, &name);
    if !left.is_empty() {
        // Cgroups empty a moment after their last process is killed.
        std::thread::sleep(Duration::from_secs(1));
        r8s_kubelet::cleanup::remove_node(&data_dir, &name);
        left = r8s_kubelet::cleanup::leftovers(&data_dir, &name);
    }
    if !left.is_empty() {
        problems.extend(left.into_iter().map(|what| format!("{name}: {what}")));
        return;
    }
    // Nothing is mounted under the data dir any more, so removing it removes only the
    // node's own files.
    for state in ["agent", "server", "admin.kubeconfig"] {
        remove(&data_dir.join(state), problems);
    }
}

fn remove(path: &Path, problems: &mut Vec<String>) {
    let result = if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            problems.push(format!("{}: {e}", path.display()));
        }
        _ => {}
    }
}
