//! Finding the cgroup v2 mount in `/proc/self/mountinfo`.

use std::path::PathBuf;

/// The mount point of a cgroup2 file system in a mountinfo text, preferring `/sys/fs/cgroup`
/// (unified hierarchy) over others such as `/sys/fs/cgroup/unified` (hybrid hosts).
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            // id parent maj:min root mountpoint options [optional...] - fstype source superopts
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            (fstype == "cgroup2").then(|| left.split_whitespace().nth(4).map(unescape))?
        })
        .collect();
    found.sort_by_key(|p| p != &PathBuf::from("/sys/fs/cgroup"));
    found.into_iter().next()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_finds_unified() {
        assert_eq!(
            cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn unified_host_prefers_sys_fs_cgroup_and_handles_optional_fields() {
        let text = "\
50 1 0:40 / /mnt/other\\040cg rw shared:9 - cgroup2 cgroup2 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 master:1 - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(cgroup2_mount(text), Some(PathBuf::from("/sys/fs/cgroup")));
        let only_other = text.lines().next().unwrap_or_default();
        assert_eq!(
            cgroup2_mount(only_other),
            Some(PathBuf::from("/mnt/other cg"))
        );
    }

    #[test]
    fn v1_only_host_has_none() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        assert_eq!(cgroup2_mount(text), None);
        assert_eq!(cgroup2_mount(""), None);
    }
}
