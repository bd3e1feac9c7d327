//! Presets: TOML files under `models/` that fill in `train`'s flags.
//!
//! Every key is optional and named like the flag (`hidden = [1500, 1500, 1500]`,
//! `residual_layers = 2`, `loss = "cross-entropy"`, …); a flag given on the command line wins
//! over the preset, the preset over the built-in default. Unknown keys are an error.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::train::{
    ActivationArg, ArchArg, DatasetArg, HeadInitArg, InitArg, LossArg, SplittingArg, TrainArgs,
};

/// The fields a preset may set.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    dataset: Option<DatasetArg>,
    data_dir: Option<PathBuf>,
    arch: Option<ArchArg>,
    hidden: Option<Vec<usize>>,
    residual_layers: Option<usize>,
    activation: Option<ActivationArg>,
    leaky_slope: Option<f64>,
    loss: Option<LossArg>,
    splitting: Option<SplittingArg>,
    iterations: Option<usize>,
    gamma: Option<f64>,
    rho: Option<f64>,
    alpha: Option<f64>,
    lambda: Option<f64>,
    seed: Option<u64>,
    init: Option<InitArg>,
    head_init: Option<HeadInitArg>,
    head_lambda: Option<f64>,
    train_limit: Option<usize>,
    eval_every: Option<usize>,
}

impl Preset {
    /// Reads and parses a preset file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading preset {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("preset {}", path.display()))
    }

    /// Fills every flag of `args` that was not given with the preset's value.
    pub fn apply(self, args: &mut TrainArgs) {
        macro_rules! fill {
            ($($field:ident),*) => {
                $(if args.$field.is_none() { args.$field = self.$field; })*
            };
        }
        fill!(
            dataset,
            data_dir,
            arch,
            hidden,
            residual_layers,
            activation,
            leaky_slope,
            loss,
            splitting,
            iterations,
            gamma,
            rho,
            alpha,
            lambda,
            seed,
            init,
            head_init,
            head_lambda,
            train_limit,
            eval_every
        );
    }
}
