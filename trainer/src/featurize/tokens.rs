//! SMILES tokenisers for the 1D (Transformer) models.
//!
//! Two kinds, behind one [`SmilesTokenizer`]:
//! - the atom-level regex tokeniser of Schwaller et al. (bracket atoms, two-letter halogens,
//!   ring-closure `%nn`, bonds and branches each one token) with a BERT-style vocabulary file
//!   (`vocab.txt`, one token per line, ids = line numbers) or a vocabulary built from a corpus;
//!   with [`Representation::Selfies`] the same tokeniser reads SMILES, translates each into
//!   SELFIES ([`crate::chem::selfies`]) and makes one token per bracketed symbol (and `.`), over a
//!   vocabulary of SELFIES symbols built and saved the same way;
//! - a Hugging Face `tokenizer.json` loaded with the `tokenizers` crate (pure Rust, no download),
//!   so ChemBERTa-style checkpoints are tokenised exactly as published.
//!
//! Encoded sequences carry the tokeniser's begin/end special tokens and are truncated to a
//! maximum length (keeping the end token); padding is left to the batcher ([`SmilesTokenizer::pad_id`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::chem::selfies::{self, SelfiesError};

/// The key of a 1D folder's `config.json` that records the representation it was trained on.
pub const REPRESENTATION_KEY: &str = "representation";

/// The string form a 1D model reads (`--representation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Representation {
    /// SMILES (the 1D model: atom-level regex tokens).
    #[default]
    Smiles,
    /// SELFIES, Krenn et al. 2020 (the 1D model: one token per symbol).
    Selfies,
}

impl Representation {
    /// `smiles` or `selfies`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Smiles => "smiles",
            Self::Selfies => "selfies",
        }
    }

    /// Whether this is SMILES (the default, left out of some records).
    pub fn is_smiles(&self) -> bool {
        *self == Self::Smiles
    }
}

impl std::fmt::Display for Representation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Token ids of one SMILES, special tokens included, unpadded.
pub type TokenIds = Vec<i64>;

/// The special tokens of the regex tokeniser's vocabulary, at ids 0..5 in this order.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// The atom-level SMILES regex (Schwaller et al., "Molecular Transformer", 2019).
const SMILES_REGEX: &str = r"(\[[^\]]+\]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])";

/// Tokenisation failures.
#[derive(Debug, Error)]
pub enum TokenizeError {
    /// Some characters of the SMILES match no token of the regex.
    #[error("SMILES {smiles:?} has characters no token covers at byte {offset}")]
    Uncovered {
        /// The SMILES.
        smiles: String,
        /// Byte offset of the first uncovered character.
        offset: usize,
    },
    /// A vocabulary or tokenizer file could not be read, parsed or written.
    #[error("tokenizer file {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The Hugging Face tokenizer failed on an input.
    #[error("tokenizer failed on {smiles:?}: {message}")]
    Encode {
        /// The SMILES.
        smiles: String,
        /// What went wrong.
        message: String,
    },
    /// A maximum length too small to hold the begin and end tokens.
    #[error("maximum sequence length {0} is too small (at least 3)")]
    MaxLen(usize),
    /// The molecule has no SELFIES (SELFIES cannot express it, or the SMILES is unreadable).
    #[error("SMILES {smiles:?} has no SELFIES: {source}")]
    Selfies {
        /// The SMILES.
        smiles: String,
        /// Why.
        source: SelfiesError,
    },
    /// A tokeniser that cannot read the representation asked for.
    #[error("{0}")]
    Representation(String),
}

fn smiles_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // The pattern is a compile-time constant covered by the tests below.
    RE.get_or_init(|| Regex::new(SMILES_REGEX).unwrap_or_else(|e| unreachable!("{e}")))
}

/// Splits a SMILES string into atom-level tokens; every character must belong to a token.
pub fn split_smiles(smiles: &str) -> Result<Vec<&str>, TokenizeError> {
    let mut tokens = Vec::new();
    let mut at = 0;
    for m in smiles_regex().find_iter(smiles) {
        if m.start() != at {
            return Err(TokenizeError::Uncovered {
                smiles: smiles.to_owned(),
                offset: at,
            });
        }
        tokens.push(m.as_str());
        at = m.end();
    }
    if at != smiles.len() {
        return Err(TokenizeError::Uncovered {
            smiles: smiles.to_owned(),
            offset: at,
        });
    }
    Ok(tokens)
}

/// The SELFIES of `smiles` split into its symbols (one token per bracketed symbol, and `.`).
pub fn selfies_tokens(smiles: &str) -> Result<Vec<String>, TokenizeError> {
    let failed = |source| TokenizeError::Selfies {
        smiles: smiles.to_owned(),
        source,
    };
    let text = selfies::encode(smiles).map_err(failed)?;
    let symbols = selfies::split_symbols(&text).map_err(failed)?;
    Ok(symbols.into_iter().map(str::to_owned).collect())
}

/// Atom-level regex tokeniser with a fixed vocabulary (unknown tokens map to `[UNK]`); over
/// SMILES tokens or, with [`Representation::Selfies`], SELFIES symbols.
#[derive(Debug, Clone)]
pub struct RegexTokenizer {
    vocab: Vec<String>,
    ids: HashMap<String, i64>,
    representation: Representation,
}

impl RegexTokenizer {
    /// Builds a SMILES vocabulary: the special tokens, then every token seen in `corpus`, sorted.
    pub fn from_corpus<'a>(corpus: impl IntoIterator<Item = &'a str>) -> Self {
        Self::from_corpus_as(corpus, Representation::Smiles)
    }

    /// Builds a vocabulary of `representation`'s tokens seen in the SMILES of `corpus` (the
    /// special tokens first, then the tokens sorted). Molecules without SELFIES add nothing;
    /// [`SmilesTokenizer::encode`] reports them.
    pub fn from_corpus_as<'a>(
        corpus: impl IntoIterator<Item = &'a str>,
        representation: Representation,
    ) -> Self {
        let mut seen = BTreeSet::new();
        for smiles in corpus {
            match representation {
                // Uncovered characters only cost a token here; encode() reports them.
                Representation::Smiles => {
                    for m in smiles_regex().find_iter(smiles) {
                        seen.insert(m.as_str().to_owned());
                    }
                }
                Representation::Selfies => {
                    if let Ok(tokens) = selfies_tokens(smiles) {
                        seen.extend(tokens);
                    }
                }
            }
        }
        let vocab = SPECIAL_TOKENS
            .iter()
            .map(|s| (*s).to_owned())
            .chain(
                seen.into_iter()
                    .filter(|t| !SPECIAL_TOKENS.contains(&t.as_str())),
            )
            .collect();
        Self::from_vocab(vocab, representation)
    }

    /// Uses `vocab` (id = position); it must start with [`SPECIAL_TOKENS`].
    fn from_vocab(vocab: Vec<String>, representation: Representation) -> Self {
        let ids = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as i64))
            .collect();
        Self {
            vocab,
            ids,
            representation,
        }
    }

    /// The representation its tokens are of.
    pub fn representation(&self) -> Representation {
        self.representation
    }

    /// Reads a SMILES `vocab.txt` (one token per line; the five special tokens first).
    pub fn from_vocab_file(path: &Path) -> Result<Self, TokenizeError> {
        Self::from_vocab_file_as(path, Representation::Smiles)
    }

    /// Reads a `vocab.txt` of `representation`'s tokens. A SELFIES vocabulary must hold SELFIES
    /// symbols (`[...]` or `.`): a SMILES one is refused, naming a token that gives it away.
    pub fn from_vocab_file_as(
        path: &Path,
        representation: Representation,
    ) -> Result<Self, TokenizeError> {
        let load = |message: String| TokenizeError::Load {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| load(e.to_string()))?;
        let vocab: Vec<String> = text.lines().map(str::to_owned).collect();
        if vocab.len() < SPECIAL_TOKENS.len()
            || vocab[..SPECIAL_TOKENS.len()]
                .iter()
                .zip(SPECIAL_TOKENS)
                .any(|(a, b)| a != b)
        {
            return Err(load(format!(
                "the first lines must be the special tokens {SPECIAL_TOKENS:?}"
            )));
        }
        if representation == Representation::Selfies
            && let Some(t) = vocab[SPECIAL_TOKENS.len()..]
                .iter()
                .find(|t| !(*t == "." || (t.starts_with('[') && t.ends_with(']'))))
        {
            return Err(load(format!(
                "a SMILES vocabulary (token {t:?} is no SELFIES symbol), but the representation \
                 is selfies"
            )));
        }
        Ok(Self::from_vocab(vocab, representation))
    }

    /// Writes the vocabulary as `vocab.txt`.
    pub fn save_vocab(&self, path: &Path) -> std::io::Result<()> {
        let mut text = self.vocab.join("\n");
        text.push('\n');
        std::fs::write(path, text)
    }

    /// The vocabulary, id = position.
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    fn id(&self, token: &str) -> i64 {
        self.ids.get(token).copied().unwrap_or(1)
    }

    /// Token ids of `smiles` between the begin and end tokens.
    fn ids_of(&self, smiles: &str) -> Result<TokenIds, TokenizeError> {
        let mut ids = vec![2];
        match self.representation {
            Representation::Smiles => {
                ids.extend(split_smiles(smiles)?.iter().map(|tok| self.id(tok)));
            }
            Representation::Selfies => {
                ids.extend(selfies_tokens(smiles)?.iter().map(|tok| self.id(tok)));
            }
        }
        ids.push(3);
        Ok(ids)
    }
}

/// A SMILES tokeniser for the 1D models.
#[derive(Debug, Clone)]
pub enum SmilesTokenizer {
    /// Atom-level regex tokeniser.
    Regex(RegexTokenizer),
    /// A Hugging Face `tokenizer.json`.
    HuggingFace(Box<tokenizers::Tokenizer>),
}

impl SmilesTokenizer {
    /// Loads `tokenizer.json` (Hugging Face) or `vocab.txt` (regex tokeniser) of SMILES; a
    /// folder is searched for `tokenizer.json`, then `vocab.txt`.
    pub fn from_path(path: &Path) -> Result<Self, TokenizeError> {
        Self::from_path_as(path, Representation::Smiles)
    }

    /// [`SmilesTokenizer::from_path`] for `representation`: SELFIES needs a `vocab.txt` of
    /// SELFIES symbols (a Hugging Face `tokenizer.json` tokenises SMILES and is refused).
    pub fn from_path_as(
        path: &Path,
        representation: Representation,
    ) -> Result<Self, TokenizeError> {
        if path.is_dir() {
            for name in ["tokenizer.json", "vocab.txt"] {
                let candidate = path.join(name);
                if candidate.is_file() {
                    return Self::from_path_as(&candidate, representation);
                }
            }
            return Err(TokenizeError::Load {
                path: path.to_owned(),
                message: "folder holds neither tokenizer.json nor vocab.txt".into(),
            });
        }
        if path.extension().is_some_and(|e| e == "json") {
            if representation == Representation::Selfies {
                return Err(TokenizeError::Representation(format!(
                    "{}: a Hugging Face tokenizer.json tokenises SMILES; SELFIES needs a vocab.txt \
                     of SELFIES symbols (or none: the corpus' symbols)",
                    path.display()
                )));
            }
            tokenizers::Tokenizer::from_file(path)
                .map(|t| Self::HuggingFace(Box::new(t)))
                .map_err(|e| TokenizeError::Load {
                    path: path.to_owned(),
                    message: e.to_string(),
                })
        } else {
            RegexTokenizer::from_vocab_file_as(path, representation).map(Self::Regex)
        }
    }

    /// The representation it reads: SMILES, or SELFIES for a regex tokeniser built for it.
    pub fn representation(&self) -> Representation {
        match self {
            Self::Regex(t) => t.representation,
            Self::HuggingFace(_) => Representation::Smiles,
        }
    }

    /// Number of token ids (embedding rows needed).
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Regex(t) => t.vocab.len(),
            Self::HuggingFace(t) => t.get_vocab_size(true),
        }
    }

    /// Id of the padding token.
    pub fn pad_id(&self) -> i64 {
        match self {
            Self::Regex(_) => 0,
            Self::HuggingFace(t) => t
                .get_padding()
                .map(|p| i64::from(p.pad_id))
                .or_else(|| hf_id(t, &["<pad>", "[PAD]"]))
                .unwrap_or(0),
        }
    }

    /// Id of the mask token (masked-language modelling), if the vocabulary has one.
    pub fn mask_id(&self) -> Option<i64> {
        match self {
            Self::Regex(_) => Some(4),
            Self::HuggingFace(t) => hf_id(t, &["<mask>", "[MASK]"]),
        }
    }

    /// Ids of the special tokens (padding, unknown, begin/end, mask, …): never a target or a
    /// replacement in masked-language modelling.
    pub fn special_ids(&self) -> Vec<i64> {
        match self {
            Self::Regex(_) => (0..SPECIAL_TOKENS.len() as i64).collect(),
            Self::HuggingFace(t) => {
                let mut ids: Vec<i64> = t
                    .get_added_tokens_decoder()
                    .iter()
                    .filter(|(_, token)| token.special)
                    .map(|(&id, _)| i64::from(id))
                    .collect();
                ids.sort_unstable();
                ids
            }
        }
    }

    /// Writes the tokeniser into `dir` as `vocab.txt` (regex) or `tokenizer.json` (Hugging
    /// Face), so that [`SmilesTokenizer::from_path`] reads it back; returns the file written.
    pub fn save_into(&self, dir: &Path) -> Result<PathBuf, TokenizeError> {
        let (path, result) = match self {
            Self::Regex(t) => {
                let path = dir.join("vocab.txt");
                let result = t.save_vocab(&path).map_err(|e| e.to_string());
                (path, result)
            }
            Self::HuggingFace(t) => {
                let path = dir.join("tokenizer.json");
                let result = t.save(&path, true).map_err(|e| e.to_string());
                (path, result)
            }
        };
        result.map_err(|message| TokenizeError::Load {
            path: path.clone(),
            message,
        })?;
        Ok(path)
    }

    /// Encodes one SMILES with begin/end special tokens, truncated to `max_len` ids (for a
    /// SELFIES tokeniser: the ids of its SELFIES symbols).
    pub fn encode(&self, smiles: &str, max_len: usize) -> Result<TokenIds, TokenizeError> {
        if max_len < 3 {
            return Err(TokenizeError::MaxLen(max_len));
        }
        let mut ids = match self {
            Self::Regex(t) => t.ids_of(smiles)?,
            Self::HuggingFace(t) => t
                .encode(smiles, true)
                .map_err(|e| TokenizeError::Encode {
                    smiles: smiles.to_owned(),
                    message: e.to_string(),
                })?
                .get_ids()
                .iter()
                .map(|&i| i64::from(i))
                .collect(),
        };
        if ids.len() > max_len {
            let last = ids[ids.len() - 1];
            ids.truncate(max_len - 1);
            ids.push(last);
        }
        Ok(ids)
    }
}

fn hf_id(t: &tokenizers::Tokenizer, names: &[&str]) -> Option<i64> {
    names.iter().find_map(|n| t.token_to_id(n)).map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_atoms() {
        assert_eq!(
            split_smiles("C[C@@H](Cl)c1ccccc1Br.[Na+]%10").unwrap(),
            vec![
                "C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "c", "c", "1", "Br", ".",
                "[Na+]", "%10"
            ]
        );
        assert!(matches!(
            split_smiles("CC&C"),
            Err(TokenizeError::Uncovered { offset: 2, .. })
        ));
    }

    #[test]
    fn regex_vocab_round_trip() {
        let t = RegexTokenizer::from_corpus(["CCO", "c1ccccc1Cl"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocab.txt");
        t.save_vocab(&path).unwrap();
        let tok = SmilesTokenizer::from_path(&path).unwrap();
        assert_eq!(tok.vocab_size(), 5 + 5); // C, Cl, O, c, 1
        let ids = tok.encode("CCO", 10).unwrap();
        assert_eq!(ids.len(), 5);
        assert_eq!((ids[0], ids[4]), (2, 3));
        assert_eq!(tok.encode("CCN", 10).unwrap()[3], 1, "unknown token");
        assert_eq!(tok.special_ids(), vec![0, 1, 2, 3, 4]);
        let copy = tempfile::tempdir().unwrap();
        let written = tok.save_into(copy.path()).unwrap();
        assert!(written.ends_with("vocab.txt"));
        let again = SmilesTokenizer::from_path(copy.path()).unwrap();
        assert_eq!(
            again.encode("c1ccccc1Cl", 16).unwrap(),
            tok.encode("c1ccccc1Cl", 16).unwrap()
        );
        let cut = tok.encode("CCCCCCCC", 4).unwrap();
        assert_eq!(cut, vec![2, ids[1], ids[1], 3]);
        assert!(tok.encode("CC", 2).is_err());
    }

    #[test]
    fn selfies_vocabularies_hold_symbols() {
        let t = RegexTokenizer::from_corpus_as(
            ["C=CF", "c1ccccc1", "CN(=O)=O", "[Na+].[Cl-]"],
            Representation::Selfies,
        );
        let symbols: Vec<&str> = t.vocab()[5..].iter().map(String::as_str).collect();
        // The nitro compound has no SELFIES and adds nothing.
        assert_eq!(
            symbols,
            [
                ".",
                "[=Branch1]",
                "[=C]",
                "[C]",
                "[Cl-1]",
                "[F]",
                "[Na+1]",
                "[Ring1]"
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let tok = SmilesTokenizer::Regex(t);
        tok.save_into(dir.path()).unwrap();
        let back = SmilesTokenizer::from_path_as(dir.path(), Representation::Selfies).unwrap();
        assert_eq!(back.representation(), Representation::Selfies);
        let ids = back.encode("C=CF", 16).unwrap();
        assert_eq!(ids, vec![2, 8, 7, 10, 3], "[CLS] [C] [=C] [F] [SEP]");
        assert_eq!(back.encode("C=CCl", 16).unwrap()[3], 1, "[Cl] is unknown");
        assert!(matches!(
            back.encode("CN(=O)=O", 16),
            Err(TokenizeError::Selfies { .. })
        ));
        // The same file read as SMILES tokenises SMILES; a SMILES vocabulary is no SELFIES one.
        let smiles = SmilesTokenizer::from_path(dir.path()).unwrap();
        assert_eq!(smiles.representation(), Representation::Smiles);
        let smiles_vocab = tempfile::tempdir().unwrap();
        SmilesTokenizer::Regex(RegexTokenizer::from_corpus(["CCO"]))
            .save_into(smiles_vocab.path())
            .unwrap();
        let err = SmilesTokenizer::from_path_as(smiles_vocab.path(), Representation::Selfies)
            .unwrap_err()
            .to_string();
        assert!(err.contains("SMILES vocabulary"), "{err}");
    }

    #[test]
    fn loads_hugging_face_tokenizer_json() {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
          "normalizer":null,"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(\\[[^\\]]+\\]|Cl|Br|.)"},
          "behavior":"Isolated","invert":false},
          "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},
            {"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],
            "pair":[{"Sequence":{"id":"A","type_id":0}}],
            "special_tokens":{"<s>":{"id":"<s>","ids":[0],"tokens":["<s>"]},
                              "</s>":{"id":"</s>","ids":[2],"tokens":["</s>"]}}},
          "decoder":null,
          "model":{"type":"WordLevel","vocab":{"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"<mask>":4,
            "C":5,"O":6,"Cl":7,"[NH4+]":8},"unk_token":"<unk>"}}"#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), json).unwrap();
        let tok = SmilesTokenizer::from_path(dir.path()).unwrap();
        assert_eq!(
            tok.encode("CCl[NH4+]O", 16).unwrap(),
            vec![0, 5, 7, 8, 6, 2]
        );
        assert_eq!(tok.pad_id(), 1);
        assert_eq!(tok.mask_id(), Some(4));
        assert_eq!(tok.vocab_size(), 9);
        let err = SmilesTokenizer::from_path_as(dir.path(), Representation::Selfies)
            .unwrap_err()
            .to_string();
        assert!(err.contains("SELFIES needs a vocab.txt"), "{err}");
    }
}
