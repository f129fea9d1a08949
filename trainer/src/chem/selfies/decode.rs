//! SELFIES → SMILES (`selfies.decoder`, default constraints).
//!
//! Symbols are read left to right with a *state*: the bonds the previous atom may still make.
//! An atom symbol bonds to the previous atom with the lesser of its written order, the state
//! and its own capacity (the first atom of a fragment bonds to nothing); a branch symbol starts
//! a sub-derivation of the next Q + 1 symbols from the current atom (Q read from the index
//! symbols after it) when the state allows more than one bond, and is skipped otherwise; a ring
//! symbol records a bond to the atom Q + 1 atoms back, formed after the whole string is read,
//! where both atoms still have room. Every string of valid symbols gives a molecule; an
//! unknown symbol is an error.

use super::SelfiesError;
use super::alphabet::{element, index_value, is_organic, split_symbols};
use super::graph::{Atom, Graph, Order2};
use super::smiles::{self, bond_of};

/// Deepest branch nesting decoded (one recursion per level).
const MAX_BRANCH_DEPTH: usize = 512;

/// A ring bond waiting for the end of the string: left atom, right atom, order (1–3) and the
/// stereo marks of each side.
type PendingRing = (usize, usize, i64, Marks);

/// The stereo marks (`/` or `\`) of the two sides of a ring bond.
type Marks = (Option<u8>, Option<u8>);

/// Translates `selfies` into SMILES exactly as `selfies.decoder(selfies)` (version 2.2, default
/// constraints) does.
///
/// # Errors
///
/// [`SelfiesError::Symbol`] for a symbol the alphabet lacks (or an atom with more hydrogens
/// than bonds), [`SelfiesError::Malformed`] for a `[` never closed.
///
/// # Examples
///
/// ```
/// use anges_trainer::chem::selfies;
/// assert_eq!(selfies::decode("[C][=C][F]").unwrap(), "C=CF");
/// // Every string of symbols is a molecule: the fourth carbon's bond is capped.
/// assert_eq!(selfies::decode("[C][#C][#C]").unwrap(), "C#CC");
/// ```
pub fn decode(selfies: &str) -> Result<String, SelfiesError> {
    let mut g = Graph::default();
    let mut rings = Vec::new();
    for fragment in selfies.split('.') {
        let symbols: Vec<&str> = split_symbols(fragment)?
            .into_iter()
            .filter(|s| *s != "[nop]")
            .collect();
        let mut reader = Reader {
            symbols: &symbols,
            at: 0,
            g: &mut g,
            rings: &mut rings,
        };
        reader.derive(None, 0, None, 0)?;
    }
    form_rings(&mut g, &rings)?;
    smiles::write(&g)
}

struct Reader<'a, 'b> {
    symbols: &'a [&'b str],
    at: usize,
    g: &'a mut Graph,
    rings: &'a mut Vec<PendingRing>,
}

/// What a symbol is, judged as the package does by its last characters.
fn slice_from_end(s: &str, from: usize, to: usize) -> &[u8] {
    let b = s.as_bytes();
    let start = b.len().saturating_sub(from);
    let end = b.len().saturating_sub(to);
    if start < end { &b[start..end] } else { &[] }
}

impl<'b> Reader<'_, 'b> {
    fn next(&mut self) -> Option<&'b str> {
        let s = self.symbols.get(self.at).copied();
        if s.is_some() {
            self.at += 1;
        }
        s
    }

    /// Reads the value of the next `n` index symbols.
    fn index(&mut self, n: usize) -> usize {
        let symbols: Vec<Option<&'b str>> = (0..n).map(|_| self.next()).collect();
        index_value(&symbols)
    }

    /// Derives at most `max` symbols (all with `None`) from `state` after `root`; returns how
    /// many symbols it consumed.
    fn derive(
        &mut self,
        max: Option<usize>,
        init_state: i64,
        root: Option<usize>,
        depth: usize,
    ) -> Result<usize, SelfiesError> {
        if depth > MAX_BRANCH_DEPTH {
            return Err(SelfiesError::Malformed(format!(
                "branches nested deeper than {MAX_BRANCH_DEPTH}"
            )));
        }
        let within = |n: usize| max.is_none_or(|m| n < m);
        let mut n = 0usize;
        let mut state = init_state;
        let mut prev = root;
        while within(n) {
            let Some(symbol) = self.next() else {
                break;
            };
            n += 1;
            let next_state: Option<i64>;
            if slice_from_end(symbol, 4, 2) == b"ch" {
                let (order, len) = branch_symbol(symbol)?;
                if state <= 1 {
                    next_state = Some(state);
                } else {
                    let init = (state - 1).min(order);
                    next_state = Some(state - init);
                    let q = self.index(len);
                    n += len;
                    n += self.derive(Some(q.saturating_add(1)), init, prev, depth + 1)?;
                }
            } else if slice_from_end(symbol, 4, 2) == b"ng" {
                let (order, len, stereo) = ring_symbol(symbol)?;
                if state == 0 {
                    next_state = Some(state);
                } else {
                    let bond = order.min(state);
                    next_state = Some(state - bond).filter(|&s| s != 0);
                    let q = self.index(len);
                    n += len;
                    let right = prev.ok_or_else(|| {
                        SelfiesError::Internal("ring symbol without an atom".into())
                    })?;
                    let left = right.saturating_sub(q.saturating_add(1));
                    self.rings.push((left, right, bond, stereo));
                }
            } else if symbol.contains("eps") {
                next_state = (state == 0).then_some(0);
            } else {
                let ((order, stereo), atom) = atom_symbol(symbol)?;
                let cap = atom.bonding_capacity();
                let order = if state == 0 { 0 } else { order / 2 };
                let order = order.min(state).min(cap);
                let left = cap - order;
                next_state = (left != 0).then_some(left);
                if order == 0 {
                    if state == 0 {
                        let i = self.g.add_atom(atom, true);
                        prev = Some(i);
                    }
                    // Otherwise the atom has no room for the bond: it is dropped, and the
                    // state (0 bonds left) ends the derivation.
                } else {
                    let from = prev.ok_or_else(|| {
                        SelfiesError::Internal("bond without a previous atom".into())
                    })?;
                    let i = self.g.add_atom(atom, false);
                    self.g.add_bond(from, i, 2 * order, stereo);
                    prev = Some(i);
                }
            }
            match next_state {
                None => break,
                Some(s) => state = s,
            }
        }
        // The rest of the span is consumed unread.
        while within(n) && self.next().is_some() {
            n += 1;
        }
        Ok(n)
    }
}

/// `[BranchL]`, `[=BranchL]`, `[#BranchL]` (L = 1–3): the branch's bond order and L.
fn branch_symbol(symbol: &str) -> Result<(i64, usize), SelfiesError> {
    let body = symbol
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.strip_suffix(['1', '2', '3']).map(|rest| (rest, s)));
    if let Some((rest, s)) = body {
        let len = usize::from(s.as_bytes()[s.len() - 1] - b'0');
        let order = match rest {
            "Branch" => Some(1),
            "=Branch" => Some(2),
            "#Branch" => Some(3),
            _ => None,
        };
        if let Some(order) = order {
            return Ok((order, len));
        }
    }
    Err(SelfiesError::Symbol(symbol.to_owned()))
}

/// `[RingL]`, `[=RingL]`, `[#RingL]` and the stereo forms `[xyRingL]` (x, y among `- / \`, not
/// both `-`): the bond order, L and the stereo marks of the two sides.
fn ring_symbol(symbol: &str) -> Result<(i64, usize, Marks), SelfiesError> {
    let parsed = (|| {
        let s = symbol.strip_prefix('[')?.strip_suffix(']')?;
        let rest = s.strip_suffix(['1', '2', '3'])?;
        let len = usize::from(s.as_bytes()[s.len() - 1] - b'0');
        let marks = rest.strip_suffix("Ring")?.as_bytes();
        Some(match marks {
            [] => (1, len, (None, None)),
            [b'='] => (2, len, (None, None)),
            [b'#'] => (3, len, (None, None)),
            [l @ (b'-' | b'/' | b'\\'), r @ (b'-' | b'/' | b'\\')]
                if !(*l == b'-' && *r == b'-') =>
            {
                let side = |c: u8| bond_of(Some(c)).1;
                (1, len, (side(*l), side(*r)))
            }
            _ => return None,
        })
    })();
    parsed.ok_or_else(|| SelfiesError::Symbol(symbol.to_owned()))
}

/// An atom symbol `[bond isotope element chirality H<d> charge]`: the bond into it and the
/// atom; an organic-subset element alone (`[C]`, `[=N]`) gets implicit hydrogens.
fn atom_symbol(symbol: &str) -> Result<((Order2, Option<u8>), Atom), SelfiesError> {
    let bad = || SelfiesError::Symbol(symbol.to_owned());
    let inner = symbol
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(bad)?;
    let b = inner.as_bytes();
    let mut i = 0;
    let bond_ch = match b.first() {
        Some(&c @ (b'=' | b'#' | b'/' | b'\\')) => {
            i = 1;
            Some(c)
        }
        _ => None,
    };
    let bond = bond_of(bond_ch);
    let body = &inner[i..];
    let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let isotope = if n > 0 {
        Some(inner[i..i + n].parse::<u64>().map_err(|_| bad())?)
    } else {
        None
    };
    i += n;
    if !b.get(i).is_some_and(u8::is_ascii_uppercase) {
        return Err(bad());
    }
    let elen = if b.get(i + 1).is_some_and(u8::is_ascii_lowercase) {
        2
    } else {
        1
    };
    let symbol_text = &inner[i..i + elen];
    i += elen;
    let at = b[i..].iter().take_while(|&&c| c == b'@').count();
    let chirality = match at {
        0 => None,
        1 => Some(1),
        2 => Some(2),
        _ => return Err(bad()),
    };
    i += at;
    let mut h_count = 0u32;
    if b.get(i) == Some(&b'H') {
        let d = b
            .get(i + 1)
            .filter(|c| c.is_ascii_digit())
            .ok_or_else(bad)?;
        h_count = u32::from(d - b'0');
        i += 2;
    }
    let mut charge = 0i64;
    if let Some(&sign) = b.get(i).filter(|&&c| c == b'+' || c == b'-') {
        let n = b[i + 1..]
            .iter()
            .take_while(|c| (b'1'..=b'9').contains(c))
            .count();
        if n == 0 {
            return Err(bad());
        }
        let value: i64 = inner[i + 1..i + 1 + n].parse().map_err(|_| bad())?;
        charge = if sign == b'+' { value } else { -value };
        i += 1 + n;
    }
    if i != b.len() {
        return Err(bad());
    }
    let element = element(symbol_text).ok_or_else(bad)?;
    let atom = if is_organic(body) {
        Atom::organic(element, false)
    } else {
        Atom {
            element,
            aromatic: false,
            isotope,
            chirality,
            h_count: Some(h_count),
            charge,
        }
    };
    if atom.bonding_capacity() < 0 {
        return Err(bad());
    }
    Ok((bond, atom))
}

/// Forms the recorded ring bonds in order where both atoms have room (`_form_rings_bilocally`):
/// onto an existing bond the order adds up (at most triple); a new ring bond goes before the
/// atoms' other out-bonds, after the ring bonds formed before it.
fn form_rings(g: &mut Graph, rings: &[PendingRing]) -> Result<(), SelfiesError> {
    let mut made = vec![0usize; g.len()];
    for &(l, r, order, (lstereo, rstereo)) in rings {
        if l == r || l >= g.len() || r >= g.len() {
            continue;
        }
        let lfree = g.atoms[l].bonding_capacity() - g.bond_counts[l] / 2;
        let rfree = g.atoms[r].bonding_capacity() - g.bond_counts[r] / 2;
        if lfree <= 0 || rfree <= 0 {
            continue;
        }
        let order = order.min(lfree).min(rfree);
        if g.has_bond(l, r) {
            let id = g
                .dir_bond(l.min(r), l.max(r))
                .ok_or_else(|| SelfiesError::Internal("bond vanished".into()))?;
            let old = g.order(&g.bonds[id]) / 2;
            g.set_order(l, r, 2 * (order + old).min(3))?;
        } else {
            g.add_ring_bond(
                (l, lstereo, Some(made[l])),
                (r, rstereo, Some(made[r])),
                2 * order,
            );
            made[l] += 1;
            made[r] += 1;
        }
    }
    Ok(())
}
