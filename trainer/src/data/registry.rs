//! The MoleculeNet datasets: file names, canonical download URLs, columns, task type and metric.

use serde::{Deserialize, Serialize};

pub use anges_tracking::metrics::Metric;

/// Classification or regression (`--task-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// Binary labels per task, 0/1 or −1/1 (missing allowed); loss = masked BCE-with-logits.
    Classification,
    /// Real-valued targets.
    Regression,
}

impl TaskType {
    /// `classification` or `regression`, as `--task-type` and the JSON files write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classification => "classification",
            Self::Regression => "regression",
        }
    }
}

/// Which columns hold the tasks.
#[derive(Debug, Clone, Copy)]
pub enum TaskColumns {
    /// The first alternative whose columns are all present (local and DeepChem layouts differ).
    OneOf(&'static [&'static [&'static str]]),
    /// Every column except the SMILES column and these.
    AllExcept(&'static [&'static str]),
}

/// One MoleculeNet dataset.
#[derive(Debug, Clone, Copy)]
pub struct DatasetSpec {
    /// Display name.
    pub name: &'static str,
    /// Lower-case names accepted by `--dataset` (the first is canonical).
    pub aliases: &'static [&'static str],
    /// Lower-case file stems looked for (`<stem>.csv` or `<stem>.csv.gz`, any case).
    pub file_stems: &'static [&'static str],
    /// Canonical MoleculeNet (DeepChem) download URL.
    pub url: &'static str,
    /// SMILES column names, the first present wins.
    pub smiles_columns: &'static [&'static str],
    /// Task columns.
    pub tasks: TaskColumns,
    /// Task type.
    pub task_type: TaskType,
    /// Metrics, the first is the one model selection uses.
    pub metrics: &'static [Metric],
}

const CLASSIFICATION: &[Metric] = &[Metric::RocAuc, Metric::PrcAuc];
const REGRESSION: &[Metric] = &[Metric::Rmse, Metric::Mae];
const SMILES: &[&str] = &["smiles", "mol", "SMILES"];
const BASE: &str = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets";

macro_rules! url {
    ($file:literal) => {
        concat!(
            "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/",
            $file
        )
    };
}

/// Every registered dataset.
pub const DATASETS: &[DatasetSpec] = &[
    classification(
        "BBBP",
        &["bbbp"],
        &["bbbp"],
        url!("BBBP.csv"),
        TaskColumns::OneOf(&[&["p_np"]]),
    ),
    classification(
        "BACE",
        &["bace"],
        &["bace"],
        url!("bace.csv"),
        TaskColumns::OneOf(&[&["Class"]]),
    ),
    classification(
        "ClinTox",
        &["clintox"],
        &["clintox"],
        url!("clintox.csv.gz"),
        TaskColumns::OneOf(&[&["FDA_APPROVED", "CT_TOX"]]),
    ),
    classification(
        "SIDER",
        &["sider"],
        &["sider"],
        url!("sider.csv.gz"),
        TaskColumns::AllExcept(&[]),
    ),
    classification(
        "Tox21",
        &["tox21"],
        &["tox21"],
        url!("tox21.csv.gz"),
        TaskColumns::AllExcept(&["mol_id"]),
    ),
    classification(
        "ToxCast",
        &["toxcast"],
        &["toxcast", "toxcast_data"],
        url!("toxcast_data.csv.gz"),
        TaskColumns::AllExcept(&[]),
    ),
    classification(
        "MUV",
        &["muv"],
        &["muv"],
        url!("muv.csv.gz"),
        TaskColumns::AllExcept(&["mol_id"]),
    ),
    classification(
        "HIV",
        &["hiv"],
        &["hiv"],
        url!("HIV.csv"),
        TaskColumns::OneOf(&[&["HIV_active"]]),
    ),
    regression(
        "ESOL",
        &["esol", "delaney"],
        &["delaney", "delaney-processed", "esol"],
        url!("delaney-processed.csv"),
        TaskColumns::OneOf(&[&["logp"], &["measured log solubility in mols per litre"]]),
    ),
    regression(
        "FreeSolv",
        &["freesolv", "sampl"],
        &["freesolv", "sampl"],
        url!("SAMPL.csv"),
        TaskColumns::OneOf(&[&["freesolv"], &["expt"]]),
    ),
    regression(
        "Lipophilicity",
        &["lipophilicity", "lipo"],
        &["lipo", "lipophilicity"],
        url!("Lipophilicity.csv"),
        TaskColumns::OneOf(&[&["lipo"], &["exp"]]),
    ),
];

const fn classification(
    name: &'static str,
    aliases: &'static [&'static str],
    file_stems: &'static [&'static str],
    url: &'static str,
    tasks: TaskColumns,
) -> DatasetSpec {
    DatasetSpec {
        name,
        aliases,
        file_stems,
        url,
        smiles_columns: SMILES,
        tasks,
        task_type: TaskType::Classification,
        metrics: CLASSIFICATION,
    }
}

const fn regression(
    name: &'static str,
    aliases: &'static [&'static str],
    file_stems: &'static [&'static str],
    url: &'static str,
    tasks: TaskColumns,
) -> DatasetSpec {
    DatasetSpec {
        task_type: TaskType::Regression,
        metrics: REGRESSION,
        ..classification(name, aliases, file_stems, url, tasks)
    }
}

/// The dataset registered under `name` (case-insensitive), if any.
pub fn lookup(name: &str) -> Option<&'static DatasetSpec> {
    let lower = name.to_ascii_lowercase();
    DATASETS
        .iter()
        .find(|d| d.aliases.contains(&lower.as_str()))
}

/// The canonical names of all registered datasets.
pub fn names() -> Vec<&'static str> {
    DATASETS.iter().map(|d| d.aliases[0]).collect()
}

/// The base of the canonical download URLs (DeepChem's MoleculeNet bucket).
pub fn default_download_base() -> &'static str {
    BASE
}

impl DatasetSpec {
    /// The file name of the download (the last segment of [`DatasetSpec::url`]).
    pub fn download_file_name(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.url)
    }

    /// Picks the SMILES column and the task columns out of a CSV header.
    pub fn select_columns(&self, header: &[String]) -> Option<(String, Vec<String>)> {
        let smiles = self
            .smiles_columns
            .iter()
            .find(|c| header.iter().any(|h| h == *c))?;
        let tasks: Vec<String> = match self.tasks {
            TaskColumns::OneOf(alternatives) => alternatives
                .iter()
                .find(|alt| alt.iter().all(|c| header.iter().any(|h| h == c)))?
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            TaskColumns::AllExcept(except) => header
                .iter()
                .filter(|h| h.as_str() != *smiles && !except.contains(&h.as_str()))
                .cloned()
                .collect(),
        };
        (!tasks.is_empty()).then(|| ((*smiles).to_owned(), tasks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_columns() {
        assert_eq!(lookup("Esol").unwrap().name, "ESOL");
        assert_eq!(lookup("delaney").unwrap().name, "ESOL");
        assert!(lookup("qm9").is_none());
        assert_eq!(names().len(), 11);
        let h = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        let esol = lookup("esol").unwrap();
        assert_eq!(
            esol.select_columns(&h("smiles,logp")),
            Some(("smiles".into(), vec!["logp".into()]))
        );
        let deepchem = h("Compound ID,measured log solubility in mols per litre,smiles");
        assert_eq!(esol.select_columns(&deepchem).unwrap().1[0], deepchem[1]);
        let tox21 = lookup("tox21").unwrap();
        assert_eq!(
            tox21
                .select_columns(&h("NR-AR,SR-p53,mol_id,smiles"))
                .unwrap()
                .1,
            h("NR-AR,SR-p53")
        );
        assert_eq!(
            lookup("bace")
                .unwrap()
                .select_columns(&h("mol,CID,Class"))
                .unwrap()
                .0,
            "mol"
        );
        assert_eq!(lookup("hiv").unwrap().download_file_name(), "HIV.csv");
        assert!(
            lookup("bbbp")
                .unwrap()
                .select_columns(&h("smiles,other"))
                .is_none()
        );
        assert!(Metric::RocAuc.higher_is_better() && !Metric::Rmse.higher_is_better());
    }
}
