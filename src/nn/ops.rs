//! Differentiable tensor ops whose backward passes are exact and fast on
//! the CPU, built from candle ops that have correct gradients.

use candle_core::Tensor;

/// 3x3 convolution, stride 1, zero padding 1, as nine shifted views and
/// one matrix product. Its backward pass is a matrix product and slice
/// additions, several times faster on the CPU than candle's direct
/// transposed convolution.
pub fn conv3x3(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let c_out = w.dim(0)?;
    let padded = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    let mut shifted = Vec::with_capacity(9);
    for dy in 0..3 {
        for dx in 0..3 {
            shifted.push(padded.narrow(2, dy, h)?.narrow(3, dx, wd)?.unsqueeze(2)?);
        }
    }
    // [b, c, 9, h, w] -> [b, c * 9, h * w]; column c * 9 + k matches the
    // weight's [c_out, c, 3, 3] layout flattened.
    let cols = Tensor::cat(&shifted, 2)?.reshape((b, c * 9, h * wd))?;
    let w = w
        .reshape((1, c_out, c * 9))?
        .broadcast_as((b, c_out, c * 9))?;
    w.matmul(&cols)?.reshape((b, c_out, h, wd))
}

/// 2x2 max pooling (odd edges dropped) built from reshape + max, whose
/// backward pass is exact. (candle 0.11's `max_pool2d` backward scales the
/// gradient by 1/4 for a unique maximum.)
pub fn max_pool_2x2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    x.narrow(2, 0, 2 * h2)?
        .narrow(3, 0, 2 * w2)?
        .reshape((b, c, h2, 2, w2, 2))?
        .max(5)?
        .max(3)
}
