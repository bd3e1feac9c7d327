//! Every preset under models/ is accepted by `train --preset` (with flags overriding its fields),
//! and a malformed preset is refused with a message naming the file and the key.

mod common;

#[test]
fn every_preset_trains_with_overrides() {
    let mnist = common::mnist_dir();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut seen = 0;
    for entry in std::fs::read_dir(&models).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        // Flags override the preset: MNIST data, tiny network, one sweep.
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
            "--hidden",
            "8",
            "--iterations",
            "1",
            "--epochs",
            "1",
        ]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Exactly one sweep (or one mini-batch epoch) ran: the override won over the preset.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("finished 1 iterations") || stdout.contains("finished 1 epochs"),
            "{}: {stdout}",
            path.display()
        );
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
