//! The shapes of an image layer: its input image, the average pooling applied to it, and the
//! convolution or flattened linear map that follows. A lifted row of such a layer holds an
//! image `[C, H, W]` in `C, H, W` order (Candle's and PyTorch's flatten order), so the lifted
//! state stays `[N, C·H·W]` and every row-wise part of the method is unchanged.
//!
//! Sizes: pooling by `p` maps `H × W` to `H/p × W/p` (`p` divides both); a convolution with
//! kernel `k`, stride `s` and padding `q` maps `H_p` to `H_o = ⌊(H_p + 2q − k)/s⌋ + 1`.

use serde::{Deserialize, Serialize};

use crate::error::{BcdError, Result};

/// The shape `[C, H, W]` of one sample's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Channels `C`.
    pub channels: usize,
    /// Height `H`.
    pub height: usize,
    /// Width `W`.
    pub width: usize,
}

impl Image {
    /// The image `[channels, height, width]`.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }

    /// Entries `C·H·W` of one sample's image (its width as a lifted row).
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the image has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(N, C, H, W)` for `n` samples.
    pub(crate) fn batch(&self, n: usize) -> (usize, usize, usize, usize) {
        (n, self.channels, self.height, self.width)
    }
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// A 2-D convolution with a square kernel, one bias per output channel (what
/// `candle_nn::conv2d` and PyTorch's `Conv2d` store: weight `[out, in, k, k]`, bias `[out]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2d {
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size `k` (`k × k`).
    pub kernel: usize,
    /// Stride `s`.
    pub stride: usize,
    /// Zero padding `q` on every side.
    pub padding: usize,
}

impl Conv2d {
    /// A convolution to `out_channels` channels with a `kernel × kernel` kernel, stride 1 and
    /// the padding `kernel / 2` that keeps an odd kernel's image size.
    pub fn same(out_channels: usize, kernel: usize) -> Self {
        Self {
            out_channels,
            kernel,
            stride: 1,
            padding: kernel / 2,
        }
    }
}

/// What an image layer computes: average pooling of its input image by `pool × pool` windows
/// (stride `pool`; `1` for none), then a convolution, or, when `conv` is `None`, a linear map
/// of the flattened pooled image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spatial {
    /// The layer's input image (its lifted input row).
    pub input: Image,
    /// Pooling window and stride; 1 for none.
    pub pool: usize,
    /// The convolution; `None` for a linear map of the flattened pooled image.
    pub conv: Option<Conv2d>,
}

impl Spatial {
    /// The input image after pooling.
    pub fn pooled(&self) -> Image {
        let p = self.pool.max(1);
        Image::new(
            self.input.channels,
            self.input.height / p,
            self.input.width / p,
        )
    }

    /// The output image of the convolution (`None` for a linear layer).
    pub fn output(&self) -> Option<Image> {
        let c = self.conv?;
        let p = self.pooled();
        let size = |x: usize| (x + 2 * c.padding - c.kernel) / c.stride + 1;
        Some(Image::new(c.out_channels, size(p.height), size(p.width)))
    }

    /// Whether the layer maps its image to an image of the same shape, unpooled (a convolution
    /// that a residual sum can skip over).
    pub(crate) fn keeps_image(&self) -> bool {
        self.pool == 1 && self.output() == Some(self.input)
    }

    /// Columns of the layer's design matrix (without the bias column): `C·k²` for a
    /// convolution (one row per sample and output position), `C·H_p·W_p` for a linear layer.
    pub fn design_width(&self) -> usize {
        let p = self.pooled();
        match self.conv {
            Some(c) => p.channels * c.kernel * c.kernel,
            None => p.len(),
        }
    }

    /// Output positions `H_o·W_o` per sample (1 for a linear layer).
    pub fn positions(&self) -> usize {
        self.output().map_or(1, |o| o.height * o.width)
    }

    /// Checks that the sizes fit: a non-empty image, a pooling window dividing it, a kernel no
    /// larger than the padded pooled image, non-zero channels, stride and kernel. Errors name
    /// `layer`.
    pub fn validate(&self, layer: &str) -> Result<()> {
        let err = |reason: String| {
            Err(BcdError::InvalidArchitecture(format!(
                "layer {layer} (input {}): {reason}",
                self.input
            )))
        };
        if self.input.is_empty() {
            return err("the input image is empty".into());
        }
        let p = self.pool;
        if p == 0 || self.input.height % p != 0 || self.input.width % p != 0 {
            return err(format!(
                "a {p}x{p} average pooling does not divide the image"
            ));
        }
        if let Some(c) = self.conv {
            let pooled = self.pooled();
            if c.out_channels == 0 || c.kernel == 0 || c.stride == 0 {
                return err(format!(
                    "a convolution needs channels, kernel and stride > 0, got {c:?}"
                ));
            }
            let (h, w) = (pooled.height + 2 * c.padding, pooled.width + 2 * c.padding);
            if c.kernel > h || c.kernel > w {
                return err(format!(
                    "the {k}x{k} kernel is larger than the padded image {h}x{w}",
                    k = c.kernel
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_convolution_arithmetic() {
        let s = Spatial {
            input: Image::new(3, 32, 32),
            pool: 2,
            conv: Some(Conv2d {
                out_channels: 8,
                kernel: 3,
                stride: 2,
                padding: 1,
            }),
        };
        s.validate("c").unwrap();
        assert_eq!(s.pooled(), Image::new(3, 16, 16));
        // (16 + 2 − 3)/2 + 1 = 8
        assert_eq!(s.output(), Some(Image::new(8, 8, 8)));
        assert_eq!(s.design_width(), 27);
        assert_eq!(s.positions(), 64);
    }

    #[test]
    fn sizes_that_do_not_fit_are_named() {
        let big = Spatial {
            input: Image::new(1, 4, 4),
            pool: 1,
            conv: Some(Conv2d::same(2, 7)),
        };
        let e = Spatial {
            conv: Some(Conv2d {
                padding: 0,
                ..Conv2d::same(2, 7)
            }),
            ..big
        }
        .validate("conv1")
        .unwrap_err()
        .to_string();
        assert!(e.contains("conv1") && e.contains("larger"), "{e}");
        let e = Spatial { pool: 3, ..big }
            .validate("conv2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("conv2") && e.contains("pooling"), "{e}");
    }
}
