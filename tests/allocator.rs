//! The release binary's allocator set-up, seen from outside the process:
//! transparent huge pages stay off (mimalloc built with `no_thp`), since
//! with them every 2 MiB page mimalloc touches counts whole in RSS (issue
//! 12: peak RSS while 1,024 consumption posts are outstanding).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// `THP_enabled` from `/proc/<pid>/status`; `None` on kernels that do not
/// report it (before 5.0).
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_string()))
}

#[test]
fn running_binary_has_transparent_huge_pages_off() {
    // The test process itself is a control: THP is on unless the machine
    // disables it, so a `0` below comes from the binary, not the machine.
    let Some(ours) = thp_enabled(std::process::id()) else {
        eprintln!("kernel does not report THP_enabled; nothing to check");
        return;
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_energyload"))
        .args(["esight-sim", "--listen", "127.0.0.1:0", "--latency-ms", "0"])
        .env_remove("MIMALLOC_ALLOW_THP")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once it prints its address it is past the allocator's start-up.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let theirs = thp_enabled(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("listening"), "unexpected first line {first:?}");
    assert_eq!(ours, "1", "this machine has THP off for every process; the check would prove nothing");
    assert_eq!(theirs.as_deref(), Some("0"), "the server runs with transparent huge pages on");
}
