//! The network of an [`Architecture`] as an ordinary candle-nn model (`candle_nn::linear`,
//! `candle_nn::conv2d`, `avg_pool2d`, ReLU, residual sums with one- or two-layer branches), for
//! training by backprop beside BCD.

use candle_bcd::{Architecture, Branch};
use candle_core::{Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder, VarMap};

/// One layer: its map and what it reads.
enum Map {
    Linear(candle_nn::Linear),
    Conv(candle_nn::Conv2d),
}

/// `arch` with weights created in `vb` under `l{index}`.
pub struct Plain {
    arch: Architecture,
    maps: Vec<Map>,
}

impl Plain {
    pub fn new(arch: &Architecture, vb: VarBuilder) -> candle_core::Result<Self> {
        let maps = (0..arch.num_layers())
            .map(|l| {
                let shape = arch.weight_shape(l);
                let vb = vb.pp(format!("l{l}"));
                match arch.spatial(l).and_then(|s| s.conv) {
                    Some(c) => {
                        let cfg = Conv2dConfig {
                            padding: c.padding,
                            stride: c.stride,
                            ..Default::default()
                        };
                        candle_nn::conv2d(shape[1], shape[0], c.kernel, cfg, vb).map(Map::Conv)
                    }
                    None => candle_nn::linear(shape[1], shape[0], vb).map(Map::Linear),
                }
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            arch: arch.clone(),
            maps,
        })
    }

    /// Multiplies the weights of every residual layer (a branch's last layer) held in `vm` by
    /// `factor`, as `Network::scale_residual_branches` does for BCD.
    pub fn scale_residual_branches(&self, vm: &VarMap, factor: f64) -> candle_core::Result<()> {
        let vars = vm
            .data()
            .lock()
            .expect("no other thread holds the variables");
        for l in (0..self.maps.len()).filter(|&l| self.arch.is_residual(l)) {
            let w = &vars[&format!("l{l}.weight")];
            w.set(&(w.as_tensor() * factor)?)?;
        }
        Ok(())
    }
}

impl Module for Plain {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let mut h = x.clone();
        // The input of the layer before: the skip of a two-layer branch.
        let mut before = h.clone();
        for (l, map) in self.maps.iter().enumerate() {
            let input = h.clone();
            let mut z = match self.arch.spatial(l) {
                Some(s) => {
                    let i = s.input;
                    let mut img = h.reshape((n, i.channels, i.height, i.width))?;
                    if s.pool > 1 {
                        img = img.avg_pool2d(s.pool)?;
                    }
                    match map {
                        Map::Conv(c) => img.apply(c)?,
                        Map::Linear(f) => img.flatten_from(1)?.apply(f)?,
                    }
                }
                None => match map {
                    Map::Linear(f) => h.apply(f)?,
                    Map::Conv(c) => h.apply(c)?,
                },
            };
            z = z.flatten_from(1)?;
            h = if l + 1 == self.maps.len() {
                z
            } else if !self.arch.is_residual(l) {
                z.relu()?
            } else {
                match self.arch.branch() {
                    Branch::Single => (&input + z.relu()?)?,
                    Branch::Pair => (&before + z)?,
                }
            };
            before = input;
        }
        Ok(h)
    }
}
