//! Giving the memory a cycle freed back to the system.
//!
//! A first fit (and every `fit_every` refit) reads each series' whole
//! history, and the models' own refits build their fits, on worker
//! threads; glibc's allocator keeps what those threads free in their
//! arenas for later use instead of returning it, and an arena's heap
//! shrinks only from its top, which the long-lived model state allocated
//! after the read pins. With 10,000 series of 7 days at one minute in 10
//! queries, two arenas held 165 MB each of which 4 MB were in use after
//! the fit and 250 cycles, a third of the process' 897 MiB resident;
//! `malloc_trim` gave it back (897 → 595 MiB, README "Benchmarks"). No
//! crate wraps the call, so it is made here.

/// Returns whole free pages of the heap to the operating system (glibc's
/// `malloc_trim`); nothing elsewhere, where the allocator decides alone.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointers and has no preconditions; it
    // locks each arena while it walks it, so other threads may allocate
    // and free meanwhile.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident memory of this process, in KiB.
    fn resident_kib() -> u64 {
        crate::cli::bench_engine::status_kib("VmRSS").expect("VmRSS in /proc/self/status")
    }

    /// Memory freed between blocks still in use stays resident until
    /// released: 256 MiB in 4 KiB blocks, every 64th kept. Measured from
    /// while all are in use, since other tests' engine cycles may release
    /// the freed blocks first (the memory must be gone all the same).
    #[test]
    fn gives_back_memory_freed_between_live_blocks() {
        let handle = std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..65_536).map(|i| vec![i as u8; 4096]).collect();
            let before = resident_kib();
            let kept: Vec<Vec<u8>> = blocks
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| i % 64 == 63)
                .map(|(_, b)| std::mem::take(b))
                .collect();
            drop(blocks);
            release_free();
            let after = resident_kib();
            assert_eq!(kept.len(), 1024);
            assert!(kept.iter().all(|b| b.len() == 4096));
            (before, after)
        });
        let (before, after) = handle.join().expect("allocating thread");
        // 252 MiB were freed; at least 128 MiB of them must go.
        assert!(
            before >= after + 128 * 1024,
            "resident {before} KiB before, {after} KiB after"
        );
    }
}
