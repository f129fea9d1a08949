//! Parity of the Rust featurisation with RDKit (the oracle script) on whole MoleculeNet sets:
//! pretrain-gnns atom features, bond features, edge lists and Murcko scaffold strings, row by
//! row. A row where both sides reject the molecule (RDKit `MolFromSmiles` returns None / the Rust
//! parser errs; or both find a feature outside the pretrain-gnns vocabularies) counts as a match:
//! the molecule is skipped consistently on both sides.

use crate::common;

use anges_trainer::data::registry;
use anges_trainer::data::table::read_table;
use anges_trainer::data::{Row, Skip, SkipKind};

fn status_of(r: &Result<Row, Skip>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(s) => match s.kind {
            SkipKind::InvalidSmiles | SkipKind::TooLong => "parse_error",
            SkipKind::EmptyMolecule => "empty",
            SkipKind::UnsupportedFeature => "unsupported",
            SkipKind::Scaffold => "scaffold_error",
            SkipKind::BackendPanic => "backend_panic",
        },
    }
}

fn parity(dataset: &str, file: &str, required: f64) {
    let path = common::moleculenet_dir().join(file);
    let oracle = common::oracle(&path);
    let spec = registry::lookup(dataset).unwrap();
    let header = anges_trainer::data::table::read_header(&path).unwrap();
    let (smiles, tasks) = spec.select_columns(&header).unwrap();
    let table = read_table(&path, &smiles, &tasks).unwrap();
    assert_eq!(oracle.rows.len(), table.smiles.len(), "row counts differ");

    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (rows, skipped) = anges_trainer::data::dataset::featurize_table(&table, threads);
    let mut ours: Vec<Option<Result<Row, Skip>>> = (0..table.smiles.len()).map(|_| None).collect();
    for r in rows {
        let i = r.row;
        ours[i] = Some(Ok(r));
    }
    for s in skipped {
        let i = s.row;
        ours[i] = Some(Err(s));
    }

    let (mut same, mut both_skipped) = (0usize, 0usize);
    let mut mismatches = Vec::new();
    for (o, r) in oracle.rows.iter().zip(&ours) {
        let r = r.as_ref().expect("every row is featurised or skipped");
        let status = status_of(r);
        let mut diffs = Vec::new();
        if status != o.status {
            diffs.push(format!(
                "status rust={status} ({}) rdkit={} ({})",
                r.as_ref().err().map_or("", |s| s.message.as_str()),
                o.status,
                o.reason.as_deref().unwrap_or("")
            ));
        } else if let Ok(row) = r {
            if row.graph.x != o.x {
                diffs.push(format!("atoms rust={:?} rdkit={:?}", row.graph.x, o.x));
            }
            if row.graph.edge_index != o.edge_index {
                diffs.push(format!(
                    "edges rust={:?} rdkit={:?}",
                    row.graph.edge_index, o.edge_index
                ));
            }
            if row.graph.edge_attr != o.edge_attr {
                diffs.push(format!(
                    "bond features rust={:?} rdkit={:?}",
                    row.graph.edge_attr, o.edge_attr
                ));
            }
            if Some(&row.scaffold) != o.scaffold.as_ref() {
                diffs.push(format!(
                    "scaffold rust={:?} rdkit={:?}",
                    row.scaffold, o.scaffold
                ));
            }
        } else {
            both_skipped += 1;
        }
        if diffs.is_empty() {
            same += 1;
        } else {
            mismatches.push(format!(
                "row {} {:?}: {}",
                o.row,
                table.smiles[o.row],
                diffs.join("; ")
            ));
        }
    }
    let n = oracle.rows.len();
    let rate = same as f64 / n as f64;
    println!(
        "{dataset}: {same}/{n} rows identical to RDKit {} ({:.3} %), {both_skipped} skipped by both, {} mismatches",
        oracle.rdkit_version,
        100.0 * rate,
        mismatches.len()
    );
    for m in mismatches.iter().take(10) {
        println!("  mismatch: {m}");
    }
    assert!(
        rate >= required,
        "{dataset}: parity {:.3} % below the required {:.1} %",
        100.0 * rate,
        100.0 * required
    );
}

#[test]
fn bbbp_matches_rdkit_exactly() {
    parity("bbbp", "BBBP.csv", 1.0);
}

#[test]
fn bace_matches_rdkit_exactly() {
    parity("bace", "bace.csv", 1.0);
}

#[test]
fn sider_matches_rdkit_exactly() {
    parity("sider", "sider.csv", 1.0);
}

#[test]
fn clintox_matches_rdkit() {
    parity("clintox", "clintox.csv", 0.999);
}

#[test]
fn tox21_matches_rdkit() {
    parity("tox21", "tox21.csv", 0.999);
}

#[test]
fn esol_matches_rdkit() {
    parity("esol", "delaney.csv", 0.999);
}

#[test]
fn hiv_matches_rdkit() {
    parity("hiv", "HIV.csv.gz", 0.999);
}
