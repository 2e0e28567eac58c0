//! The release binary is statically linked: no ELF interpreter, so it runs
//! in a `FROM scratch` image and on any x86_64 Linux.

use crate::common::process::bin;

/// True when the ELF file has a `PT_INTERP` program header (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "64-bit ELF expected");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (entsize, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * entsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

#[test]
fn the_binary_is_statically_linked() {
    let elf = std::fs::read(bin()).unwrap();
    assert!(!has_interpreter(&elf), "the binary needs a dynamic loader");
    if let Ok(out) = std::process::Command::new("file").arg(bin()).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("static"), "file(1) says: {text}");
    }
}
