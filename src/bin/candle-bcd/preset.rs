//! Presets: TOML files under `models/` that fill in `train`'s settings.
//!
//! A preset is a [`Settings`] written as TOML: every key is optional and named like the flag
//! (`hidden = [1500, 1500, 1500]`, `residual_layers = 2`, `loss = "cross-entropy"`, …); a flag
//! given on the command line wins over the preset, the preset over the built-in default.
//! Unknown keys are an error naming the key and the file.

use std::path::Path;

use anyhow::{Context, Result};

use crate::settings::Settings;

/// Reads and parses a preset file.
pub fn load(path: &Path) -> Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading preset {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("preset {}", path.display()))
}
