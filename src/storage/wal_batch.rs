//! A SQLite VFS shim that gathers a connection's WAL appends into one write
//! per commit.
//!
//! SQLite writes a commit to the WAL as two `pwrite`s per page (the 24-byte
//! frame header, then the page). The kernel's buffered-write path costs about
//! a microsecond per call, so an ingest commit of ~15 pages spent ~35 µs in
//! `pwrite` alone; one write of the same bytes costs ~5 µs (measured on this
//! machine kind, see BENCHMARKS.md). This shim wraps the default (unix) VFS:
//! files other than the WAL pass straight through (the unix file object sits
//! at the start of ours, with its own methods); for the WAL, contiguous
//! appends collect in a buffer that is written, in one call, before any other
//! operation on the file (read, sync, truncate, size, file control, close,
//! or a write elsewhere).
//!
//! **Why this is safe only with `synchronous=FULL`.** Other connections read
//! WAL frames once the WAL index (shared memory) says they are committed.
//! Under `FULL`, SQLite syncs the WAL before it updates the WAL index, and the
//! sync flushes this buffer first, so every frame another connection can see
//! is in the file. Under `NORMAL` there is no sync at commit, so a buffered
//! frame could be published before it is written: [`Storage`] opens a
//! connection with this VFS only when it runs `FULL` (the ingest writer).
//! The order of all operations on the file is unchanged; writes are only
//! delayed until the next operation that could observe them.
//!
//! [`Storage`]: super::Storage

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open this VFS by.
pub const VFS_NAME: &CStr = c"energyload-wal-batch";

/// Appends gathered beyond this are written out first (a group of thousands
/// of messages need not sit in memory twice).
const MAX_BUFFERED: usize = 4 << 20;

/// Bytes per write to the unix VFS: its `seekAndWriteFd` masks the length
/// with `0x1ffff`, so a single call must stay below 128 KiB.
const MAX_WRITE: usize = 124 << 10;

/// Our file object. SQLite allocates `szOsFile` bytes; the underlying VFS's
/// file object lives `REAL_OFFSET` bytes in.
#[repr(C)]
struct BatchFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    buffered: Vec<u8>,
    /// File offset of `buffered[0]`.
    start: i64,
}

const REAL_OFFSET: usize = std::mem::size_of::<BatchFile>().next_multiple_of(16);

/// The wrapped VFS, set once by [`register`].
struct Underlying(*mut ffi::sqlite3_vfs);
// SAFETY: the pointer is to SQLite's static default VFS, valid for the
// process's lifetime and safe to use from any thread.
unsafe impl Send for Underlying {}
unsafe impl Sync for Underlying {}

static REGISTERED: OnceLock<Result<Underlying, c_int>> = OnceLock::new();

/// Registers the VFS (once; later calls return the first result). Fails
/// only if SQLite has no default VFS or refuses the registration.
pub fn register() -> Result<(), c_int> {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: plain SQLite API calls; the VFS struct is leaked, so it
            // outlives every connection, as SQLite requires.
            unsafe {
                let rc = ffi::sqlite3_initialize();
                if rc != ffi::SQLITE_OK {
                    return Err(rc);
                }
                let real = ffi::sqlite3_vfs_find(ptr::null());
                if real.is_null() {
                    return Err(ffi::SQLITE_ERROR);
                }
                let mut vfs = ptr::read(real);
                vfs.szOsFile =
                    c_int::try_from(REAL_OFFSET).map_err(|_| ffi::SQLITE_ERROR)? + (*real).szOsFile;
                vfs.pNext = ptr::null_mut();
                vfs.zName = VFS_NAME.as_ptr();
                vfs.xOpen = Some(x_open);
                let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0);
                if rc != ffi::SQLITE_OK {
                    return Err(rc);
                }
                Ok(Underlying(real))
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(|&rc| rc)
}

fn underlying() -> *mut ffi::sqlite3_vfs {
    match REGISTERED.get() {
        Some(Ok(u)) => u.0,
        _ => ptr::null_mut(),
    }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = underlying();
    // SAFETY: `real_vfs` is the registered default VFS; `file` points to
    // `szOsFile` writable bytes, enough for our struct followed by the
    // underlying file object, or for the underlying object alone.
    unsafe {
        let Some(open) = (*real_vfs).xOpen else { return ffi::SQLITE_ERROR };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return open(real_vfs, name, file, flags, out_flags);
        }
        let real = file.cast::<u8>().add(REAL_OFFSET).cast::<ffi::sqlite3_file>();
        let rc = open(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if let Some(close) = (*real).pMethods.as_ref().and_then(|m| m.xClose) {
                close(real);
            }
            (*file).pMethods = ptr::null();
            return rc;
        }
        ptr::write(
            file.cast::<BatchFile>(),
            BatchFile {
                base: ffi::sqlite3_file { pMethods: &BATCH_METHODS },
                real,
                buffered: Vec::new(),
                start: 0,
            },
        );
        ffi::SQLITE_OK
    }
}

/// The batch file behind `f`, and the underlying file's methods.
///
/// # Safety
/// `f` must be a file opened by [`x_open`] with [`BATCH_METHODS`].
unsafe fn parts<'a>(f: *mut ffi::sqlite3_file) -> (&'a mut BatchFile, &'a ffi::sqlite3_io_methods) {
    // SAFETY: per the contract above; the underlying file stays open (and
    // its methods valid) until our xClose.
    unsafe {
        let b = &mut *f.cast::<BatchFile>();
        let m = &*(*b.real).pMethods;
        (b, m)
    }
}

/// Writes the gathered appends: one call per `MAX_WRITE` bytes.
fn flush(b: &mut BatchFile, m: &ffi::sqlite3_io_methods) -> c_int {
    let Some(write) = m.xWrite else { return ffi::SQLITE_IOERR_WRITE };
    let mut rc = ffi::SQLITE_OK;
    let mut offset = b.start;
    for chunk in b.buffered.chunks(MAX_WRITE) {
        // SAFETY: `real` is open; `chunk` is valid for its length, which
        // fits in a c_int (MAX_WRITE).
        rc = unsafe { write(b.real, chunk.as_ptr().cast(), chunk.len() as c_int, offset) };
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    b.buffered.clear();
    rc
}

/// Flushes, then runs `op` on the underlying file.
///
/// # Safety
/// As for [`parts`].
unsafe fn after_flush(
    f: *mut ffi::sqlite3_file,
    op: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    // SAFETY: per the contract.
    let (b, m) = unsafe { parts(f) };
    let rc = flush(b, m);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    op(b.real, m)
}

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls xClose once, on a file we opened; the struct is
    // dropped here and never used again.
    unsafe {
        let (b, m) = parts(f);
        let flushed = flush(b, m);
        let closed = m.xClose.map_or(ffi::SQLITE_OK, |close| close(b.real));
        ptr::drop_in_place(f.cast::<BatchFile>());
        (*f).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    }
}

unsafe extern "C" fn x_read(f: *mut ffi::sqlite3_file, buf: *mut c_void, amt: c_int, off: i64) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { after_flush(f, |r, m| m.xRead.map_or(ffi::SQLITE_IOERR_READ, |read| read(r, buf, amt, off))) }
}

unsafe extern "C" fn x_write(f: *mut ffi::sqlite3_file, data: *const c_void, amt: c_int, off: i64) -> c_int {
    // SAFETY: SQLite passes `amt` readable bytes at `data`.
    unsafe {
        let (b, m) = parts(f);
        let Ok(len) = usize::try_from(amt) else { return ffi::SQLITE_IOERR_WRITE };
        let appends = !b.buffered.is_empty()
            && off == b.start + b.buffered.len() as i64
            && b.buffered.len() + len <= MAX_BUFFERED;
        if !appends {
            let rc = flush(b, m);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            b.start = off;
        }
        b.buffered.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: forwarded.
    unsafe { after_flush(f, |r, m| m.xTruncate.map_or(ffi::SQLITE_IOERR_TRUNCATE, |t| t(r, size))) }
}

unsafe extern "C" fn x_sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { after_flush(f, |r, m| m.xSync.map_or(ffi::SQLITE_IOERR_FSYNC, |s| s(r, flags))) }
}

unsafe extern "C" fn x_file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: forwarded.
    unsafe { after_flush(f, |r, m| m.xFileSize.map_or(ffi::SQLITE_IOERR_FSTAT, |s| s(r, size))) }
}

unsafe extern "C" fn x_file_control(f: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: forwarded.
    unsafe { after_flush(f, |r, m| m.xFileControl.map_or(ffi::SQLITE_NOTFOUND, |c| c(r, op, arg))) }
}

unsafe extern "C" fn x_lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        m.xLock.map_or(ffi::SQLITE_OK, |l| l(b.real, level))
    }
}

unsafe extern "C" fn x_unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        m.xUnlock.map_or(ffi::SQLITE_OK, |u| u(b.real, level))
    }
}

unsafe extern "C" fn x_check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        match m.xCheckReservedLock {
            Some(c) => c(b.real, out),
            None => {
                *out = 0;
                ffi::SQLITE_OK
            }
        }
    }
}

unsafe extern "C" fn x_sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        m.xSectorSize.map_or(4096, |s| s(b.real))
    }
}

unsafe extern "C" fn x_device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        m.xDeviceCharacteristics.map_or(0, |d| d(b.real))
    }
}

unsafe extern "C" fn x_shm_map(
    f: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded (SQLite maps the WAL index through the database
    // file, not the WAL; kept for completeness).
    unsafe {
        let (b, m) = parts(f);
        m.xShmMap.map_or(ffi::SQLITE_IOERR_SHMMAP, |s| s(b.real, page, size, extend, out))
    }
}

unsafe extern "C" fn x_shm_lock(f: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        m.xShmLock.map_or(ffi::SQLITE_IOERR_SHMLOCK, |s| s(b.real, offset, n, flags))
    }
}

unsafe extern "C" fn x_shm_barrier(f: *mut ffi::sqlite3_file) {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        if let Some(s) = m.xShmBarrier {
            s(b.real);
        }
    }
}

unsafe extern "C" fn x_shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        m.xShmUnmap.map_or(ffi::SQLITE_OK, |s| s(b.real, delete))
    }
}

unsafe extern "C" fn x_fetch(
    f: *mut ffi::sqlite3_file,
    off: i64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded after a flush (a mapping must see written bytes).
    unsafe {
        after_flush(f, |r, m| match m.xFetch {
            Some(fetch) => fetch(r, off, amt, out),
            None => {
                *out = ptr::null_mut();
                ffi::SQLITE_OK
            }
        })
    }
}

unsafe extern "C" fn x_unfetch(f: *mut ffi::sqlite3_file, off: i64, p: *mut c_void) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let (b, m) = parts(f);
        m.xUnfetch.map_or(ffi::SQLITE_OK, |u| u(b.real, off, p))
    }
}

static BATCH_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

#[cfg(test)]
mod tests;
