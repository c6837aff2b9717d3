//! The process allocator: mimalloc, except that very large allocations are mapped lazily
//! (`MAP_NORESERVE`) instead of being refused.
//!
//! Why mimalloc: on the 128-producer cluster benchmark glibc's malloc and free (with their
//! chunk consolidation) took ~13 % of the brokers' CPU; with mimalloc the CPU per record fell to
//! about 0.87 of it (docs/benchmarks.md, "The three-node cluster").
//!
//! Why: `kafka-protocol` 0.18 pre-allocates arrays from a length read off the wire
//! (`Vec::with_capacity(n)` before any element is decoded; upstream PRs #152/#161/#200 are not
//! merged). A 20-byte request can declare two billion elements; the system allocator refuses the
//! tens of gigabytes and Rust aborts the whole process — one client would kill the broker. Mapped
//! lazily, such a reservation costs only address space: decoding then fails on the missing bytes
//! and the mapping is released untouched. Pages are committed only as real elements are decoded,
//! and those are bounded by the frame size limit.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;

/// Allocations at least this large are mapped lazily.
const LAZY_BYTES_MIN: usize = 256 << 20;
const PAGE_BYTES: usize = 4096;

pub struct LazyLargeAlloc;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_BYTES_MIN && layout.align() <= PAGE_BYTES
}

fn mapped_len(size: usize) -> usize {
    size.div_ceil(PAGE_BYTES) * PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint; the kernel picks the place.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            mapped_len(size),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every pointer handed out is valid for `layout`; lazily mapped blocks are page aligned
// (≥ the required alignment, checked in `is_lazy`) and zero-filled by the kernel, and are
// returned with `munmap` of the same length; all others go to and come back from `MiMalloc`.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            unsafe {
                libc::munmap(ptr.cast(), mapped_len(layout.size()));
            }
        } else {
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
            return unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Give the memory the allocator keeps but no longer uses back to the operating system.
///
/// Why: after a burst of thousands of connections, an allocator keeps the pages their buffers
/// and tasks used in its per-thread heaps (measured with glibc: live heap 3 MB, resident 110 MB,
/// still growing slowly from burst to burst — fragmentation, not a leak). The broker calls this
/// when most of a burst of connections has closed: mimalloc's `mi_collect(force)` frees what
/// its heaps hold unused.
pub fn release_free_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; it may be called from any thread.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// Turn transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`, checked by
/// the kernel at every fault, so also for the regions mimalloc has already advised).
///
/// Why: mimalloc asks for huge pages for its arenas, and every frame buffer of a produce
/// request then first-touches a 2 MiB page the kernel zeroes whole — ~20 % of the broker's CPU
/// with one librdkafka producer at 1 KiB (`clear_page_erms` under `do_huge_pmd_anonymous_page`,
/// docs/benchmarks.md). The broker's buffers are streamed through once; they gain nothing from
/// fewer TLB entries, and huge pages would also hold more memory than the budget counts.
/// Returns the error if the kernel refused (the broker runs on either way).
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_reservation_does_not_abort_and_small_ones_work() {
        let v: Vec<[u8; 64]> = Vec::with_capacity(1 << 30); // 64 GiB of address space
        assert!(v.capacity() >= 1 << 30);
        drop(v);
        let mut grow: Vec<u8> = Vec::new();
        for i in 0..(300usize << 20) / 4096 {
            grow.extend_from_slice(&[i as u8; 4096]); // crosses the lazy threshold by realloc
        }
        assert_eq!(grow[(299 << 20) + 5], ((299usize << 20) / 4096) as u8);
    }
}
