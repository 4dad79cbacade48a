//! The binary's global allocator without `--features jemalloc`: glibc's malloc, except that
//! blocks of exactly 8 KiB — hyper's read and write buffers, two per connection — are
//! slots of their own pages, cut from 1 MiB regions and kept on a free list.
//!
//! A connection that holds a long response (an event stream) keeps both buffers for its
//! whole life and touches only their first bytes: the response head in one; the read
//! buffer hyper reserves again, while the request is in flight, to notice a client that
//! leaves is not written at all. glibc packs an 8 KiB block between its neighbours, so the
//! pages at both of its ends are resident for the neighbours' sake, and each buffer costs
//! about 4 KiB of RSS it does not use; `posix_memalign` to a page is worse (the fragments it
//! splits off are touched and left). In a slot of its own two pages, a buffer's untouched
//! pages stay unfaulted (docs/ARCHITECTURE.md, "What an open event stream holds").
//! jemalloc's 8 KiB size class is page-aligned already.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::{Mutex, PoisonError};

/// The size served from slots: hyper's `INIT_BUFFER_SIZE`.
const SLOT: usize = 8192;
/// The alignment of a slot.
const PAGE: usize = 4096;
/// A region, cut into slots as they are first needed.
const REGION: usize = 1 << 20;

/// glibc's malloc ([`System`]), with [`SLOT`]-sized blocks from page-aligned slots.
pub struct PageAligned;

/// The slots: freed ones (a list linked through their first word), and the rest of the
/// newest region.
struct Slots {
    free: *mut u8,
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: the pointers are owned by the allocator and only used under the lock.
unsafe impl Send for Slots {}

static SLOTS: Mutex<Slots> = Mutex::new(Slots {
    free: ptr::null_mut(),
    next: ptr::null_mut(),
    end: ptr::null_mut(),
});

fn is_slot(layout: Layout) -> bool {
    layout.size() == SLOT && layout.align() <= PAGE
}

impl PageAligned {
    /// A slot: the last freed, else the next of the region, else the first of a new region
    /// (null when the system has no memory).
    fn take(&self) -> *mut u8 {
        let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
        if !slots.free.is_null() {
            let slot = slots.free;
            // SAFETY: a freed slot, 8 KiB and page-aligned, holds the next one's address.
            slots.free = unsafe { slot.cast::<*mut u8>().read() };
            return slot;
        }
        if slots.next == slots.end {
            // SAFETY: a non-zero size and a power-of-two alignment. The region is never
            // freed: its slots go back to the list.
            let region = unsafe { System.alloc(Layout::from_size_align_unchecked(REGION, PAGE)) };
            if region.is_null() {
                return region;
            }
            slots.next = region;
            // SAFETY: the end of the region just allocated.
            slots.end = unsafe { region.add(REGION) };
        }
        let slot = slots.next;
        // SAFETY: `next` is before `end`, and REGION is a multiple of SLOT.
        slots.next = unsafe { slot.add(SLOT) };
        slot
    }

    /// Puts `slot` back on the list.
    ///
    /// # Safety
    /// `slot` came from [`take`](Self::take) and is no longer used.
    unsafe fn give_back(&self, slot: *mut u8) {
        let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: the slot is ours again, and page-aligned.
        unsafe { slot.cast::<*mut u8>().write(slots.free) };
        slots.free = slot;
    }
}

// SAFETY: a block is either a slot (exactly SLOT bytes, page-aligned, used by one owner
// until it is given back) or comes from `System` with the caller's own layout, and each is
// returned the way it came: `is_slot` decides both by the layout, which the caller passes
// again to `dealloc` and `realloc`.
unsafe impl GlobalAlloc for PageAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_slot(layout) {
            self.take()
        } else {
            // SAFETY: the caller's layout, non-zero as `GlobalAlloc` requires.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_slot(layout) {
            let slot = self.take();
            if !slot.is_null() {
                // SAFETY: the slot is SLOT bytes, and ours.
                unsafe { slot.write_bytes(0, SLOT) };
            }
            slot
        } else {
            // SAFETY: the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_slot(layout) {
            // SAFETY: allocated with the same layout, so a slot.
            unsafe { self.give_back(ptr) }
        } else {
            // SAFETY: `ptr` came from `System` with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` is non-zero and does not overflow when rounded up to the
        // alignment (`GlobalAlloc::realloc`'s contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_slot(layout) && !is_slot(new_layout) {
            // SAFETY: `ptr` came from `System` with `layout`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // To or from a slot: a new block, the bytes copied, the old one returned.
        // SAFETY: a non-zero layout; `ptr` holds `layout.size()` bytes and the new block
        // `new_size`, so the copy stays inside both; `ptr` is returned as it was allocated.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_kib_blocks_are_page_aligned_slots_and_are_reused() {
        let layout = Layout::from_size_align(SLOT, 1).unwrap();
        // SAFETY: a non-zero layout; each block is written within its size and freed once
        // with the layout it was allocated with.
        unsafe {
            let first = PageAligned.alloc(layout);
            assert!(!first.is_null());
            assert_eq!(first as usize % PAGE, 0);
            first.write_bytes(7, SLOT);
            PageAligned.dealloc(first, layout);
            let again = PageAligned.alloc(layout);
            assert_eq!(again as usize % PAGE, 0);
            PageAligned.dealloc(again, layout);
        }
    }

    #[test]
    fn growing_into_and_out_of_a_slot_keeps_the_bytes() {
        let small = Layout::from_size_align(100, 1).unwrap();
        // SAFETY: as above; each realloc's result replaces the block it was given.
        unsafe {
            let block = PageAligned.alloc(small);
            assert!(!block.is_null());
            block.write_bytes(3, 100);
            let slot = PageAligned.realloc(block, small, SLOT);
            assert_eq!(slot as usize % PAGE, 0);
            assert_eq!(*slot.add(99), 3);
            slot.add(100).write_bytes(5, SLOT - 100);
            let grown =
                PageAligned.realloc(slot, Layout::from_size_align(SLOT, 1).unwrap(), 3 * SLOT);
            assert_eq!((*grown.add(99), *grown.add(SLOT - 1)), (3, 5));
            PageAligned.dealloc(grown, Layout::from_size_align(3 * SLOT, 1).unwrap());
        }
    }
}
