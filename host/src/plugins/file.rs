//! What is checked on a plugin file's bytes and its permissions before the dynamic loader sees
//! it, and the sealed in-memory copy the loader is given instead of the file.
//!
//! The dynamic loader maps a library's segments as the headers describe them and trusts the file
//! to hold them: a truncated copy maps pages past the end of the file, and touching them kills
//! the process with SIGBUS. So the ELF structure is checked with the `object` crate first: the
//! file must parse, be a shared object of this machine's architecture, and every segment and
//! section it declares must lie within the file.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::Endianness;
use std::path::Path;

#[cfg(target_pointer_width = "64")]
type Header = elf::FileHeader64<Endianness>;
#[cfg(target_pointer_width = "64")]
const CLASS: u8 = elf::ELFCLASS64;
#[cfg(not(target_pointer_width = "64"))]
type Header = elf::FileHeader32<Endianness>;
#[cfg(not(target_pointer_width = "64"))]
const CLASS: u8 = elf::ELFCLASS32;

/// The ELF machine of this host, where known (elsewhere the dynamic loader alone checks it).
const MACHINE: Option<u16> = if cfg!(target_arch = "x86_64") {
    Some(elf::EM_X86_64)
} else if cfg!(target_arch = "aarch64") {
    Some(elf::EM_AARCH64)
} else if cfg!(target_arch = "x86") {
    Some(elf::EM_386)
} else if cfg!(target_arch = "arm") {
    Some(elf::EM_ARM)
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    Some(elf::EM_RISCV)
} else if cfg!(target_arch = "powerpc64") {
    Some(elf::EM_PPC64)
} else if cfg!(target_arch = "s390x") {
    Some(elf::EM_S390)
} else if cfg!(target_arch = "loongarch64") {
    Some(elf::EM_LOONGARCH)
} else {
    None
};

/// Plugin files larger than this are refused unread.
pub const MAX_LIBRARY_BYTES: u64 = 512 * 1024 * 1024;

/// Checks that `data` is a well-formed ELF shared object for this machine whose every segment
/// and section lies within `data`. The error says what is wrong, for the operator.
pub fn check_elf(data: &[u8]) -> Result<(), String> {
    if data.get(..4) != Some(&elf::ELFMAG[..]) {
        return Err("not an ELF file (no ELF magic number)".into());
    }
    let truncated = "the file is truncated or corrupt";
    if data.len() < std::mem::size_of::<Header>() {
        return Err(format!("the ELF header is cut short: {truncated}"));
    }
    let class = data[4];
    if class != CLASS {
        return Err(format!(
            "built for another architecture: ELF class {class} (this host is {}-bit)",
            usize::BITS
        ));
    }
    let native = if cfg!(target_endian = "big") {
        elf::ELFDATA2MSB
    } else {
        elf::ELFDATA2LSB
    };
    if data[5] != native {
        return Err(
            "built for another architecture: the byte order differs from this host's".into(),
        );
    }
    let header =
        Header::parse(data).map_err(|e| format!("malformed ELF header ({e}): {truncated}"))?;
    let endian = header
        .endian()
        .map_err(|e| format!("malformed ELF header ({e})"))?;
    let e_type = header.e_type(endian);
    if e_type != elf::ET_DYN {
        let what = match e_type {
            elf::ET_REL => "an object file (.o)",
            elf::ET_EXEC => "an executable",
            elf::ET_CORE => "a core dump",
            _ => "not a shared object",
        };
        return Err(format!("{what}, not a shared library (ELF type {e_type})"));
    }
    let machine = header.e_machine(endian);
    if let Some(expected) = MACHINE {
        if machine != expected {
            return Err(format!(
                "built for another architecture: ELF machine {machine}, this host ({}) is {expected}",
                std::env::consts::ARCH
            ));
        }
    }
    let len = data.len() as u64;
    let beyond = |what: String, offset: u64, size: u64| {
        offset
            .checked_add(size)
            .is_none_or(|end| end > len)
            .then(|| {
                format!(
                    "{what} lies beyond the end of the file (bytes {offset}+{size}, the file has {len}): {truncated}"
                )
            })
    };
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| format!("program header table: {e}: {truncated}"))?;
    if !segments.iter().any(|s| s.p_type(endian) == elf::PT_LOAD) {
        return Err(format!("no loadable segment: {truncated}"));
    }
    for (i, segment) in segments.iter().enumerate() {
        let (offset, size) = segment.file_range(endian);
        if let Some(e) = beyond(format!("segment {i}"), offset, size) {
            return Err(e);
        }
        // The word is u32 in 32-bit ELF.
        #[allow(clippy::useless_conversion)]
        let in_memory: u64 = segment.p_memsz(endian).into();
        if size > in_memory {
            return Err(format!(
                "segment {i} is larger in the file than in memory: {truncated}"
            ));
        }
    }
    let sections = header
        .section_headers(endian, data)
        .map_err(|e| format!("section header table: {e}: {truncated}"))?;
    for (i, section) in sections.iter().enumerate() {
        if let Some((offset, size)) = section.file_range(endian) {
            if let Some(e) = beyond(format!("section {i}"), offset, size) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Whether a mode lets others than the owner write (group- or world-writable).
pub fn writable_by_others(mode: u32) -> bool {
    mode & 0o022 != 0
}

/// Refuses a file or folder that others than its owner can write: they could replace the code
/// the portal runs.
#[cfg(unix)]
pub fn check_not_writable_by_others(
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), (std::path::PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o7777;
    if writable_by_others(mode) {
        Err((path.to_owned(), mode))
    } else {
        Ok(())
    }
}

#[cfg(not(unix))]
pub fn check_not_writable_by_others(
    _path: &Path,
    _meta: &std::fs::Metadata,
) -> Result<(), (std::path::PathBuf, u32)> {
    Ok(())
}

/// Every seal a plugin's copy gets: its bytes can't be written, it can't grow or shrink, and the
/// seals can't be removed.
#[cfg(target_os = "linux")]
pub fn all_seals() -> rustix::fs::SealFlags {
    use rustix::fs::SealFlags;
    SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL
}

/// An anonymous in-memory file holding exactly `bytes`, sealed against every change, for the
/// dynamic loader to open through `/proc/self/fd`: the bytes that were hashed and checked are
/// the bytes that are mapped, whatever happens to the file on disk afterwards.
#[cfg(target_os = "linux")]
pub fn sealed_copy(name: &str, bytes: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags};
    use std::io::Write;
    let label: String = format!("prp-plugin:{name}")
        .chars()
        .filter(|c| *c != '\0' && *c != '/')
        .take(240)
        .collect();
    let fd = memfd_create(label, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.flush()?;
    seal_while_busy(&file, SEAL_RETRY_PAUSES, |f| {
        fcntl_add_seals(f, all_seals()).map_err(std::io::Error::from)
    })?;
    Ok(file.into())
}

/// How long to wait before each further try when sealing finds the copy busy.
#[cfg(target_os = "linux")]
const SEAL_RETRY_PAUSES: &[std::time::Duration] = &[
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(150),
    std::time::Duration::from_millis(400),
    std::time::Duration::from_millis(1000),
];

/// Seals `file`, trying again after each of `pauses` while the kernel answers `EBUSY`.
///
/// The write seal is refused with `EBUSY` while anything still holds a reference to one of the
/// copy's pages. The kernel waits about 150 ms for such references to go, but under memory
/// pressure (compaction or page migration on a loaded machine) they can outlast that, so a plugin
/// would be rejected for a passing reason. A refused seal adds none, so trying again is safe. Any
/// other error, or `EBUSY` after the last pause, is returned: an unsealed copy is never loaded.
#[cfg(target_os = "linux")]
fn seal_while_busy(
    file: &std::fs::File,
    pauses: &[std::time::Duration],
    mut seal: impl FnMut(&std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut pauses = pauses.iter();
    loop {
        match seal(file) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                match pauses.next() {
                    Some(pause) => std::thread::sleep(*pause),
                    None => {
                        return Err(std::io::Error::new(
                            e.kind(),
                            format!("{e}; the copy was still busy after several tries"),
                        ))
                    }
                }
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared library this test process has loaded (the C library, at least).
    fn some_shared_library() -> Vec<u8> {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let path = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.starts_with('/') && p.contains(".so"))
            .expect("a shared library is mapped");
        std::fs::read(path).expect("read the library")
    }

    #[test]
    fn a_real_shared_library_passes() {
        assert_eq!(check_elf(&some_shared_library()), Ok(()));
    }

    #[test]
    fn a_truncated_library_is_refused_at_every_length() {
        let lib = some_shared_library();
        for keep in [0, 3, 4, 16, 63, 64, 200, 4096, lib.len() / 2, lib.len() - 1] {
            let e = check_elf(&lib[..keep]).expect_err("truncated must fail");
            assert!(
                e.contains("truncated") || e.contains("no ELF magic"),
                "{keep}: {e}"
            );
        }
    }

    #[test]
    fn random_bytes_behind_an_elf_magic_are_refused() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in [16usize, 64, 100, 5000, 70_000] {
            let mut data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            data[..4].copy_from_slice(&elf::ELFMAG);
            // The right class and byte order, so the checks behind them run too.
            data[4] = CLASS;
            data[5] = elf::ELFDATA2LSB;
            assert!(check_elf(&data).is_err(), "{len} random bytes passed");
        }
    }

    #[test]
    fn wrong_type_and_machine_are_named() {
        let lib = some_shared_library();
        let mut exec = lib.clone();
        exec[16] = elf::ET_EXEC as u8;
        exec[17] = 0;
        assert!(check_elf(&exec).unwrap_err().contains("an executable"));
        let mut other = lib;
        let foreign = if MACHINE == Some(elf::EM_AARCH64) {
            elf::EM_X86_64
        } else {
            elf::EM_AARCH64
        };
        other[18..20].copy_from_slice(&foreign.to_le_bytes());
        if MACHINE.is_some() && cfg!(target_endian = "little") {
            assert!(check_elf(&other)
                .unwrap_err()
                .contains("built for another architecture"));
        }
    }

    #[test]
    fn a_segment_past_the_end_is_refused() {
        // The same bytes with the section headers cut off (e_shoff = 0): only the segments are
        // left to catch the truncation.
        let lib = some_shared_library();
        let mut cut = lib[..lib.len() * 3 / 4].to_vec();
        if cfg!(target_pointer_width = "64") && cfg!(target_endian = "little") {
            cut[0x28..0x30].copy_from_slice(&0u64.to_le_bytes());
            cut[0x3c..0x3e].copy_from_slice(&0u16.to_le_bytes());
            let e = check_elf(&cut).unwrap_err();
            assert!(e.starts_with("segment "), "{e}");
        }
    }

    #[test]
    fn group_or_world_writable_modes() {
        assert!(!writable_by_others(0o755));
        assert!(!writable_by_others(0o700));
        assert!(writable_by_others(0o775));
        assert!(writable_by_others(0o757));
        assert!(writable_by_others(0o1777));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_busy_seal_is_tried_again_and_then_holds() {
        let file = sealable_file();
        let pause = std::time::Duration::from_millis(1);
        let mut tries = 0;
        seal_while_busy(&file, &[pause, pause, pause], |f| {
            tries += 1;
            if tries < 3 {
                return Err(rustix::io::Errno::BUSY.into());
            }
            rustix::fs::fcntl_add_seals(f, all_seals()).map_err(std::io::Error::from)
        })
        .expect("sealed on the third try");
        assert_eq!(tries, 3);
        assert_eq!(
            rustix::fs::fcntl_get_seals(&file).expect("seals"),
            all_seals()
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_seal_busy_past_every_pause_or_refused_otherwise_fails() {
        let file = sealable_file();
        let pause = std::time::Duration::from_millis(1);
        let mut tries = 0;
        let e = seal_while_busy(&file, &[pause, pause], |_| {
            tries += 1;
            Err(rustix::io::Errno::BUSY.into())
        })
        .expect_err("always busy");
        assert_eq!(tries, 3, "one try and one after each pause");
        assert!(e.to_string().contains("still busy"), "{e}");

        let mut tries = 0;
        let e = seal_while_busy(&file, &[pause, pause], |_| {
            tries += 1;
            Err(rustix::io::Errno::PERM.into())
        })
        .expect_err("not permitted");
        assert_eq!(tries, 1, "only EBUSY is tried again");
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::PERM.raw_os_error())
        );
    }

    /// An empty in-memory file that accepts seals.
    #[cfg(target_os = "linux")]
    fn sealable_file() -> std::fs::File {
        use rustix::fs::MemfdFlags;
        let fd =
            rustix::fs::memfd_create("prp-test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .expect("memfd");
        std::fs::File::from(fd)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_sealed_copy_holds_the_bytes_and_cannot_change() {
        use std::io::{Read, Seek, Write};
        let fd = sealed_copy("lib/x.so", b"the hashed bytes").expect("memfd");
        assert_eq!(
            rustix::fs::fcntl_get_seals(&fd).expect("seals"),
            all_seals()
        );
        let mut file = std::fs::File::from(fd);
        assert!(file.write_all(b"other").is_err(), "write must be refused");
        assert!(file.set_len(3).is_err(), "shrink must be refused");
        assert!(file.set_len(100).is_err(), "grow must be refused");
        assert!(
            rustix::fs::fcntl_add_seals(&file, rustix::fs::SealFlags::empty()).is_err(),
            "no further seals once sealed"
        );
        // Through a fresh descriptor opened by path, as the dynamic loader opens it.
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        if let Ok(mut reopened) = std::fs::OpenOptions::new().write(true).open(&path) {
            assert!(
                reopened.write_all(b"other").is_err(),
                "a write through a fresh descriptor must be refused"
            );
        }
        file.rewind().expect("seek");
        let mut back = String::new();
        file.read_to_string(&mut back).expect("read");
        assert_eq!(back, "the hashed bytes");
    }
}
