//! The three-splitting sweep (`docs/algorithm.md`, "One sweep"): `V_L`, `U_L`, `W̃_L`, then for
//! `i = L−1 … 1`: `V_i`, `U_i`, `W̃_i`, every block an exact minimiser. A residual layer's
//! skip `S_i` and the reader of `V_i` as a skip come from the architecture
//! (`Architecture::skip_source`, `Architecture::skip_reader`).

use candle_core::Tensor;

use super::objective;
use super::updates::{self, SkipReader};
use crate::blocks;
use crate::comm;
use crate::config::VConstraint;
use crate::conv::{self, CgReport};
use crate::error::Result;
use crate::kernels;
use crate::optimizer::{BcdOptimizer, SweepChange};

impl BcdOptimizer {
    /// One three-splitting sweep; returns `‖x^k − x^{k−1}‖²` by parts.
    pub(crate) fn sweep_three(&mut self) -> Result<SweepChange> {
        let cfg = self.config.clone();
        let arch = self.layers.architecture().clone();
        let last = arch.num_layers() - 1;
        let mut dx = SweepChange::default();

        let v_l =
            blocks::output_activation(&self.y, &self.state.u[last], &self.state.v[last], &cfg)?;
        dx.lifted += Self::replace(&mut self.state.v[last], v_l)?;
        let z_l = self.take_product(last)?;
        let u_l = updates::output_preactivation(&self.state.v[last], &z_l, &cfg)?;
        dx.lifted += Self::replace(&mut self.state.u[last], u_l)?;
        let r_l = self.residual(last, &self.state.u[last], Some(z_l))?;
        dx.weights += self.exact_weights(last, &r_l, cfg.rho)?;

        for l in (0..last).rev() {
            let act = arch.layer_activation(l);
            let skip = self.skip(l).cloned();
            let nb = updates::HiddenNeighbours {
                v: &self.state.v[l],
                u_i: &self.state.u[l],
                skip: skip.as_ref(),
                u_next: &self.state.u[l + 1],
                w_next: self.layers.weight(l + 1),
                b_next: self.layers.bias(l + 1),
                reader: arch.skip_reader(l).map(|c| SkipReader {
                    v: &self.state.v[c],
                    u: &self.state.u[c],
                    act: arch.layer_activation(c),
                    weight: cfg.skip_weight(c - l),
                }),
            };
            let mut v = match arch.spatial(l + 1) {
                None => updates::hidden_activation(nb, act, &cfg, &format!("V_{}", l + 1))?,
                Some(next) => {
                    let next = *next;
                    let (v, iterations, relative_residual) =
                        conv::hidden_activation(nb, &next, act, &cfg, &*self.comm)?;
                    self.cg_reports.push(CgReport {
                        layer: l,
                        iterations,
                        relative_residual,
                    });
                    v
                }
            };
            let c = cfg.v_constraint;
            if c != VConstraint::None {
                // Project, and keep the (feasible) old V if that is better: see VConstraint.
                let projected = c.project_all(&v)?;
                let [f_new, f_old] = comm::sum(
                    &*self.comm,
                    [
                        updates::hidden_activation_value(&projected, nb, act, &cfg)?,
                        updates::hidden_activation_value(&self.state.v[l], nb, act, &cfg)?,
                    ],
                );
                v = if f_new <= f_old {
                    projected
                } else {
                    self.state.v[l].clone()
                };
            }
            dx.lifted += Self::replace(&mut self.state.v[l], v)?;
            let z_next = self.affine(l + 1, &self.state.v[l])?;
            self.record_three(l + 1, z_next)?;
            // The U_l prox fits σ_l(U_l) to V_l, or to V_l − S_l in a residual layer.
            let target = match &skip {
                Some(s) => kernels::sub(&self.state.v[l], s)?,
                None => self.state.v[l].clone(),
            };
            let (u, du, z) = match self.kept_products[l].take() {
                Some(z) => {
                    let (u, du) =
                        updates::hidden_preactivation(&z, &self.state.u[l], &target, act, &cfg)?;
                    (u, du, Some(z))
                }
                // Not kept: compute Z_l into the buffer that becomes the new U_l (the weight
                // block's residual then forms Z_l again, once the old U_l is freed).
                None => {
                    let (u, du) = updates::hidden_preactivation_in_place(
                        self.product_buffer(l)?,
                        &self.state.u[l],
                        &target,
                        act,
                        &cfg,
                    )?;
                    (u, du, None)
                }
            };
            self.state.u[l] = u;
            dx.lifted += du;
            let r = self.residual(l, &self.state.u[l], z)?;
            dx.weights += self.exact_weights(l, &r, cfg.rho)?;
        }
        let z_first = self.affine(0, &self.x)?;
        self.record_three(0, z_first)?;
        Ok(dx)
    }
}

impl BcdOptimizer {
    /// Records a freshly formed `Z_l`: its pre-activation sum `‖U_l − Z_l‖²` for `Φ`, then the
    /// product itself where products are kept.
    pub(crate) fn record_three(&mut self, l: usize, z: Tensor) -> Result<()> {
        self.pre_sq[l] = objective::preactivation_sq(&self.state.u[l], &z)?;
        self.record_product(l, z)
    }
}
