//! The two-splitting sweep: `V_L` and `W̃_L` exactly, then for `i = L−1 … 1` prox-linear steps
//! on `V_i` and `W̃_i` (see [`crate::two_split`]). `Z_i = Ṽ_{i−1}W̃_iᵀ` is kept current after
//! every block, as in the three-splitting sweep.

use super::BcdOptimizer;
use crate::activation::{with_sigma, Activation};
use crate::error::Result;
use crate::kernels;
use crate::two_split::{self, NextLayer};
use crate::updates;

impl BcdOptimizer {
    /// `S_l + σ(Z_l)`: what `V_l` is fitted to by its own penalty.
    fn own_target(&self, l: usize) -> Result<crate::Tensor> {
        let act = self.arch.activation();
        let z = self.z(l)?;
        with_sigma!(act, |sigma| match self.arch.is_residual(l) {
            true => kernels::map([self.input(l), &z], |[s, z]| {
                (s as f64 + sigma.apply(z as f64)) as f32
            }),
            false => kernels::map([&z], |[z]| sigma.apply(z as f64) as f32),
        })
    }

    /// One two-splitting sweep; returns `‖x^k − x^{k−1}‖²`.
    pub(super) fn sweep_two(&mut self) -> Result<f64> {
        let cfg = self.config.clone();
        let act = self.arch.activation();
        let last = self.arch.num_layers() - 1;
        let mut dx = 0.0;

        // Output: V_L exactly (U_L replaced by Z_L), then W̃_L exactly with coupling γ.
        let v_l = updates::output_activation(&self.y, &self.z(last)?, &self.state.v[last], &cfg)?;
        dx += Self::replace(&mut self.state.v[last], v_l)?;
        let v_l = self.state.v[last].clone();
        dx += self.exact_weights(last, &v_l, cfg.gamma)?;
        let z_last = self.affine(last, self.input(last))?;
        self.store_z(last, z_last)?;

        for l in (0..last).rev() {
            let own = self.own_target(l)?;
            let next = NextLayer {
                w: self.weights[l + 1].as_tensor(),
                b: self.biases[l + 1].as_tensor(),
                v: &self.state.v[l + 1],
                residual: self.arch.is_residual(l + 1),
                act: if l + 1 == last {
                    Activation::Identity
                } else {
                    act
                },
            };
            let step = two_split::hidden_activation(
                &own,
                &self.state.v[l],
                &self.z(l + 1)?,
                next,
                cfg.gamma,
                cfg.alpha,
                cfg.v_constraint,
            )?;
            dx += Self::replace(&mut self.state.v[l], step.value)?;
            self.store_z(l + 1, step.z)?;

            let target = match self.arch.is_residual(l) {
                true => kernels::map([&self.state.v[l], self.input(l)], |[v, s]| v - s)?,
                false => self.state.v[l].clone(),
            };
            let (w_old, b_old) = (
                self.weights[l].as_tensor().clone(),
                self.biases[l].as_tensor().clone(),
            );
            let step = two_split::weights(
                self.input(l),
                &target,
                &self.z(l)?,
                &w_old,
                &b_old,
                act,
                cfg.gamma,
                cfg.alpha,
                cfg.lambda,
            )?;
            if let Some(b) = &step.bias {
                dx += self.set_layer(l, &step.value, b)?;
            }
            self.store_z(l, step.z)?;
        }
        Ok(dx)
    }
}
