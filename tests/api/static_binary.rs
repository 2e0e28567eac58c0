//! The release binary is statically linked: no ELF interpreter, so it runs
//! in a `FROM scratch` image and on any x86_64 Linux.

use crate::common::elf::has_interpreter;
use crate::common::process::bin;

#[test]
fn the_binary_is_statically_linked() {
    let elf = std::fs::read(bin()).unwrap();
    assert!(!has_interpreter(&elf), "the binary needs a dynamic loader");
    if let Ok(out) = std::process::Command::new("file").arg(bin()).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("static"), "file(1) says: {text}");
    }
}
