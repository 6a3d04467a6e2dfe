//! Readings of this process's memory (Linux), for benchmark reports, and
//! the allocator tuning that tensor work needs.

/// Peak resident set size of this process in MiB (Linux only).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the process's peak resident set size to its current size
/// (Linux `clear_refs` 5), so that [`peak_rss_mib`] then measures from
/// now. Returns whether the reset worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Tunes glibc's allocator for tensor work: buffers of every size come
/// from the heap rather than fresh mappings, and freed memory is kept for
/// reuse instead of being returned to the kernel at once. Tensor code
/// allocates and frees megabytes per operation; without this, page faults
/// and page clearing take over half of the CNN's training time. glibc maps
/// anything over 32 MiB afresh whatever the threshold says, so mappings
/// are turned off altogether: the SD 1.5 VAE decode, whose activations are
/// 134 MB each, spent 17% of its time clearing new pages and is 20% faster
/// without them (docs/benchmarks.md). Call it first thing in `main`
/// (the binary, the benches).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; callers
    // run it before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
