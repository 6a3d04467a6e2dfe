//! 3 x 3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3)
//! for f32 on the CPU.
//!
//! Each 2 x 2 block of outputs comes from a 4 x 4 block of input through
//! 16 products per channel pair instead of 36: the kernel `g` becomes
//! `U = G g G^T`, every input tile `d` becomes `V = B^T d B` (additions
//! only), the 16 positions of `U` and `V` multiply as 16 independent matrix
//! products over channels, `M[xi] = U[xi] [out x in] * V[xi] [in x tiles]`,
//! and `Y = A^T M A` (additions only) gives the outputs. The matrix
//! products, which carry nearly all the arithmetic, shrink 2.25 times.
//!
//! Tiles are taken in blocks sized so that the transformed input and the
//! products stay a few MiB; within a block the transforms run in parallel
//! over channels and the 16 products in parallel with each other. In f32
//! the result differs from direct convolution by a few units in the last
//! place of the sums (the transforms only add, halve and subtract).

use rayon::prelude::*;

use super::disjoint::SharedOut;
use super::strided::{matmul, View};

/// Winograd positions: the transformed tile is 4 x 4.
const XI: usize = 16;
/// Transformed values of one block (input or product), in f32 elements.
const BLOCK_FLOATS: usize = 1 << 20;

/// Shape of one convolution: input `[b, c, h, w]`, kernel `[o, c, 3, 3]`,
/// zero padding `pad` (0..=2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv3x3 {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub pad: usize,
}

impl Conv3x3 {
    fn out_h(&self) -> usize {
        self.h + 2 * self.pad - 2
    }
    fn out_w(&self) -> usize {
        self.w + 2 * self.pad - 2
    }
    /// Output tiles per row and per column.
    fn tiles_hw(&self) -> (usize, usize) {
        (self.out_h().div_ceil(2), self.out_w().div_ceil(2))
    }
    /// Tiles per block: enough columns to amortise the packing of the
    /// transformed kernel in every product, few enough to stay in memory
    /// budget.
    fn block_tiles(&self) -> usize {
        (BLOCK_FLOATS / (XI * self.c.max(self.o))).clamp(128, 1024)
    }
}

/// `(image, tile row, tile column)` of a tile in row-major order over
/// `[images, th, tw]`, stepped without divisions.
struct TilePos {
    at: (usize, usize, usize),
    th: usize,
    tw: usize,
}

impl TilePos {
    fn new(t0: usize, th: usize, tw: usize) -> Self {
        let r = t0 % (th * tw);
        Self {
            at: (t0 / (th * tw), r / tw, r % tw),
            th,
            tw,
        }
    }

    /// Moves `k` tiles on, `k` no more than what is left of the row.
    fn advance(&mut self, k: usize) {
        let (b, y, x) = &mut self.at;
        *x += k;
        if *x == self.tw {
            *x = 0;
            *y += 1;
            if *y == self.th {
                *y = 0;
                *b += 1;
            }
        }
    }
}

/// Tiles that the input and output transforms take side by side.
const LANES: usize = 8;

/// `U = G g G^T` for every (out, in) pair, laid out `[o][xi][c]`, one
/// output channel per task (each writes 16 runs of `c` in order).
fn transform_kernel(wt: &[f32], o: usize, c: usize) -> Vec<f32> {
    let mut u = vec![0f32; o * XI * c];
    u.par_chunks_mut(XI * c).enumerate().for_each(|(oi, uo)| {
        for ci in 0..c {
            let g = &wt[(oi * c + ci) * 9..(oi * c + ci + 1) * 9];
            // G g: 4 rows of 3
            let mut gg = [[0f32; 3]; 4];
            for j in 0..3 {
                let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = g0;
                gg[1][j] = 0.5 * (g0 + g1 + g2);
                gg[2][j] = 0.5 * (g0 - g1 + g2);
                gg[3][j] = g2;
            }
            for (i, r) in gg.iter().enumerate() {
                let row = [
                    r[0],
                    0.5 * (r[0] + r[1] + r[2]),
                    0.5 * (r[0] - r[1] + r[2]),
                    r[2],
                ];
                for (j, v) in row.into_iter().enumerate() {
                    uo[(i * 4 + j) * c + ci] = v;
                }
            }
        }
    });
    u
}

/// `B^T d B` of one 4 x 4 input tile, in place of `d`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // column j of all four rows
fn transform_input_tile(d: &mut [[f32; 4]; 4]) {
    for j in 0..4 {
        let (d0, d1, d2, d3) = (d[0][j], d[1][j], d[2][j], d[3][j]);
        d[0][j] = d0 - d2;
        d[1][j] = d1 + d2;
        d[2][j] = d2 - d1;
        d[3][j] = d1 - d3;
    }
    for r in d.iter_mut() {
        let [r0, r1, r2, r3] = *r;
        *r = [r0 - r2, r1 + r2, r2 - r1, r1 - r3];
    }
}

/// The input transform of `LANES` side-by-side tiles whose input window
/// (4 rows of `2 * LANES + 2`) starts at `(y0, x0)` of `plane` (row
/// length `w`), written to `vc[xi * tb + k]` for tile `k`.
#[inline(always)]
fn input_lanes(plane: &[f32], w: usize, (y0, x0): (usize, usize), vc: &mut [f32], tb: usize) {
    let mut d = [[[0f32; LANES]; 4]; 4];
    for (i, di) in d.iter_mut().enumerate() {
        let row = &plane[(y0 + i) * w + x0..][..2 * LANES + 2];
        for (j, dij) in di.iter_mut().enumerate() {
            for (k, e) in dij.iter_mut().enumerate() {
                *e = row[2 * k + j];
            }
        }
    }
    let mut e = [[[0f32; LANES]; 4]; 4];
    for j in 0..4 {
        for k in 0..LANES {
            let (a0, a1, a2, a3) = (d[0][j][k], d[1][j][k], d[2][j][k], d[3][j][k]);
            e[0][j][k] = a0 - a2;
            e[1][j][k] = a1 + a2;
            e[2][j][k] = a2 - a1;
            e[3][j][k] = a1 - a3;
        }
    }
    for (i, ei) in e.iter().enumerate() {
        let mut out = [[0f32; LANES]; 4];
        for k in 0..LANES {
            let (r0, r1, r2, r3) = (ei[0][k], ei[1][k], ei[2][k], ei[3][k]);
            out[0][k] = r0 - r2;
            out[1][k] = r1 + r2;
            out[2][k] = r2 - r1;
            out[3][k] = r1 - r3;
        }
        for (j, o) in out.iter().enumerate() {
            vc[(i * 4 + j) * tb..][..LANES].copy_from_slice(o);
        }
    }
}

/// The output transform of `LANES` side-by-side tiles, read from
/// `mo[xi * tb + k]`, into two output rows of `2 * LANES` values.
#[inline(always)]
fn output_lanes(mo: &[f32], tb: usize, rows: [&mut [f32]; 2]) {
    let mut mm = [[0f32; LANES]; XI];
    for (xi, r) in mm.iter_mut().enumerate() {
        r.copy_from_slice(&mo[xi * tb..][..LANES]);
    }
    for (i, row) in rows.into_iter().enumerate() {
        let mut s = [[0f32; LANES]; 4];
        for (j, sj) in s.iter_mut().enumerate() {
            for (k, e) in sj.iter_mut().enumerate() {
                *e = if i == 0 {
                    mm[j][k] + mm[4 + j][k] + mm[8 + j][k]
                } else {
                    mm[4 + j][k] - mm[8 + j][k] - mm[12 + j][k]
                };
            }
        }
        for k in 0..LANES {
            row[2 * k] = s[0][k] + s[1][k] + s[2][k];
            row[2 * k + 1] = s[1][k] - s[2][k] - s[3][k];
        }
    }
}

/// The input transform of channel `ci`'s tiles `t0..t0 + n` (of a block
/// of `tb`) into `vc` (`[xi][tile]`).
#[inline(always)]
fn input_channel(
    g: Conv3x3,
    x: &[f32],
    ci: usize,
    (t0, n, tb): (usize, usize, usize),
    vc: &mut [f32],
) {
    let (th, tw) = g.tiles_hw();
    let pad = g.pad as isize;
    let mut pos = TilePos::new(t0, th, tw);
    let mut t = 0;
    while t < n {
        let (bi, ty, tx) = pos.at;
        let (y0, x0) = ((ty * 2) as isize - pad, (tx * 2) as isize - pad);
        let plane = &x[(bi * g.c + ci) * g.h * g.w..(bi * g.c + ci + 1) * g.h * g.w];
        let inside = |cols: usize| {
            y0 >= 0 && x0 >= 0 && (y0 + 4) as usize <= g.h && x0 as usize + cols <= g.w
        };
        if n - t >= LANES && tw - tx >= LANES && inside(2 * LANES + 2) {
            input_lanes(plane, g.w, (y0 as usize, x0 as usize), &mut vc[t..], tb);
            t += LANES;
            pos.advance(LANES);
            continue;
        }
        let mut d = [[0f32; 4]; 4];
        for (i, row) in d.iter_mut().enumerate() {
            let y = y0 + i as isize;
            if y < 0 || y as usize >= g.h {
                continue;
            }
            for (j, e) in row.iter_mut().enumerate() {
                let xx = x0 + j as isize;
                if xx >= 0 && (xx as usize) < g.w {
                    *e = plane[y as usize * g.w + xx as usize];
                }
            }
        }
        transform_input_tile(&mut d);
        for (xi, e) in d.iter().flatten().enumerate() {
            vc[xi * tb + t] = *e;
        }
        t += 1;
        pos.advance(1);
    }
}

/// The output transform of output channel `oi`'s tiles `t0..t0 + n` (of a
/// block of `tb`) from `mo` (`[xi][tile]`) into the output.
#[inline(always)]
fn output_channel(
    g: Conv3x3,
    mo: &[f32],
    oi: usize,
    (t0, n, tb): (usize, usize, usize),
    dst: SharedOut,
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (th, tw) = g.tiles_hw();
    let mut pos = TilePos::new(t0, th, tw);
    let mut t = 0;
    while t < n {
        let (bi, ty, tx) = pos.at;
        let (y0, x0) = (ty * 2, tx * 2);
        let base = (bi * g.o + oi) * oh * ow;
        if n - t >= LANES && tw - tx >= LANES && y0 + 2 <= oh && x0 + 2 * LANES <= ow {
            // SAFETY: output channel oi of image bi is written by
            // this task alone (tasks partition the output
            // channels); both runs of 2 * LANES values lie inside
            // rows y0 and y0 + 1 of its [oh, ow] plane.
            let rows = unsafe {
                [
                    std::slice::from_raw_parts_mut(dst.ptr().add(base + y0 * ow + x0), 2 * LANES),
                    std::slice::from_raw_parts_mut(
                        dst.ptr().add(base + (y0 + 1) * ow + x0),
                        2 * LANES,
                    ),
                ]
            };
            output_lanes(&mo[t..], tb, rows);
            t += LANES;
            pos.advance(LANES);
            continue;
        }
        let at = |xi: usize| mo[xi * tb + t];
        // A^T M: 2 rows of 4
        let mut s = [[0f32; 4]; 2];
        #[allow(clippy::needless_range_loop)] // column j of both rows
        for j in 0..4 {
            let (m0, m1, m2, m3) = (at(j), at(4 + j), at(8 + j), at(12 + j));
            s[0][j] = m0 + m1 + m2;
            s[1][j] = m1 - m2 - m3;
        }
        for (i, r) in s.iter().enumerate() {
            let y = y0 + i;
            if y >= oh {
                break;
            }
            let pair = [r[0] + r[1] + r[2], r[1] - r[2] - r[3]];
            for (j, val) in pair.into_iter().enumerate() {
                if x0 + j < ow {
                    // SAFETY: as above, one element inside the
                    // plane of this task's output channel.
                    unsafe { *dst.ptr().add(base + y * ow + x0 + j) = val };
                }
            }
        }
        t += 1;
        pos.advance(1);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn input_channel(
        g: Conv3x3,
        x: &[f32],
        ci: usize,
        span: (usize, usize, usize),
        vc: &mut [f32],
    ) {
        super::input_channel(g, x, ci, span, vc)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn output_channel(
        g: Conv3x3,
        mo: &[f32],
        oi: usize,
        span: (usize, usize, usize),
        dst: SharedOut,
    ) {
        super::output_channel(g, mo, oi, span, dst)
    }
}

/// Runs a transform through its AVX2 + FMA copy when the CPU has both,
/// else through the baseline one.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch {
    ($f:ident($($arg:expr),*)) => {{
        if super::vecmath::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { avx2::$f($($arg),*) }
        } else {
            $f($($arg),*)
        }
    }};
}

/// Runs a transform (no vectorised copy off x86-64).
#[cfg(not(target_arch = "x86_64"))]
macro_rules! dispatch {
    ($f:ident($($arg:expr),*)) => {
        $f($($arg),*)
    };
}

/// The convolution `x [b, c, h, w] * wt [o, c, 3, 3]` into `out`
/// (`[b, o, out_h, out_w]`, every element written).
pub(crate) fn conv3x3(g: Conv3x3, x: &[f32], wt: &[f32], out: &mut [f32]) {
    let (th, tw) = g.tiles_hw();
    let total = g.b * th * tw;
    let tb = g.block_tiles().min(total);
    let u = transform_kernel(wt, g.o, g.c);
    // [c][xi][tile] and [o][xi][tile], as the kernel's [o][xi][c]
    let mut v = vec![0f32; g.c * XI * tb];
    let mut m = vec![0f32; g.o * XI * tb];
    let dst = SharedOut(out.as_mut_ptr());
    for t0 in (0..total).step_by(tb) {
        let n = tb.min(total - t0);
        // input transform, one channel per task
        v.par_chunks_mut(XI * tb).enumerate().for_each(|(ci, vc)| {
            dispatch!(input_channel(g, x, ci, (t0, n, tb), vc));
        });
        // the 16 products M[xi] = U[xi] V[xi]
        let mp = SharedOut(m.as_mut_ptr());
        let (vr, ur) = (&v, &u);
        (0..XI).into_par_iter().for_each(|xi| {
            // SAFETY: product xi writes only M[o][xi][0..n] for every o (the
            // xi-th run of each output channel's row), disjoint from every
            // other xi; U[xi] is o x c with row stride 16 * c, V[xi] is
            // c x n with row stride 16 * tb, all in bounds.
            unsafe {
                matmul(
                    (g.o, n, g.c),
                    mp.ptr().add(xi * tb),
                    XI * tb,
                    false,
                    View::rows(ur.as_ptr().add(xi * g.c), XI * g.c),
                    View::rows(vr.as_ptr().add(xi * tb), XI * tb),
                    1.0,
                );
            }
        });
        // output transform, one output channel per task
        m.par_chunks(XI * tb).enumerate().for_each(|(oi, mo)| {
            dispatch!(output_channel(g, mo, oi, (t0, n, tb), dst));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution in f64, the reference.
    fn direct(g: Conv3x3, x: &[f32], wt: &[f32]) -> Vec<f64> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut out = vec![0f64; g.b * g.o * oh * ow];
        for b in 0..g.b {
            for o in 0..g.o {
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut acc = 0f64;
                        for c in 0..g.c {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let (iy, ix) = (y + i, xx + j);
                                    if iy < g.pad || ix < g.pad {
                                        continue;
                                    }
                                    let (iy, ix) = (iy - g.pad, ix - g.pad);
                                    if iy >= g.h || ix >= g.w {
                                        continue;
                                    }
                                    acc += x[((b * g.c + c) * g.h + iy) * g.w + ix] as f64
                                        * wt[((o * g.c + c) * 3 + i) * 3 + j] as f64;
                                }
                            }
                        }
                        out[((b * g.o + o) * oh + y) * ow + xx] = acc;
                    }
                }
            }
        }
        out
    }

    /// Every output equals the direct sum: odd sizes, all three paddings,
    /// tiles side by side and one at a time, and (3 images of 20 x 20
    /// tiles) a block boundary inside an image.
    #[test]
    fn equals_direct_convolution() {
        let mut seed = 7u64;
        let mut rand = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for (b, c, h, w, o, pad) in [
            (1, 3, 5, 7, 2, 1),
            (2, 4, 9, 40, 5, 0),
            (1, 2, 6, 37, 3, 2),
            (3, 2, 40, 40, 2, 1),
            (1, 1, 1, 1, 1, 1),
        ] {
            let g = Conv3x3 { b, c, h, w, o, pad };
            let x: Vec<f32> = (0..b * c * h * w).map(|_| rand()).collect();
            let wt: Vec<f32> = (0..o * c * 9).map(|_| rand()).collect();
            let mut out = vec![f32::NAN; b * o * g.out_h() * g.out_w()];
            conv3x3(g, &x, &wt, &mut out);
            let want = direct(g, &x, &wt);
            for (i, (got, want)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (*got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{g:?} at {i}: {got} vs {want}"
                );
            }
        }
    }
}
