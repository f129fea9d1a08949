//! The binaries start, explain themselves, and find libtorch without LD_LIBRARY_PATH.

use std::process::Command;

use anges_e2e::binary;

fn help_of(package: &str, bin: &str) -> String {
    let path = binary(package, bin).expect("binary");
    let out = Command::new(&path)
        .arg("--help")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn meterd_help_lists_its_options() {
    let help = help_of("anges-meterd", "anges-meterd");
    for flag in [
        "--user",
        "--socket",
        "--sensor",
        "--rate-hz",
        "--sysfs-root",
        "--intensity",
        "--pue",
    ] {
        assert!(
            help.contains(flag),
            "anges-meterd --help lacks {flag}:\n{help}"
        );
    }
}

#[test]
fn train_help_lists_its_options_and_subcommands() {
    let help = help_of("anges-trainer", "anges-train");
    for word in [
        "--dataset",
        "--model",
        "--stop",
        "--beta",
        "--prune",
        "--keep-ratio",
        "--meter",
        "pretrain",
        "replay",
        "study",
    ] {
        assert!(
            help.contains(word),
            "anges-train --help lacks {word}:\n{help}"
        );
    }
}

#[test]
fn anges_train_resolves_libtorch_through_its_rpath() {
    let path = binary("anges-trainer", "anges-train").expect("binary");
    let out = Command::new("ldd")
        .arg(&path)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd failed: {text}");
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
    let torch = text
        .lines()
        .find(|l| l.contains("libtorch_cpu.so"))
        .unwrap_or_else(|| panic!("libtorch_cpu.so not linked:\n{text}"));
    assert!(
        torch.contains("=> /"),
        "libtorch_cpu.so not resolved to a path: {torch}"
    );
}
