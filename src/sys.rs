//! The service's only calls into the C library, each behind a small function: the rest of the
//! crate denies `unsafe`.

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

/// The signals that ask the service to stop: SIGTERM (Kubernetes) and SIGINT (Ctrl-C).
#[cfg(unix)]
fn termination_signals() -> libc::sigset_t {
    #[allow(unsafe_code)]
    // SAFETY: sigemptyset initialises the zeroed set it is given; sigaddset adds valid signal
    // numbers to that initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and in every thread it starts afterwards, so
/// that they wait for `wait_for_termination` instead of ending the process. Call it before the
/// service starts its threads.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn block_termination_signals() -> std::io::Result<()> {
    let set = termination_signals();
    // SAFETY: the set is initialised; no old mask is asked for.
    match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        error => Err(std::io::Error::from_raw_os_error(error)),
    }
}

/// Waits until SIGTERM or SIGINT arrives (they must be blocked in every thread); returns it.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn wait_for_termination() -> std::io::Result<i32> {
    let set = termination_signals();
    let mut signal: libc::c_int = 0;
    // SAFETY: the set is initialised and `signal` is a valid place for the answer.
    match unsafe { libc::sigwait(&set, &mut signal) } {
        0 => Ok(signal),
        error => Err(std::io::Error::from_raw_os_error(error)),
    }
}

#[cfg(not(unix))]
pub fn block_termination_signals() -> std::io::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
pub fn wait_for_termination() -> std::io::Result<i32> {
    loop {
        std::thread::park();
    }
}
