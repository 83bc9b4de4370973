//! Reads CPU and memory usage from a cgroup, on cgroup v1 (this machine: cpuacct and memory
//! hierarchies) or the unified v2 hierarchy, as cAdvisor does for upstream's kubelet.

use std::path::{Path, PathBuf};

/// What one cgroup has used so far, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of all its tasks, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged to it, page cache included.
    pub memory_bytes: u64,
    /// `memory_bytes` less the inactive file cache: what eviction and `kubectl top` count.
    pub working_set_bytes: u64,
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The memory limit, if it has one.
    pub memory_limit_bytes: Option<u64>,
}

/// v1 reports "no limit" as the largest page-aligned i64.
const V1_UNLIMITED: u64 = 1 << 62;

/// Where the hierarchies are mounted and which layout they have.
#[derive(Debug, Clone)]
pub struct Hierarchies {
    root: PathBuf,
    unified: bool,
}

impl Hierarchies {
    pub fn detect() -> Self {
        Self::at(Path::new("/sys/fs/cgroup"))
    }

    /// Hierarchies mounted under `root`: v1 if a `cpuacct` hierarchy is there, else v2.
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            unified: !root.join("cpuacct").is_dir(),
        }
    }

    /// Usage of the cgroup at `path` (relative to each hierarchy's root, `/` for the root
    /// cgroup); `None` if it does not exist (any more).
    pub fn read(&self, path: &str) -> Option<Usage> {
        let relative = path.trim_matches('/');
        if self.unified {
            self.read_v2(relative)
        } else {
            self.read_v1(relative)
        }
    }

    fn read_v1(&self, relative: &str) -> Option<Usage> {
        let cpu_ns = read_u64(
            &self
                .root
                .join("cpuacct")
                .join(relative)
                .join("cpuacct.usage"),
        )?;
        let memory = self.root.join("memory").join(relative);
        let memory_bytes = read_u64(&memory.join("memory.usage_in_bytes"))?;
        let stat = read_stat(&memory.join("memory.stat"));
        let field = |name: &str| stat_field(&stat, name);
        Some(Usage {
            cpu_ns,
            memory_bytes,
            working_set_bytes: memory_bytes.saturating_sub(field("total_inactive_file")),
            rss_bytes: field("total_rss"),
            page_faults: field("total_pgfault"),
            major_page_faults: field("total_pgmajfault"),
            memory_limit_bytes: read_u64(&memory.join("memory.limit_in_bytes"))
                .filter(|&limit| limit < V1_UNLIMITED),
        })
    }

    fn read_v2(&self, relative: &str) -> Option<Usage> {
        let dir = self.root.join(relative);
        let cpu = read_stat(&dir.join("cpu.stat"));
        let cpu_ns = stat_field(&cpu, "usage_usec") * 1000;
        let stat = read_stat(&dir.join("memory.stat"));
        if cpu.is_empty() || stat.is_empty() {
            return None;
        }
        let field = |name: &str| stat_field(&stat, name);
        // The root cgroup has no memory.current: count what its stat says is in use.
        let memory_bytes = read_u64(&dir.join("memory.current"))
            .unwrap_or_else(|| field("anon") + field("file") + field("kernel"));
        Some(Usage {
            cpu_ns,
            memory_bytes,
            working_set_bytes: memory_bytes.saturating_sub(field("inactive_file")),
            rss_bytes: field("anon"),
            page_faults: field("pgfault"),
            major_page_faults: field("pgmajfault"),
            // "max" does not parse: no limit.
            memory_limit_bytes: read_u64(&dir.join("memory.max")),
        })
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_stat(path: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn stat_field(stat: &[(String, u64)], name: &str) -> u64 {
    stat.iter()
        .find(|(key, _)| key == name)
        .map_or(0, |(_, value)| *value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v1_usage_counts_the_working_set_without_inactive_cache() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(&r.join("cpuacct/r8s/pod1/cpuacct.usage"), "1500000000\n");
        write(
            &r.join("memory/r8s/pod1/memory.usage_in_bytes"),
            "10485760\n",
        );
        write(
            &r.join("memory/r8s/pod1/memory.limit_in_bytes"),
            "67108864\n",
        );
        write(
            &r.join("memory/r8s/pod1/memory.stat"),
            "cache 100\ntotal_rss 6291456\ntotal_inactive_file 2097152\ntotal_pgfault 42\ntotal_pgmajfault 3\n",
        );
        let cgroups = Hierarchies::at(r);
        let usage = cgroups.read("/r8s/pod1").unwrap();
        assert_eq!(
            usage,
            Usage {
                cpu_ns: 1_500_000_000,
                memory_bytes: 10_485_760,
                working_set_bytes: 8_388_608,
                rss_bytes: 6_291_456,
                page_faults: 42,
                major_page_faults: 3,
                memory_limit_bytes: Some(67_108_864),
            }
        );
        assert_eq!(cgroups.read("/r8s/gone"), None);
    }

    #[test]
    fn v2_usage_reads_cpu_stat_and_memory_current() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            &r.join("pod1/cpu.stat"),
            "usage_usec 2000\nuser_usec 1500\n",
        );
        write(&r.join("pod1/memory.current"), "4096\n");
        write(
            &r.join("pod1/memory.stat"),
            "anon 3000\ninactive_file 1096\npgfault 7\n",
        );
        let usage = Hierarchies::at(r).read("pod1").unwrap();
        assert_eq!(usage.cpu_ns, 2_000_000);
        assert_eq!(usage.working_set_bytes, 3000);
        assert_eq!((usage.rss_bytes, usage.page_faults), (3000, 7));
        assert_eq!(usage.memory_limit_bytes, None);
    }
}
