//! The products `Z_i = Ṽ_{i−1}W̃_iᵀ` kept between the blocks that read them.
//!
//! A three-splitting sweep needs `Z_i` twice: for the pre-activation penalty `ρ/2‖U_i − Z_i‖²`
//! of the objective right after `V_{i−1}` changes, and for the next sweep's `U_i` update. Between
//! the two neither `V_{i−1}` nor `W̃_i` changes, so one product can serve both
//! ([`ProductCache::Keep`], the default; the `W̃_i` block's residual `U_i − Z_i` reads it too),
//! at the price of holding `N·Σd_i` extra floats, as much as the `U` blocks themselves.
//! [`ProductCache::Recompute`] keeps only the penalty sums and recomputes `Z_i` for the `U_i`
//! update and again for the weight block's residual (the `U_i` update builds its result in the
//! buffer of `Z_i`): two more `N × d_{i−1} × d_i` products per layer and sweep, a third less
//! memory. [`ProductCache::KeepFirst`] keeps `Z_1 = X̃W̃_1ᵀ` only: it serves
//! the `U_1` update, the `W̃_1` block's residual and the first layer of
//! [`BcdOptimizer::training_accuracy`], so per iteration it saves three products for `N·d_1`
//! floats. All modes compute the same iterates up to round-off.
//!
//! A kept `Z_i` is dropped as soon as the `U_i` update and the weight block's residual have
//! read it (the weights it was formed with change next), so a stale product never coexists
//! with its replacement.
//!
//! The two-splitting always keeps its products: its prox-linear steps read `Z_i` after every
//! block.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::BcdOptimizer;
use crate::config::Splitting;
use crate::error::Result;
use crate::kernels::Work;

/// Whether a three-splitting optimizer keeps the products `Z_i = Ṽ_{i−1}W̃_iᵀ` between sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProductCache {
    /// Keep every `Z_i` (`N·Σd_i` floats): the fewest products per sweep.
    #[default]
    Keep,
    /// Keep only `‖U_i − Z_i‖²` and recompute `Z_i` where a `U_i` update and the weight
    /// block's residual need it: two extra products per layer and sweep, `N·Σd_i` fewer floats
    /// held.
    Recompute,
    /// Keep `Z_1` only (`N·d_1` floats), recompute the others: between the two. `Z_1` saves
    /// three products per iteration (the `U_1` update's, the `W̃_1` residual's, and the first
    /// layer of the training accuracy), the others two each.
    KeepFirst,
}

impl BcdOptimizer {
    /// Sets how the `Z_i` products are kept (see [`ProductCache`]); the two-splitting always
    /// keeps them. Does not change the iterates beyond round-off.
    pub fn with_product_cache(mut self, mode: ProductCache) -> Self {
        self.cache = mode;
        for l in 0..self.kept_products.len() {
            if !self.keeps_product(l) {
                self.kept_products[l] = None;
            }
        }
        self
    }

    /// How the `Z_i` products are kept.
    pub fn product_cache(&self) -> ProductCache {
        self.cache
    }

    /// Whether `Z_l` is kept between the sweeps.
    fn keeps_product(&self, l: usize) -> bool {
        match self.cache {
            _ if self.config.splitting == Splitting::Two => true,
            ProductCache::Keep => true,
            ProductCache::KeepFirst => l == 0,
            ProductCache::Recompute => false,
        }
    }

    /// `Z_l` for the current blocks: the kept product, or a new one.
    pub(crate) fn product(&self, l: usize) -> Result<Tensor> {
        match &self.kept_products[l] {
            Some(z) => Ok(z.clone()),
            None => self.affine(l, self.input(l)),
        }
    }

    /// `Z_l` for the current blocks, for an update that is its last reader before the weights
    /// change: a kept product is handed over (not cloned), so it is freed with its reader.
    pub(crate) fn take_product(&mut self, l: usize) -> Result<Tensor> {
        match self.kept_products[l].take() {
            Some(z) => Ok(z),
            None => self.affine(l, self.input(l)),
        }
    }

    /// `Z_l` computed anew into a [`Work`] buffer (for an update that consumes it).
    pub(crate) fn product_buffer(&self, l: usize) -> Result<Work> {
        match self.layers.architecture().spatial(l) {
            None => Work::affine(self.input(l), self.layers.weight(l), self.layers.bias(l)),
            Some(_) => Work::from_tensor(self.affine(l, self.input(l))?),
        }
    }

    /// Keeps a freshly computed `Z_l` if products are kept (otherwise drops it).
    pub(crate) fn record_product(&mut self, l: usize, z: Tensor) -> Result<()> {
        self.kept_products[l] = self.keeps_product(l).then_some(z);
        Ok(())
    }
}
