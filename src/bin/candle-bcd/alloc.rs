//! The process allocator of the command-line tool and the benchmark (feature `mimalloc`, on by
//! default): mimalloc, told either to keep freed memory for reuse (the default: speed) or to
//! return it to the OS at once (`--low-memory`: memory).
//!
//! A sweep drops and allocates about ten `N × d` buffers (the new `U_i`, `V_i`, `Z_i`). With
//! the system allocator each is a fresh `mmap`, so every page is faulted in and zeroed by the
//! kernel again, sweep after sweep (1.2 million page faults and ~4.2 s of system time in a
//! three-sweep 20,000-sample run of the paper network). Reusing freed memory removes nearly all
//! the faults (1,300 left) and much of the system time (1.6–3.5 s): sweeps ran about 6 % faster,
//! but the freed buffers stay resident, which raised the peak of a paper-size run by 10 %
//! (products kept) to 17 % (`--low-memory`). So `--low-memory` purges freed memory at once
//! instead, which peaked 6 % below the system allocator at 20,000 samples (BENCHMARKS.md). The
//! library leaves the allocator to the application.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (`mimalloc.h`, the 16th entry,
/// after the five deprecated slots kept for ABI stability); `libmimalloc-sys` has no constant
/// for it. The test below checks the index against the option's documented default.
#[cfg(feature = "mimalloc")]
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `reuse = true`: keep freed memory mapped for reuse (purge delay −1, never purge);
/// `false`: return it to the OS at once (purge delay 0). Can be called at any time; without the
/// `mimalloc` feature it does nothing.
pub fn reuse_freed_memory(reuse: bool) {
    #[cfg(feature = "mimalloc")]
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it is
    // thread-safe and valid at any time, for any option index below `_mi_option_last`.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, if reuse { -1 } else { 0 });
    }
    #[cfg(not(feature = "mimalloc"))]
    let _ = reuse;
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
        super::reuse_freed_memory(false);
        // SAFETY: as above.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) },
            0
        );
        super::reuse_freed_memory(true);
        // SAFETY: as above.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) },
            -1
        );
    }
}
