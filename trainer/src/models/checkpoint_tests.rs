//! Loading the shipped pretrain-gnns checkpoints into the 2D models ([`crate::checkpoint`]
//! into [`super::gnn`]; here, so that `checkpoint` does not depend on `models`): exact loading,
//! every kind of key mismatch reported at once, and truncated or corrupted files giving errors,
//! never panics.

use std::path::PathBuf;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::*;
use crate::models::{Gnn, GnnConfig, GnnKind, HEAD_PREFIX};

fn shipped(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/models/pretrain-gnns")
        .join(name);
    assert!(p.exists(), "test input {} is missing", p.display());
    p
}

fn model(kind: GnnKind, emb_dim: i64) -> VarStore {
    let _rng = crate::test_support::torch_rng();
    let vs = VarStore::new(Device::Cpu);
    Gnn::new(
        &vs.root(),
        GnnConfig {
            kind,
            emb_dim,
            num_tasks: 3,
            ..Default::default()
        },
    )
    .unwrap();
    vs
}

fn partial() -> LoadOptions {
    LoadOptions {
        allow_missing_prefixes: vec![HEAD_PREFIX.into()],
        strip_prefix: None,
    }
}

#[test]
fn legacy_cuda_checkpoint_loads_onto_cpu_by_name() {
    let state = read_state_dict(&shipped("gcn_contextpred.pth")).unwrap();
    assert_eq!(state.len(), 2 + 5 * 4 + 5 * 5);
    let (name, emb) = &state[0];
    assert_eq!(name, "x_embedding1.weight");
    assert_eq!(
        (emb.size(), emb.kind(), emb.device()),
        (vec![120, 300], Kind::Float, Device::Cpu)
    );
    let tracked = state
        .iter()
        .find(|(k, _)| k == "batch_norms.0.num_batches_tracked")
        .unwrap();
    assert_eq!((tracked.1.size(), tracked.1.kind()), (vec![], Kind::Int64));

    let vs = model(GnnKind::Gcn, 300);
    let report = load_into(&vs, state, &partial()).unwrap();
    assert_eq!(report.loaded.len(), 47);
    assert_eq!(
        report.kept,
        vec!["graph_pred_linear.bias", "graph_pred_linear.weight"]
    );
    let again = read_state_dict(&shipped("gcn_contextpred.pth")).unwrap();
    let var = vs.variables()["gnns.3.linear.weight"].shallow_clone();
    let src = &again
        .iter()
        .find(|(k, _)| k == "gnns.3.linear.weight")
        .unwrap()
        .1;
    assert_eq!(f64::try_from((var - src).abs().max()).unwrap(), 0.0);
}

#[test]
fn mismatches_are_listed_together() {
    let state = || read_state_dict(&shipped("gcn_contextpred.pth")).unwrap();
    // Head missing without --allow-partial.
    let err = load_into(&model(GnnKind::Gcn, 300), state(), &LoadOptions::default()).unwrap_err();
    let CheckpointError::Mismatch(m) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        m.missing,
        vec!["graph_pred_linear.bias", "graph_pred_linear.weight"]
    );
    assert!(m.unknown.is_empty() && m.mis_shaped.is_empty());
    assert!(err.to_string().contains("graph_pred_linear.weight"));

    // A GCN checkpoint in a GIN: GIN's MLP missing, GCN's linear unknown.
    let Err(CheckpointError::Mismatch(m)) =
        load_into(&model(GnnKind::Gin, 300), state(), &partial())
    else {
        panic!("GCN weights loaded into a GIN")
    };
    assert_eq!(m.missing.len(), 20, "{:?}", m.missing);
    assert!(m.missing.contains(&"gnns.0.mlp.0.weight".to_string()));
    assert_eq!(m.unknown.len(), 10);
    assert!(m.unknown.contains(&"gnns.4.linear.bias".to_string()));

    // Wrong width: every tensor mis-shaped except the scalar counters.
    let Err(CheckpointError::Mismatch(m)) =
        load_into(&model(GnnKind::Gcn, 64), state(), &partial())
    else {
        panic!("300-wide weights loaded into a 64-wide model")
    };
    assert_eq!(m.mis_shaped.len(), 42, "{:?}", m.mis_shaped);
    assert!(m.missing.is_empty() && m.unknown.is_empty());
    assert!(
        m.mis_shaped
            .iter()
            .any(|s| s.starts_with("x_embedding1.weight: [120, 300]"))
    );

    // An extra key is unknown; nothing is written when the checkpoint does not fit.
    let vs = model(GnnKind::Gcn, 300);
    let before = vs.variables()["x_embedding1.weight"].copy();
    let mut s = state();
    s.push((
        "extra.weight".into(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    ));
    let Err(CheckpointError::Mismatch(m)) = load_into(&vs, s, &partial()) else {
        panic!("extra key accepted")
    };
    assert_eq!(m.unknown, vec!["extra.weight"]);
    assert!(vs.variables()["x_embedding1.weight"].equal(&before));
}

#[test]
fn prefixed_keys_load_with_strip_prefix() {
    let state: StateDict = read_state_dict(&shipped("gcn_contextpred.pth"))
        .unwrap()
        .into_iter()
        .map(|(k, v)| (format!("gnn.{k}"), v))
        .collect();
    let opts = LoadOptions {
        strip_prefix: Some("gnn.".into()),
        ..partial()
    };
    assert_eq!(
        load_into(&model(GnnKind::Gcn, 300), state, &opts)
            .unwrap()
            .loaded
            .len(),
        47
    );
}

#[test]
fn truncated_or_corrupt_files_are_errors() {
    let data = std::fs::read(shipped("gcn_contextpred.pth")).unwrap();
    for cut in [
        0,
        1,
        2,
        20,
        140,
        3000,
        7013,
        7100,
        data.len() / 2,
        data.len() - 1,
    ] {
        let err = parse_state_dict(&data[..cut]).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.is_empty(), "cut {cut}");
    }
    let mut corrupt = data.clone();
    corrupt[200] = 0xff; // inside the state dict pickle
    assert!(parse_state_dict(&corrupt).is_err());
    assert!(matches!(
        parse_state_dict(b"hello world"),
        Err(CheckpointError::Format(_))
    ));
    let err = parse_state_dict(&data[..data.len() - 1]).unwrap_err();
    assert!(matches!(err, CheckpointError::Truncated(_)), "{err}");
}

#[test]
fn safetensors_round_trip() {
    let vs = model(GnnKind::Gin, 32);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_safetensors(&vs, &path).unwrap();
    let back = model(GnnKind::Gin, 32);
    let report = load_file_into(&back, &path, &LoadOptions::default()).unwrap();
    assert_eq!(report.loaded.len(), vs.variables().len());
    let (a, b) = (vs.variables(), back.variables());
    for (k, v) in &a {
        assert!(v.equal(&b[k]), "{k} differs after a round trip");
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(parse_state_dict(&bytes[..bytes.len() / 2]).is_err());
}
