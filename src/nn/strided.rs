//! Single-threaded matrix products over strided f32 views, for kernels
//! that run one product per parallel task (attention blocks, Winograd
//! positions, convolution tiles).

/// A read-only f32 matrix in memory: element `(i, j)` is at
/// `ptr + i * row_stride + j * col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    ptr: *const f32,
    row_stride: usize,
    col_stride: usize,
}

impl View {
    /// Row-major rows of `row_stride` values starting at `ptr`.
    pub(crate) fn rows(ptr: *const f32, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of row-major rows of `row_stride` values at `ptr`:
    /// element `(i, j)` is the stored `(j, i)`.
    pub(crate) fn transposed(ptr: *const f32, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride: 1,
            col_stride: row_stride,
        }
    }
}

/// `dst = scale * lhs * rhs`, or `dst += scale * lhs * rhs` when
/// `accumulate`, for an `m x k` by `k x n` product on the calling thread;
/// `dst` is row-major with rows of `dst_row_stride` values.
///
/// # Safety
/// Every element the three views and `dst` address must be inside live
/// allocations, and no other thread may touch those of `dst` meanwhile.
pub(crate) unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_row_stride: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    scale: f32,
) {
    // SAFETY: the caller guarantees the bounds and exclusive access.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.ptr,
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}
