//! A raw output pointer that parallel tasks share, each writing its own
//! part of the buffer (tiles, blocks of rows, channels).

/// Raw pointer to a buffer whose tiles are written by disjoint tasks.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: every user hands each task its own part of the output (tiles
// partition it), so no two threads touch the same element.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}
