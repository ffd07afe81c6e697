//! A network namespace a test creates (and deletes): its own loopback (all of 127/8, so
//! several brokers can share a port on 127.0.0.1, 127.0.0.2, ...), its own `/etc/hosts`
//! (`ip netns exec` mounts `/etc/netns/<name>/hosts` over it, so a test can make a host
//! name resolve to brokers and change that while they run), and its own iptables (a
//! silent partition). Needs root and iproute2; fails loudly without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A network namespace with loopback up, deleted (with its hosts file) when dropped.
pub struct NetNs {
    name: String,
    etc: PathBuf,
}

impl NetNs {
    /// Creates a namespace named after this process, `label` and a counter.
    pub fn new(label: &str) -> NetNs {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sbt-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name]);
        let etc = PathBuf::from("/etc/netns").join(&name);
        std::fs::create_dir_all(&etc).expect("create /etc/netns/<name>");
        let ns = NetNs { name, etc };
        ns.set_hosts(&[]);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Rewrites the namespace's `/etc/hosts` in place: each `(address, name)` a line.
    /// Processes already running see it at their next lookup.
    pub fn set_hosts(&self, entries: &[(&str, &str)]) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for (address, name) in entries {
            text.push_str(&format!("{address} {name}\n"));
        }
        // Written in place (same inode): the file is bind-mounted into the namespace.
        std::fs::write(self.etc.join("hosts"), text).expect("write the namespace's hosts file");
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a command inside the namespace and returns its stdout; panics if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot run ({e}): this test needs root and iproute2",
                args[0]
            )
        });
    assert!(
        out.status.success(),
        "{args:?} failed: {} (this test needs root, iproute2 and iptables)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
