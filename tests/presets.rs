//! Every preset under models/ trains as written through `train --preset`, and a malformed preset
//! is refused with a message naming the file and the key.

mod common;

/// Each preset runs as written on the MNIST slice (only the data, its size and the length of
/// the run are overridden: the CIFAR-10 and Fashion-MNIST presets train on MNIST here), and the
/// checkpoint it writes carries the preset's own network and hyperparameters.
#[test]
fn every_preset_trains_as_written() {
    let mnist = common::mnist_dir();
    let dir = common::tempdir();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut seen = 0;
    for entry in std::fs::read_dir(&models).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let preset: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let ckpt = dir.join(format!("{seen}.safetensors"));
        // One iteration: a sweep, or an epoch for a mini-batch preset.
        let length = match preset.contains_key("batch_size") {
            true => "--epochs",
            false => "--iterations",
        };
        let out = common::cli(&[
            "train",
            "--preset",
            path.to_str().unwrap(),
            "--dataset",
            "mnist",
            "--data-dir",
            mnist.to_str().unwrap(),
            "--train-limit",
            "200",
            length,
            "1",
            "--checkpoint",
            ckpt.to_str().unwrap(),
        ]);
        let name = path.display();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("finished 1 iterations") || stdout.contains("finished 1 epochs"),
            "{name}: {stdout}"
        );
        let c = candle_bcd::checkpoint::load(&ckpt, &candle_core::Device::Cpu).unwrap();
        let num = |key: &str| preset.get(key).map(|v| v.as_float().unwrap());
        let text = |key: &str| preset.get(key).map(|v| v.as_str().unwrap().to_owned());
        for (key, got) in [
            ("gamma", c.config().gamma),
            ("rho", c.config().rho),
            ("alpha", c.config().alpha),
            ("lambda", c.config().lambda),
            ("penalty_growth", c.config().penalty_growth),
            (
                "alpha_lifted",
                c.config().alpha_lifted.unwrap_or(c.config().alpha),
            ),
        ] {
            if let Some(want) = num(key) {
                assert_eq!(got, want, "{name}: {key}");
            }
        }
        // The serialised names are the preset's (kebab-case) spellings.
        let json = |v: String| v.trim_matches('"').to_owned();
        if let Some(loss) = text("loss") {
            assert_eq!(
                json(serde_json::to_string(&c.config().loss).unwrap()),
                loss,
                "{name}"
            );
        }
        if let Some(act) = text("activation") {
            let got = serde_json::to_string(&c.architecture().activation()).unwrap();
            assert_eq!(json(got), act, "{name}");
        }
        let hidden: Vec<usize> = preset
            .get("hidden")
            .and_then(|h| h.as_array())
            .map(|h| h.iter().map(|w| w.as_integer().unwrap() as usize).collect())
            .unwrap_or_default();
        let widths = c.architecture().widths();
        let branch = c.architecture().branch();
        let want = text("branch").unwrap_or_else(|| "single".into());
        assert_eq!(
            json(serde_json::to_string(&branch).unwrap()),
            want,
            "{name}"
        );
        match text("arch").as_deref() {
            Some("cnn") => {
                // Every stage but a pooling is a layer; the head is added.
                let layers = text("layers").unwrap();
                let stages: Vec<&str> = layers.split(',').collect();
                let convs = stages.iter().filter(|s| !s.starts_with("pool")).count();
                assert_eq!(c.architecture().num_layers(), convs + 1, "{name}");
                // Each resC closes a residual layer (a block of two with branch = "pair").
                let res = stages.iter().filter(|s| s.starts_with("res")).count();
                let residual = (0..=convs).filter(|&l| c.architecture().is_residual(l));
                assert_eq!(residual.count(), res, "{name}");
                assert!(c.architecture().is_convolutional(), "{name}");
                let first: usize = stages[0]
                    .trim_start_matches(char::is_alphabetic)
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|d| d.parse().ok())
                    .unwrap();
                assert_eq!(c.architecture().weight_shape(0)[0], first, "{name}");
            }
            Some("resnet") => {
                let blocks = preset["residual_layers"].as_integer().unwrap() as usize;
                // The stem, each branch's layers, the head.
                let layers = blocks * branch.layers() + 2;
                assert_eq!(widths.len(), layers + 1, "{name}: {widths:?}");
                assert!(widths[1..layers].iter().all(|&w| w == hidden[0]), "{name}");
                let residual = (0..layers).filter(|&l| c.architecture().is_residual(l));
                assert_eq!(residual.count(), blocks, "{name}");
            }
            _ => assert_eq!(&widths[1..widths.len() - 1], hidden.as_slice(), "{name}"),
        }
        match (&c, preset.get("batch_size")) {
            (candle_bcd::checkpoint::Checkpoint::MiniBatch(m), Some(batch)) => {
                let b = m.progress.options.batch_size as i64;
                assert_eq!(b, batch.as_integer().unwrap(), "{name}");
            }
            (candle_bcd::checkpoint::Checkpoint::FullBatch(_), None) => {}
            _ => panic!("{name}: the checkpoint's kind does not match the preset's mode"),
        }
    }
    assert!(
        seen >= 6,
        "expected at least six presets in {}",
        models.display()
    );
}

#[test]
fn malformed_preset_is_named() {
    let dir = common::tempdir();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "hidden = [10]\nlearning_rate = 0.1\n").unwrap();
    let out = common::cli(&[
        "train",
        "--preset",
        bad.to_str().unwrap(),
        "--data-dir",
        common::mnist_dir().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("learning_rate"),
        "{err}"
    );
}
