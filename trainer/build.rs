//! Emit an rpath to libtorch's folder so that `anges-train` and the trainer's tests run without
//! `LD_LIBRARY_PATH`, and keep libtorch's CUDA library linked when that folder has one.
//!
//! torch-sys declares `links = "tch"` and prints `cargo:libtorch_lib=DIR`, which Cargo hands to
//! direct dependents as `DEP_TCH_LIBTORCH_LIB` (torch-sys's docs call it
//! `DEP_TORCH_SYS_LIBTORCH_LIB`; both names are accepted).
//!
//! CUDA: torch-sys asks for `-ltorch_cuda`, but rustc links with `--as-needed` and nothing in
//! our code or tch's calls a symbol of `libtorch_cuda.so` directly, so the linker dropped it:
//! the binaries then ran without libtorch's CUDA backend, and `--device cuda` found no device on
//! a machine with a GPU (seen on the first GPU machine lent to this project, docs/benchmarks.md).
//! `libtorch_cuda.so` registers that backend when it is loaded, so it must be a `NEEDED` entry:
//! it is linked here with `--no-as-needed`. A CPU-only libtorch has no such file and gets no
//! such flag.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=DEP_TORCH_SYS_LIBTORCH_LIB");
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .or_else(|_| std::env::var("DEP_TORCH_SYS_LIBTORCH_LIB"));
    match dir {
        Ok(dir) if !dir.is_empty() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            // libtorch_cpu.so finds its siblings (libgomp, libc10) through its own RUNPATH.
            if Path::new(&dir).join("libtorch_cuda.so").is_file() {
                println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
            }
        }
        _ => println!(
            "cargo:warning=torch-sys did not report a libtorch folder; anges-train will need \
             LD_LIBRARY_PATH to find libtorch"
        ),
    }
}
