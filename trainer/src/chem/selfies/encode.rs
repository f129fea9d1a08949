//! SMILES → SELFIES (`selfies.encoder`, strict, default constraints).
//!
//! The SMILES is read in its own order ([`super::smiles::read`]) and kekulised; an atom with more
//! bonds than its capacity is refused (SELFIES could not write it). Atoms are then derived in
//! string order: each atom's symbol carries the bond that reaches it (`[=C]`, `[/N]`); of an
//! atom's out-bonds, a ring bond closing back to an earlier atom writes `[RingL]` (bond order or
//! the two stereo marks in front) followed by L index symbols of the distance minus one, every
//! chain bond but the last opens a branch `[BranchL]` followed by L index symbols of the
//! branch's length in symbols minus one and the branch itself, and the last chain bond continues
//! the chain. A chiral atom with ring bonds has its `@`/`@@` flipped when the decoder will see
//! its neighbours in an odd permutation of the written order.

use super::SelfiesError;
use super::alphabet::{INDEX_ALPHABET, index_symbols};
use super::graph::{DirBond, Graph};
use super::smiles::{self, bond_char};

/// One SELFIES symbol, rendered once the branch lengths are known.
#[derive(Debug, Clone, Copy)]
enum Symbol {
    /// An atom, with the bond into it (none for a fragment's first atom).
    Atom { bond: Option<usize>, atom: usize },
    /// A ring closure: the bond from the ring's first atom, the one back to it, and the number
    /// of index symbols that follow.
    Ring {
        open: usize,
        close: usize,
        len: usize,
    },
    /// A branch: its bond and the number of index symbols that follow.
    Branch { bond: usize, len: usize },
    /// One of the sixteen index symbols.
    Index(u8),
}

/// Translates `smiles` into SELFIES exactly as `selfies.encoder(smiles)` (version 2.2, strict,
/// default semantic constraints) does: same atom order, same symbols.
///
/// # Errors
///
/// [`SelfiesError::Parse`] for a SMILES the package's reader refuses (wildcards `*`, quadruple
/// bonds `$`, chirality other than `@`/`@@`, ring bonds across a dot, …),
/// [`SelfiesError::Kekulize`] when the aromatic system has no Kekulé structure, and
/// [`SelfiesError::Constraints`] for an atom with more bonds than the default constraints allow
/// (hypervalent halogens, pentavalent nitrogen, …).
///
/// # Examples
///
/// ```
/// use anges_trainer::chem::selfies;
/// assert_eq!(selfies::encode("C=CF").unwrap(), "[C][=C][F]");
/// assert_eq!(selfies::encode("c1ccccc1").unwrap(), "[C][=C][C][=C][C][=C][Ring1][=Branch1]");
/// ```
pub fn encode(smiles: &str) -> Result<String, SelfiesError> {
    let mut g = smiles::read(smiles)?;
    g.kekulize()?;
    check_constraints(&g)?;
    for i in 0..g.len() {
        if g.atoms[i].chirality.is_some() && g.ring_flags[i] && should_invert(&g, i)? {
            g.atoms[i].invert_chirality();
        }
    }
    let mut out = String::with_capacity(smiles.len() * 4);
    let mut symbols = Vec::with_capacity(g.len() * 2);
    for (k, &root) in g.roots.iter().enumerate() {
        if k > 0 {
            out.push('.');
        }
        symbols.clear();
        derive(&g, None, root, &mut symbols)?;
        for s in &symbols {
            render(&g, *s, &mut out)?;
        }
    }
    Ok(out)
}

/// Refuses atoms with more bonds than they may make.
fn check_constraints(g: &Graph) -> Result<(), SelfiesError> {
    let mut errors = Vec::new();
    for (i, atom) in g.atoms.iter().enumerate() {
        let cap = atom.bonding_capacity();
        let bonds = g.bond_counts[i];
        if bonds > 2 * cap {
            let mut symbol = String::new();
            atom.write_smiles(&mut symbol, true);
            errors.push(format!(
                "{symbol} with {} bond(s), at most {cap}",
                bonds as f64 / 2.0
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SelfiesError::Constraints(errors.join(", ")))
    }
}

fn bond(g: &Graph, id: Option<usize>) -> Result<&DirBond, SelfiesError> {
    id.and_then(|id| g.bonds.get(id))
        .ok_or_else(|| SelfiesError::Internal("unclosed ring bond".into()))
}

/// Whether the decoder, which forms ring bonds last and puts them first, would see the atom's
/// neighbours in an odd permutation of the order the SMILES wrote them.
fn should_invert(g: &Graph, atom: usize) -> Result<bool, SelfiesError> {
    let out = &g.adj[atom];
    let (mut closing, mut opening, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &id) in out.iter().enumerate() {
        let b = bond(g, id)?;
        if !b.ring {
            other.push(i);
        } else if b.src < b.dst {
            opening.push((b.dst, i));
        } else {
            closing.push(i);
        }
    }
    opening.sort_unstable();
    let perm: Vec<usize> = closing
        .into_iter()
        .chain(opening.into_iter().map(|(_, i)| i))
        .chain(other)
        .collect();
    let mut inversions = 0usize;
    for i in 0..perm.len() {
        for j in i + 1..perm.len() {
            if perm[i] > perm[j] {
                inversions += 1;
            }
        }
    }
    Ok(inversions % 2 == 1)
}

/// Derives the chain from `root` (reached through `into_root`) into `out`.
fn derive(
    g: &Graph,
    into_root: Option<usize>,
    root: usize,
    out: &mut Vec<Symbol>,
) -> Result<(), SelfiesError> {
    let (mut into, mut curr) = (into_root, root);
    loop {
        out.push(Symbol::Atom {
            bond: into,
            atom: curr,
        });
        let bonds = &g.adj[curr];
        let mut next = None;
        for (i, &id) in bonds.iter().enumerate() {
            let b = bond(g, id)?;
            let id = id.unwrap_or_default();
            if b.ring {
                if b.src < b.dst {
                    continue;
                }
                let open = g.dir_bond(b.dst, b.src).ok_or_else(|| {
                    SelfiesError::Internal("ring bond without its other half".into())
                })?;
                let q = index_symbols(b.src - b.dst - 1);
                out.push(Symbol::Ring {
                    open,
                    close: id,
                    len: q.len(),
                });
                out.extend(q.into_iter().map(Symbol::Index));
            } else if i + 1 == bonds.len() {
                next = Some((id, b.dst));
            } else {
                let start = out.len();
                derive(g, Some(id), b.dst, out)?;
                let q = index_symbols(out.len() - start - 1);
                let header: Vec<Symbol> = std::iter::once(Symbol::Branch {
                    bond: id,
                    len: q.len(),
                })
                .chain(q.into_iter().map(Symbol::Index))
                .collect();
                out.splice(start..start, header);
            }
        }
        match next {
            Some((id, dst)) => (into, curr) = (Some(id), dst),
            None => return Ok(()),
        }
    }
}

/// Appends the text of one symbol.
fn render(g: &Graph, s: Symbol, out: &mut String) -> Result<(), SelfiesError> {
    match s {
        Symbol::Atom { bond, atom } => {
            out.push('[');
            if let Some(id) = bond {
                let b = &g.bonds[id];
                out.push_str(bond_char(g.order(b), b.stereo)?);
            }
            g.atoms[atom].write_smiles(out, false);
            out.push(']');
        }
        Symbol::Ring { open, close, len } => {
            let (l, r) = (&g.bonds[open], &g.bonds[close]);
            out.push('[');
            let order = g.order(l);
            if order != 2 || (l.stereo.is_none() && r.stereo.is_none()) {
                out.push_str(bond_char(order, None)?);
            } else {
                for side in [l.stereo, r.stereo] {
                    out.push(side.map_or('-', char::from));
                }
            }
            out.push_str("Ring");
            out.push_str(&len.to_string());
            out.push(']');
        }
        Symbol::Branch { bond, len } => {
            let b = &g.bonds[bond];
            out.push('[');
            out.push_str(bond_char(g.order(b), None)?);
            out.push_str("Branch");
            out.push_str(&len.to_string());
            out.push(']');
        }
        Symbol::Index(d) => out.push_str(INDEX_ALPHABET[usize::from(d)]),
    }
    Ok(())
}
