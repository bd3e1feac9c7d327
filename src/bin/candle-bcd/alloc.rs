//! The process allocator of the command-line tool and the benchmark (feature `mimalloc`, on by
//! default): mimalloc, told to keep freed memory for reuse instead of returning it to the OS.
//!
//! A sweep drops and allocates about ten `N × d` buffers (the new `U_i`, `V_i`, `Z_i`). With
//! the system allocator each is a fresh `mmap`, so every page is faulted in and zeroed by the
//! kernel again, sweep after sweep (1.2 million page faults and ~4.2 s of system time in a
//! three-sweep 20,000-sample run of the paper network). Reusing freed memory removes both:
//! sweeps ran 7–9 % faster for 6 % more peak memory (BENCHMARKS.md). The library leaves the
//! allocator to the application.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (`mimalloc.h`, the 16th entry,
/// after the five deprecated slots kept for ABI stability); `libmimalloc-sys` has no constant
/// for it. The test below checks the index against the option's documented default.
#[cfg(feature = "mimalloc")]
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped for reuse (purge delay −1: never purge). Call once, first thing in
/// `main`; without the `mimalloc` feature it does nothing.
pub fn keep_freed_memory() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it is
    // thread-safe and valid at any time, for any option index below `_mi_option_last`.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    #[test]
    fn purge_delay_is_the_option_set() {
        // SAFETY: reading an option is always valid.
        let default = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        // options.c of the vendored mimalloc v3: purge_delay defaults to 1000 ms, and no
        // other option has that default, so this pins the index.
        assert_eq!(
            default,
            1000,
            "index {} is not mi_option_purge_delay",
            super::PURGE_DELAY
        );
        super::keep_freed_memory();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) },
            -1
        );
    }
}
