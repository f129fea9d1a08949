//! The molecular graph as `selfies` sees it (`mol_graph.py`): atoms in the order of the string
//! they come from, *directed* bonds (from the atom written first to the one written after; a
//! ring bond in both directions), each atom's out-bonds in the order the string writes them (a
//! ring-bond digit holds its place), and the kekuliser that turns aromatic input into single and
//! double bonds. SELFIES strings follow this order, so the encoder and the decoder both work on
//! it rather than on a canonical graph.

use super::SelfiesError;
use super::alphabet::{aromatic_valences, bonding_capacity, is_organic, valence_electrons};
use super::matching::perfect_matching;

/// A bond order times two: 2 single, 3 aromatic, 4 double, 6 triple.
pub type Order2 = i64;
/// [`Order2`] of an aromatic bond.
pub const AROMATIC: Order2 = 3;

/// One atom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    /// Capitalised element symbol.
    pub element: &'static str,
    /// Written in lower case (before kekulisation).
    pub aromatic: bool,
    /// Mass number, if written.
    pub isotope: Option<u64>,
    /// `@` (1) or `@@` (2), if written.
    pub chirality: Option<u8>,
    /// Hydrogens written in brackets; `None` for an organic-subset atom (implicit hydrogens).
    pub h_count: Option<u32>,
    /// Formal charge.
    pub charge: i64,
}

impl Atom {
    /// An organic-subset atom written without brackets.
    pub fn organic(element: &'static str, aromatic: bool) -> Self {
        Self {
            element,
            aromatic,
            isotope: None,
            chirality: None,
            h_count: None,
            charge: 0,
        }
    }

    /// The bonds it may make under the default constraints, less its written hydrogens.
    pub fn bonding_capacity(&self) -> i64 {
        bonding_capacity(self.element, self.charge) - i64::from(self.h_count.unwrap_or(0))
    }

    /// `@` ↔ `@@`.
    pub fn invert_chirality(&mut self) {
        self.chirality = self.chirality.map(|c| if c == 1 { 2 } else { 1 });
    }

    /// Appends the atom's SMILES (the package's `atom_to_smiles`): the bare element when nothing
    /// but the element is specified, else `[isotope element chirality Hn charge]`, `H0` written
    /// for a bracketed organic-subset atom without hydrogens or anything else. Without
    /// `brackets`, the same without the square brackets (a SELFIES atom symbol's body).
    pub fn write_smiles(&self, out: &mut String, brackets: bool) {
        let h = self.h_count;
        if self.isotope.is_none() && self.chirality.is_none() && h.is_none() && self.charge == 0 {
            out.push_str(self.element);
            return;
        }
        if brackets {
            out.push('[');
        }
        if let Some(iso) = self.isotope {
            out.push_str(&iso.to_string());
        }
        out.push_str(self.element);
        match self.chirality {
            Some(1) => out.push('@'),
            Some(_) => out.push_str("@@"),
            None => {}
        }
        match h {
            Some(n) if n != 0 => {
                out.push('H');
                out.push_str(&n.to_string());
            }
            _ => {
                if self.isotope.is_none()
                    && self.chirality.is_none()
                    && h == Some(0)
                    && self.charge == 0
                    && is_organic(self.element)
                {
                    out.push_str("H0");
                }
            }
        }
        if self.charge != 0 {
            out.push_str(&format!("{:+}", self.charge));
        }
        if brackets {
            out.push(']');
        }
    }
}

/// One direction of a bond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirBond {
    /// The atom whose out-bond this is.
    pub src: usize,
    /// The other atom.
    pub dst: usize,
    /// The undirected bond (its order is shared by both directions of a ring bond).
    pub edge: usize,
    /// `/` or `\` written on this side.
    pub stereo: Option<u8>,
    /// A ring-closure bond.
    pub ring: bool,
}

/// A molecular graph in string order.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Atoms in string order.
    pub atoms: Vec<Atom>,
    /// The first atom of every fragment.
    pub roots: Vec<usize>,
    /// Every atom's out-bonds (ids into `bonds`) in string order; `None` is a ring-bond digit
    /// whose partner has not been read yet.
    pub adj: Vec<Vec<Option<usize>>>,
    /// Directed bonds.
    pub bonds: Vec<DirBond>,
    /// Order of each undirected bond.
    pub orders: Vec<Order2>,
    /// Sum of every atom's bond orders ([`Order2`] units).
    pub bond_counts: Vec<Order2>,
    /// Whether the atom has a ring bond.
    pub ring_flags: Vec<bool>,
    /// The delocalisation subgraph: for atoms in it, their aromatic neighbours in bond order.
    delocal: Vec<Option<Vec<usize>>>,
}

impl Graph {
    /// Number of atoms.
    pub fn len(&self) -> usize {
        self.atoms.len()
    }

    /// Whether it has no atom.
    pub fn is_empty(&self) -> bool {
        self.atoms.is_empty()
    }

    /// Adds an atom (a fragment root if `root`); returns its index.
    pub fn add_atom(&mut self, atom: Atom, root: bool) -> usize {
        let i = self.atoms.len();
        if root {
            self.roots.push(i);
        }
        self.delocal.push(atom.aromatic.then(Vec::new));
        self.atoms.push(atom);
        self.adj.push(Vec::new());
        self.bond_counts.push(0);
        self.ring_flags.push(false);
        i
    }

    fn new_edge(&mut self, a: usize, b: usize, order: Order2) -> usize {
        self.orders.push(order);
        self.bond_counts[a] += order;
        self.bond_counts[b] += order;
        if order == AROMATIC {
            for (x, y) in [(a, b), (b, a)] {
                self.delocal[x].get_or_insert_with(Vec::new).push(y);
            }
        }
        self.orders.len() - 1
    }

    /// Adds the chain or branch bond `src → dst` (`src < dst`) at the end of `src`'s out-bonds.
    pub fn add_bond(&mut self, src: usize, dst: usize, order: Order2, stereo: Option<u8>) {
        let edge = self.new_edge(src, dst, order);
        self.bonds.push(DirBond {
            src,
            dst,
            edge,
            stereo,
            ring: false,
        });
        self.adj[src].push(Some(self.bonds.len() - 1));
    }

    /// Reserves the place of a ring-bond digit in `src`'s out-bonds; returns it.
    pub fn add_placeholder(&mut self, src: usize) -> usize {
        self.adj[src].push(None);
        self.adj[src].len() - 1
    }

    /// Adds the ring bond `a — b` in both directions, at `a_pos` / `b_pos` of the out-bonds
    /// (`None`: at the end; a placeholder there is filled, else the bond is inserted).
    pub fn add_ring_bond(
        &mut self,
        (a, a_stereo, a_pos): (usize, Option<u8>, Option<usize>),
        (b, b_stereo, b_pos): (usize, Option<u8>, Option<usize>),
        order: Order2,
    ) {
        let edge = self.new_edge(a, b, order);
        for (src, dst, stereo, pos) in [(a, b, a_stereo, a_pos), (b, a, b_stereo, b_pos)] {
            self.bonds.push(DirBond {
                src,
                dst,
                edge,
                stereo,
                ring: true,
            });
            let id = Some(self.bonds.len() - 1);
            let out = &mut self.adj[src];
            match pos {
                Some(p) if p < out.len() => {
                    if out[p].is_none() {
                        out[p] = id;
                    } else {
                        out.insert(p, id);
                    }
                }
                _ => out.push(id),
            }
        }
        self.ring_flags[a] = true;
        self.ring_flags[b] = true;
    }

    /// The bond `src → dst`, if `src` has that out-bond.
    pub fn dir_bond(&self, src: usize, dst: usize) -> Option<usize> {
        self.adj
            .get(src)?
            .iter()
            .flatten()
            .copied()
            .find(|&id| self.bonds[id].dst == dst)
    }

    /// Whether `a` and `b` are bonded.
    pub fn has_bond(&self, a: usize, b: usize) -> bool {
        let (a, b) = if a > b { (b, a) } else { (a, b) };
        self.dir_bond(a, b).is_some()
    }

    /// Sets the order of the bond `a — b`, keeping the atoms' bond counts.
    pub fn set_order(&mut self, a: usize, b: usize, order: Order2) -> Result<(), SelfiesError> {
        let (a, b) = if a > b { (b, a) } else { (a, b) };
        let id = self
            .dir_bond(a, b)
            .ok_or_else(|| SelfiesError::Internal(format!("no bond {a}-{b}")))?;
        let edge = self.bonds[id].edge;
        let old = self.orders[edge];
        if old != order {
            self.orders[edge] = order;
            self.bond_counts[a] += order - old;
            self.bond_counts[b] += order - old;
        }
        Ok(())
    }

    /// The order of a directed bond.
    pub fn order(&self, bond: &DirBond) -> Order2 {
        self.orders[bond.edge]
    }

    /// Replaces the aromatic bonds by single and double bonds (`MolecularGraph.kekulize`): the
    /// atoms of the delocalisation subgraph that can take a double bond are perfectly matched,
    /// the matched bonds become double and every other aromatic bond single.
    pub fn kekulize(&mut self) -> Result<(), SelfiesError> {
        let nodes: Vec<usize> = (0..self.len())
            .filter(|&i| self.delocal[i].is_some())
            .collect();
        if nodes.is_empty() {
            return Ok(());
        }
        let mut kept = Vec::new();
        for &node in &nodes {
            if !self.prune_from_delocal(node)? {
                kept.push(node);
            }
        }
        // `kept` is ascending: labels are positions in it.
        let label = |node: usize| kept.binary_search(&node).ok();
        let pruned: Vec<Vec<usize>> = kept
            .iter()
            .map(|&node| {
                self.delocal[node]
                    .iter()
                    .flatten()
                    .filter_map(|&adj| label(adj))
                    .collect()
            })
            .collect();
        let matching = perfect_matching(&pruned).ok_or(SelfiesError::Kekulize)?;
        for &node in &nodes {
            let adjacent = self.delocal[node].clone().unwrap_or_default();
            for adj in adjacent {
                self.set_order(node, adj, 2)?;
            }
            self.atoms[node].aromatic = false;
        }
        for (i, &j) in matching.iter().enumerate() {
            self.set_order(kept[i], kept[j], 4)?;
        }
        self.delocal.iter_mut().for_each(|d| *d = None);
        Ok(())
    }

    /// Whether `node` cannot take a double bond (`MolecularGraph._prune_from_ds`, 2.2).
    fn prune_from_delocal(&self, node: usize) -> Result<bool, SelfiesError> {
        let adj = self.delocal[node].as_deref().unwrap_or_default();
        if adj.is_empty() {
            return Ok(true);
        }
        let atom = &self.atoms[node];
        let (Some(valences), Some(electrons)) = (
            aromatic_valences(atom.element),
            valence_electrons(atom.element),
        ) else {
            return Err(SelfiesError::Parse(format!(
                "{} cannot be aromatic",
                atom.element
            )));
        };
        let bc2 = self.bond_counts[node];
        // Aromatic bonds counted as single ones (their 1.5 less 0.5 each).
        let mut used = (bc2 - adj.len() as i64).div_euclid(2);
        let Some(h) = atom.h_count else {
            return Ok(valences.contains(&used));
        };
        let charge = atom.charge;
        let valence = valences.last().copied().unwrap_or(0) - charge;
        used += i64::from(h);
        let bound = charge.max(0) + i64::from(h) + bc2.div_euclid(2) + bc2.rem_euclid(2);
        let radical = (electrons - bound).max(0) % 2;
        let free = valence - used - radical;
        if valences.iter().any(|v| used == v - charge) {
            return Ok(true);
        }
        Ok(!(free >= 0 && free % 2 != 0))
    }
}
