//! The service's only two calls into the C library, each behind a small function: the rest
//! of the crate forbids `unsafe`.

use std::net::TcpListener;

/// Sets `TCP_NODELAY` on a listening socket; Linux passes it on to every accepted connection.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn set_no_delay(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is a TCP socket owned by `listener`, and the value is a c_int
    // of the length given, as setsockopt(2) asks.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
pub fn set_no_delay(_: &TcpListener) -> std::io::Result<()> {
    Ok(())
}

/// glibc gives each thread that allocates an arena of its own (up to eight per core), and what
/// is freed in one arena is not reused by another: with 16 workers and 5,000 runtimes the
/// service kept a third more memory than it used. Two arenas serve the few cores it runs on.
/// (The static musl build has a single heap.) Call it before any other thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt sets an allocator parameter; the caller runs before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas() {}
