//! Emit an rpath to libtorch's folder so that `anges-train` and the trainer's tests run without
//! `LD_LIBRARY_PATH`.
//!
//! torch-sys declares `links = "tch"` and prints `cargo:libtorch_lib=DIR`, which Cargo hands to
//! direct dependents as `DEP_TCH_LIBTORCH_LIB` (torch-sys's docs call it
//! `DEP_TORCH_SYS_LIBTORCH_LIB`; both names are accepted).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=DEP_TORCH_SYS_LIBTORCH_LIB");
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .or_else(|_| std::env::var("DEP_TORCH_SYS_LIBTORCH_LIB"));
    match dir {
        Ok(dir) if !dir.is_empty() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            // libtorch_cpu.so finds its siblings (libgomp, libc10) through its own RUNPATH.
        }
        _ => println!(
            "cargo:warning=torch-sys did not report a libtorch folder; anges-train will need \
             LD_LIBRARY_PATH to find libtorch"
        ),
    }
}
