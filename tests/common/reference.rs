//! An independent `f64` implementation of one three-splitting sweep of `docs/algorithm.md`,
//! written from the specification with naive loops and Gaussian elimination (no faer, no
//! Cholesky, no Woodbury, no cached products), for ReLU hidden layers and squared loss, with
//! optional residual layers ([`Residual`]): `V_i = V_{i−1} + relu(U_i)`, or with two-layer
//! branches `V_i = V_{i−2} + U_i`. Every term of layer `l`
//! (0-based, of `last + 1`) — penalties, ridge, proximal terms — carries the weight
//! `c_l = growth^{l − last}`, written out in each block rather than simplified away.

use super::dense::M;

/// Hyperparameters.
#[derive(Clone, Copy)]
pub struct Hp {
    pub gamma: f64,
    pub rho: f64,
    /// Proximal weight of the weight blocks.
    pub alpha: f64,
    pub lambda: f64,
    /// Ratio of consecutive layers' weights `c_{l+1}/c_l`.
    pub growth: f64,
    /// Proximal weight of the lifted blocks `V_L`, `U_l`.
    pub alpha_lifted: f64,
}

impl Hp {
    /// The weight `c_l` of layer `l`'s terms.
    pub fn c(&self, l: usize, last: usize) -> f64 {
        self.growth.powi(l as i32 - last as i32)
    }

    /// Layer `l`'s weight-block hyperparameters: `ρ`, `α`, `λ` times `c_l`.
    fn layer(&self, l: usize, last: usize) -> Hp {
        let c = self.c(l, last);
        Hp {
            rho: c * self.rho,
            alpha: c * self.alpha,
            lambda: c * self.lambda,
            ..*self
        }
    }
}

/// The residual layers: `flags[l]` marks layer `l`; `span` layers form a branch (1:
/// `V_l = V_{l−1} + relu(U_l)`, 2: `V_l = V_{l−2} + U_l`, the branch's last layer linear).
#[derive(Clone, Copy)]
pub struct Residual<'a> {
    pub flags: &'a [bool],
    pub span: usize,
}

impl Residual<'_> {
    fn is(&self, l: usize) -> bool {
        self.flags.get(l).copied().unwrap_or(false)
    }

    /// The layer whose input is residual layer `l`'s skip.
    fn skip_layer(&self, l: usize) -> Option<usize> {
        self.is(l).then(|| l + 1 - self.span)
    }

    /// Whether layer `l` ends a two-layer branch, hence is linear.
    fn is_linear(&self, l: usize) -> bool {
        self.is(l) && self.span == 2
    }

    /// Layer `l`'s activation.
    fn sigma(&self, l: usize, x: f64) -> f64 {
        if self.is_linear(l) {
            x
        } else {
            relu(x)
        }
    }
}

/// All blocks of a network: `w[l]` is `[d_{l+1}, d_l]`, `b[l]` is `[1, d_{l+1}]`.
#[derive(Clone)]
pub struct Blocks {
    pub w: Vec<M>,
    pub b: Vec<M>,
    pub u: Vec<M>,
    pub v: Vec<M>,
}

fn relu(x: f64) -> f64 {
    x.max(0.0)
}

/// `Ṽ W̃ᵀ = V Wᵀ + 1 bᵀ`.
pub fn affine(v: &M, w: &M, b: &M) -> M {
    let p = v.mul(&w.t());
    M::from_fn(p.r, p.c, |i, j| p.at(i, j) + b.at(0, j))
}

/// Minimiser of `½(relu(u) − v)² + c/2 (u − a)²`: the better of the two branch candidates.
pub fn relu_prox(v: f64, a: f64, c: f64) -> f64 {
    let up = ((v + c * a) / (1.0 + c)).max(0.0);
    let um = a.min(0.0);
    let f = |u: f64| 0.5 * (relu(u) - v).powi(2) + 0.5 * c * (u - a).powi(2);
    if f(um) < f(up) {
        um
    } else {
        up
    }
}

/// `W̃ ← argmin λ/2‖W‖² + ρ/2‖U − ṼW̃ᵀ‖² + α/2‖W̃ − W̃_old‖²` via the normal equations.
pub fn weights(vin: &M, u: &M, w: &M, b: &M, hp: Hp) -> (M, M) {
    let va = vin.aug();
    let n = vin.c;
    let g = va.t().mul(&va);
    let a = M::from_fn(n + 1, n + 1, |i, j| {
        hp.rho * g.at(i, j)
            + if i == j {
                hp.alpha + if i < n { hp.lambda } else { 0.0 }
            } else {
                0.0
            }
    });
    let wt_old = M::from_fn(
        n + 1,
        w.r,
        |i, j| if i < n { w.at(j, i) } else { b.at(0, j) },
    );
    let rhs = va.t().mul(u).zip(&wt_old, |x, y| hp.rho * x + hp.alpha * y);
    let x = a.solve(&rhs);
    (
        M::from_fn(w.r, n, |i, j| x.at(j, i)),
        M::from_fn(1, w.r, |_, j| x.at(n, j)),
    )
}

/// One backward Gauss–Seidel sweep, in the order of `docs/algorithm.md`.
pub fn sweep(x: &M, y: &M, blk: &Blocks, hp: Hp, res: Residual) -> Blocks {
    let mut s = blk.clone();
    let last = s.w.len() - 1;
    let input = |s: &Blocks, l: usize| {
        if l == 0 {
            x.clone()
        } else {
            s.v[l - 1].clone()
        }
    };
    // 1. V_L
    let a = hp.alpha_lifted;
    s.v[last] = M::from_fn(y.r, y.c, |i, j| {
        (y.at(i, j) + hp.gamma * s.u[last].at(i, j) + a * s.v[last].at(i, j)) / (1.0 + hp.gamma + a)
    });
    // 2. U_L
    let z = affine(&input(&s, last), &s.w[last], &s.b[last]);
    s.u[last] = s.v[last].zip(&z, |v, z| (hp.gamma * v + hp.rho * z) / (hp.gamma + hp.rho));
    // 3. W_L
    let (w, b) = weights(
        &input(&s, last),
        &s.u[last],
        &s.w[last],
        &s.b[last],
        hp.layer(last, last),
    );
    s.w[last] = w;
    s.b[last] = b;
    for l in (0..last).rev() {
        let (c, cn) = (hp.c(l, last), hp.c(l + 1, last));
        // V_l: (cγ relu(U_l) + c'ρ (U_{l+1} − 1bᵀ) W) (cγI + c'ρWᵀW)⁻¹ (c' = c_{l+1}), solved
        // as M Vᵀ = rhsᵀ.
        let (wn, bn) = (&s.w[l + 1], &s.b[l + 1]);
        let centered = M::from_fn(s.u[l + 1].r, s.u[l + 1].c, |i, j| {
            s.u[l + 1].at(i, j) - bn.at(0, j)
        });
        // A residual layer adds cγ S_l (own penalty); the residual layer k reading V_l as its
        // skip adds c_k γ (V_k − σ_k(U_k)), with c_k γI (its activation penalty).
        let mut rhs = s.u[l]
            .map(|u| res.sigma(l, u))
            .zip(&centered.mul(wn), |a, b| c * hp.gamma * a + cn * hp.rho * b);
        let mut shift = c * hp.gamma;
        if let Some(j) = res.skip_layer(l) {
            rhs = rhs.zip(&input(&s, j), |a, b| a + c * hp.gamma * b);
        }
        let k = l + res.span;
        if res.skip_layer(k) == Some(l + 1) {
            let ck = hp.c(k, last);
            let t = s.v[k].zip(&s.u[k], |v, u| v - res.sigma(k, u));
            rhs = rhs.zip(&t, |a, b| a + ck * hp.gamma * b);
            shift += ck * hp.gamma;
        }
        let d = wn.c;
        let wtw = wn.t().mul(wn);
        let m = M::from_fn(d, d, |i, j| {
            cn * hp.rho * wtw.at(i, j) + if i == j { shift } else { 0.0 }
        });
        s.v[l] = m.solve(&rhs.t()).t();
        // U_l
        let z = affine(&input(&s, l), &s.w[l], &s.b[l]);
        let (r, a, g) = (c * hp.rho, c * hp.alpha_lifted, c * hp.gamma);
        let target = match res.skip_layer(l) {
            Some(j) => s.v[l].zip(&input(&s, j), |v, p| v - p),
            None => s.v[l].clone(),
        };
        s.u[l] = M::from_fn(z.r, z.c, |i, j| {
            let centre = (r * z.at(i, j) + a * s.u[l].at(i, j)) / (r + a);
            let k = (r + a) / g;
            match res.is_linear(l) {
                // argmin ½(u − t)² + k/2 (u − centre)²
                true => (target.at(i, j) + k * centre) / (1.0 + k),
                false => relu_prox(target.at(i, j), centre, k),
            }
        });
        // W_l
        let (w, b) = weights(&input(&s, l), &s.u[l], &s.w[l], &s.b[l], hp.layer(l, last));
        s.w[l] = w;
        s.b[l] = b;
    }
    s
}

/// `Φ` of `docs/algorithm.md` (three-splitting, squared loss, ReLU), layer `l`'s terms weighted
/// by `c_l`.
pub fn objective(x: &M, y: &M, s: &Blocks, hp: Hp, res: Residual) -> f64 {
    let last = s.w.len() - 1;
    let mut phi = 0.5 * s.v[last].zip(y, |a, b| a - b).sq_norm();
    phi += 0.5 * hp.gamma * s.v[last].zip(&s.u[last], |a, b| a - b).sq_norm();
    for l in 0..=last {
        let input = if l == 0 {
            x.clone()
        } else {
            s.v[l - 1].clone()
        };
        let c = hp.c(l, last);
        phi += 0.5
            * c
            * hp.rho
            * s.u[l]
                .zip(&affine(&input, &s.w[l], &s.b[l]), |a, b| a - b)
                .sq_norm();
        phi += 0.5 * c * hp.lambda * s.w[l].sq_norm();
        if l < last {
            let skip = match res.skip_layer(l) {
                Some(0) => x.clone(),
                Some(j) => s.v[j - 1].clone(),
                None => M::zeros(s.v[l].r, s.v[l].c),
            };
            let r = M::from_fn(s.v[l].r, s.v[l].c, |i, j| {
                s.v[l].at(i, j) - skip.at(i, j) - res.sigma(l, s.u[l].at(i, j))
            });
            phi += 0.5 * c * hp.gamma * r.sq_norm();
        }
    }
    phi
}
