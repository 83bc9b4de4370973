//! How the allocator gives memory back while the process starts.
//!
//! Start-up frees a lot (the OpenAPI data decoded and rebuilt, every informer's first list),
//! and mimalloc purges freed memory only after a delay (1 s by default). In between, new pages
//! reuse the freed slices dirty: a page that uses a few blocks of a reused 64 KiB slice keeps
//! all of it resident, and no later collection can give that back, because the page is in
//! use. Purging at once during start-up leaves the idle server 4–5 MB smaller; most of it is
//! freed in the first second after the API server serves (the first lists), so the window is
//! timed from the start rather than ended when serving begins. After start-up the delay comes
//! back: purging at every free made each large response fault its buffer in again (the
//! 10k-object list took twice as long). A scheduler benchmark that loads the server at once
//! showed no difference beyond the order its runs were made in.

use std::ffi::{c_int, c_long};
use std::time::Duration;

/// How long start-up purges at once: the first lists, the controllers' first sync and the
/// garbage collector's 10 s grace all fall inside.
pub const START_UP: Duration = Duration::from_secs(15);

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t`.
const PURGE_DELAY: c_int = 15;

// Declared here: libmimalloc-sys names these only under its `extended` feature, which pulls in
// one more crate for two declarations of functions the linked library has anyway.
unsafe extern "C" {
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

fn purge_delay() -> c_long {
    // SAFETY: reads one of mimalloc's options, valid at any time.
    unsafe { mi_option_get(PURGE_DELAY) }
}

fn set_purge_delay(value: c_long) {
    // SAFETY: mimalloc reads this option at every purge decision; a plain store of a value.
    unsafe { mi_option_set(PURGE_DELAY, value) }
}

/// Purges at once for `window`, then goes back to the delay in force before. A delay the
/// user chose (`MIMALLOC_PURGE_DELAY`, or its old name) is left alone.
pub fn purge_at_once_while_starting(window: Duration) -> Option<std::thread::JoinHandle<()>> {
    let chosen = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    let delay = purge_delay();
    if chosen || delay <= 0 {
        return None;
    }
    set_purge_delay(0);
    let restore = move || {
        std::thread::sleep(window);
        set_purge_delay(delay);
    };
    match std::thread::Builder::new()
        .name("r8s-start-up".into())
        .stack_size(64 * 1024)
        .spawn(restore)
    {
        Ok(handle) => Some(handle),
        Err(e) => {
            set_purge_delay(delay);
            tracing::warn!(error = %e, "cannot time start-up; memory is purged with delay");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_purges_at_once_then_the_delay_comes_back() {
        let before = purge_delay();
        assert!(before > 0, "mimalloc's default delay is positive");
        let timer = purge_at_once_while_starting(Duration::from_millis(200)).unwrap();
        assert_eq!(purge_delay(), 0);
        timer.join().unwrap();
        assert_eq!(purge_delay(), before);
    }
}
