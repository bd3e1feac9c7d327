//! The two-splitting sweep: `V_L` and `W̃_L` exactly, then for `i = L−1 … 1` prox-linear steps
//! on `V_i` and `W̃_i` (see [`super::updates`]). `Z_i = Ṽ_{i−1}W̃_iᵀ` is kept current after
//! every block, as in the three-splitting sweep.

use super::updates::{self as two_split, NextLayer};
use crate::activation::{with_sigma, Activation};
use crate::blocks;
use crate::error::Result;
use crate::kernels;
use crate::optimizer::{BcdOptimizer, SweepChange};

impl BcdOptimizer {
    /// `S_l + σ(Z_l)`: what `V_l` is fitted to by its own penalty.
    fn own_target(&self, l: usize) -> Result<crate::Tensor> {
        let act = self.layers.architecture().activation();
        let z = self.product(l)?;
        if !kernels::fused(&z) {
            let skip = self.layers.architecture().is_residual(l);
            return act.output_tensor(&z, skip.then(|| self.input(l)));
        }
        with_sigma!(
            act,
            |sigma| match self.layers.architecture().is_residual(l) {
                true => kernels::map([self.input(l), &z], |[s, z]| {
                    (s as f64 + sigma.apply(z as f64)) as f32
                }),
                false => kernels::map([&z], |[z]| sigma.apply(z as f64) as f32),
            }
        )
    }

    /// One two-splitting sweep; returns `‖x^k − x^{k−1}‖²` by parts.
    pub(crate) fn sweep_two(&mut self) -> Result<SweepChange> {
        let cfg = self.config.clone();
        let act = self.layers.architecture().activation();
        let last = self.layers.architecture().num_layers() - 1;
        let mut dx = SweepChange::default();

        // Output: V_L exactly (U_L replaced by Z_L), then W̃_L exactly with coupling γ.
        let v_l =
            blocks::output_activation(&self.y, &self.product(last)?, &self.state.v[last], &cfg)?;
        dx.lifted += Self::replace(&mut self.state.v[last], v_l)?;
        let r_l = self.residual(last, &self.state.v[last], Some(self.product(last)?))?;
        dx.weights += self.exact_weights(last, &r_l, cfg.gamma)?;
        let z_last = self.affine(last, self.input(last))?;
        self.record_product(last, z_last)?;

        for l in (0..last).rev() {
            let own = self.own_target(l)?;
            let next = NextLayer {
                w: self.layers.weight(l + 1),
                b: self.layers.bias(l + 1),
                v: &self.state.v[l + 1],
                residual: self.layers.architecture().is_residual(l + 1),
                act: if l + 1 == last {
                    Activation::Identity
                } else {
                    act
                },
            };
            let step = two_split::hidden_activation(
                &own,
                &self.state.v[l],
                &self.product(l + 1)?,
                next,
                cfg.gamma,
                cfg.alpha,
                cfg.v_constraint,
                &*self.comm,
            )?;
            dx.lifted += Self::replace(&mut self.state.v[l], step.value)?;
            self.record_product(l + 1, step.z)?;

            let target = match self.layers.architecture().is_residual(l) {
                true => kernels::sub(&self.state.v[l], self.input(l))?,
                false => self.state.v[l].clone(),
            };
            let (w_old, b_old) = (self.layers.weight(l).clone(), self.layers.bias(l).clone());
            let step = two_split::weights(
                self.input(l),
                &target,
                &self.product(l)?,
                &w_old,
                &b_old,
                act,
                cfg.gamma,
                cfg.alpha,
                cfg.lambda,
                &*self.comm,
            )?;
            dx.weights += self.set_layer(l, &step.weight, &step.bias)?;
            self.record_product(l, step.z)?;
        }
        Ok(dx)
    }
}
