//! Smoke test: the trainer links a working libtorch and can train a tiny model.
//!
//! A two-layer network fits y = 3x − 1 on fixed data with Adam; the test checks the analytic
//! gradient of one linear map first, then that 200 steps reduce the loss by orders of magnitude.

use tch::{Device, Kind, Tensor, nn, nn::Module, nn::OptimizerConfig};

#[test]
fn gradient_of_a_linear_map_matches_the_analytic_value() {
    // loss = sum(w * x) with x = [1, 2, 3]  =>  dloss/dw = x.
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let w = Tensor::zeros([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let loss = (&w * &x).sum(Kind::Float);
    loss.backward();
    let grad: Vec<f32> = Vec::try_from(w.grad()).unwrap();
    assert_eq!(grad, vec![1.0, 2.0, 3.0]);
}

#[test]
fn tiny_model_learns_a_line() {
    // libtorch's generator is process-global: seeded draws need the other tests to wait.
    let _rng = crate::common::torch_rng();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = nn::seq()
        .add(nn::linear(vs.root() / "l1", 1, 16, Default::default()))
        .add_fn(|t| t.relu())
        .add(nn::linear(vs.root() / "l2", 16, 1, Default::default()));
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let xs = Tensor::linspace(-1.0, 1.0, 64, (Kind::Float, Device::Cpu)).unsqueeze(1);
    let ys = &xs * 3.0 - 1.0;

    let first = net
        .forward(&xs)
        .mse_loss(&ys, tch::Reduction::Mean)
        .double_value(&[]);
    let mut last = first;
    for _ in 0..200 {
        let loss = net.forward(&xs).mse_loss(&ys, tch::Reduction::Mean);
        opt.backward_step(&loss);
        last = loss.double_value(&[]);
    }
    assert!(first > 0.5, "initial loss {first} suspiciously small");
    assert!(last < first / 100.0, "loss went from {first} to {last}");
}

/// The shared libraries mapped into this process, by path.
fn mapped_libraries() -> Vec<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("reading /proc/self/maps");
    let mut libs: Vec<std::path::PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains(".so"))
        .map(std::path::PathBuf::from)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

#[test]
fn cuda_backend_is_loaded_when_the_linked_libtorch_has_one() {
    // Touch libtorch so that it is certainly mapped.
    let _ = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    let libs = mapped_libraries();
    let cpu = libs
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
        .unwrap_or_else(|| panic!("libtorch_cpu.so is not mapped: {libs:#?}"));
    let dir = cpu.parent().expect("a folder");
    if dir.join("libtorch_cuda.so").is_file() {
        // libtorch_cuda.so registers the CUDA backend when it is loaded; without it `--device
        // cuda` finds no GPU even on a machine that has one (trainer/build.rs).
        assert!(
            libs.iter()
                .any(|p| p.file_name().is_some_and(|n| n == "libtorch_cuda.so")),
            "{} has libtorch_cuda.so but this binary did not load it",
            dir.display()
        );
    } else {
        eprintln!("{}: a CPU-only libtorch, nothing to check", dir.display());
    }
}
