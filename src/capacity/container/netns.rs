//! Named network namespaces, made natively (no `ip netns`): a short-lived thread unshares a new
//! network namespace and bind-mounts its `/proc/thread-self/ns/net` on a file, which keeps the
//! namespace alive after the thread ends; runc joins it by that path, the CNI plugins wire it
//! by that path. Removing it is unmounting and deleting the file.
//!
//! Architecture invariant: a namespace lives exactly as long as its file is a mount; nothing
//! else holds one open.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// Makes a new network namespace kept at `path` (a file that must not exist yet; its parent
/// must).
pub fn create(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let target = c_path(path)?;
    // The namespace of a thread that ends is freed unless something holds it: the bind mount.
    // A thread of its own, since unshare changes the calling thread's namespace.
    let made = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> io::Result<()> {
            // SAFETY: unshare has no memory preconditions; it moves only this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let source = c_path(Path::new("/proc/thread-self/ns/net"))?;
            // SAFETY: both are valid NUL-terminated strings that outlive the call.
            let rc = unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Unmounts and deletes the namespace at `path`; the kernel frees it once nothing runs in it.
/// A path that is gone already is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    let target = c_path(path)?;
    // SAFETY: a valid NUL-terminated string; a path that is not a mount point only fails.
    unsafe {
        libc::umount2(target.as_ptr(), libc::MNT_DETACH);
    }
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Whether `path` is a network namespace (a bind mount of one), not a plain file.
pub fn is_namespace(path: &Path) -> bool {
    // nsfs files have the magic of NSFS_MAGIC on statfs.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(target) = c_path(path) else {
        return false;
    };
    // SAFETY: `stat` is written by the call; `target` is a valid NUL-terminated string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(target.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type as i64 == NSFS_MAGIC
}

/// Makes `command` run inside the namespace at `path` (`setns` in the child before exec).
pub fn run_inside(command: &mut std::process::Command, path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let namespace = std::fs::File::open(path)?;
    // SAFETY: between fork and exec the closure only calls setns, which is async-signal-safe,
    // on a descriptor the parent keeps open (moved into the closure).
    unsafe {
        command.pre_exec(move || {
            if libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}
